"""A chat template and the loss on the assistant's tokens only (chapter 17).

An assistant is a language model trained on conversations written in one fixed
format, the *chat template*. Ours marks each turn with a role token and closes it
with an end token::

    <|user|>Translate to English: Ein Hund läuft im Schnee.<|end|><|assistant|>A dog runs in the snow.<|end|>

A conversation is a list of turns, ``{"role": "user" | "assistant", "content":
text}`` (the form Hugging Face's ``apply_chat_template`` takes), starting with the
user and alternating. :func:`translation_turns` makes chapter 12's task one
exchange: the user asks ``Translate to English: <German>``, the assistant answers
with the English sentence.

**The role tokens and chapter 12's BPE.** :class:`~utils.tokenizers.BPETokenizer`
has a fixed vocabulary (the 256 bytes, its merges and, with ``specials=True``,
``<PAD> <SOS> <EOS> <UNK>``) and ``encode`` never reads a special token out of
text. New special tokens need no retraining: they are *ids after the tokenizer's
vocabulary*, ``vocab_size``, ``vocab_size + 1``, ``vocab_size + 2``
(:func:`chat_token_ids`), placed between the encoded pieces by :func:`encode_chat`.
The merges, and so the ids of all text, stay as they were; a model that reads
conversations needs :func:`chat_vocab_size` embedding rows. A user who types the
text ``<|end|>`` gets its ordinary bytes, never the end token.

**The loss on the answer only.** :func:`encode_chat` returns the ids and a loss
mask, True on the assistant's tokens and on the end token that closes each
assistant turn (the model must learn to stop), False on the user's turn and on the
role tokens (they are given, never predicted). :func:`pad_chats` pads a batch on
the right and shifts it into next-token inputs and targets; padding is never in
the mask, and a causal model's real positions never see the padding after them.
:func:`assistant_only_loss` averages the cross-entropy over the masked targets of
the whole batch (every answer token counts once), with the book's one loss,
:func:`utils.loop.sequence_loss`. :func:`answer_text` reads an answer back from
generated ids.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from utils.checks import check_int
from utils.loop import sequence_loss
from utils.tokenizers import pad_batch

ROLES = ("user", "assistant")
CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")
ROLE_TOKENS = {"user": "<|user|>", "assistant": "<|assistant|>"}
END_TOKEN = "<|end|>"
TRANSLATION_PROMPT = "Translate to English: "
IGNORE = -100  # the target id sequence_loss skips


def chat_token_ids(tokenizer) -> dict[str, int]:
    """The ids of the chat tokens: the first ids after the tokenizer's vocabulary."""
    V = tokenizer.vocab_size
    return {token: V + i for i, token in enumerate(CHAT_TOKENS)}


def chat_vocab_size(tokenizer) -> int:
    """The vocabulary a model of conversations needs: the tokenizer's plus the chat tokens."""
    return tokenizer.vocab_size + len(CHAT_TOKENS)


def translation_turns(german: str, english: str | None = None) -> list[dict[str, str]]:
    """Chapter 12's pair as a conversation; without ``english``, the prompt alone."""
    turns = [{"role": "user", "content": TRANSLATION_PROMPT + german}]
    if english is not None:
        turns.append({"role": "assistant", "content": english})
    return turns


def check_turns(turns, last: str | None = None) -> list[tuple[str, str]]:
    """``turns`` as (role, content) pairs, or a ValueError naming the first bad turn.

    A conversation is a non-empty list of ``{"role", "content"}`` mappings with
    non-empty text, starting with the user and alternating; ``last`` requires the
    role of the final turn (the assistant when there is a target to learn).
    """
    if isinstance(turns, (str, bytes, Mapping)) or not hasattr(turns, "__iter__"):
        raise ValueError(f"turns must be a list of {{'role', 'content'}} turns, got {type(turns).__name__}")
    turns = list(turns)
    if not turns:
        raise ValueError("the conversation has no turns; it needs at least one user turn")
    pairs = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or "role" not in turn or "content" not in turn:
            raise ValueError(f"turn {i} must be a mapping with 'role' and 'content', got {turn!r}")
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            raise ValueError(f"turn {i} has role {role!r}; the roles are {', '.join(ROLES)}")
        expected = ROLES[i % 2]
        if role != expected:
            raise ValueError(f"turn {i} is the {role}'s, but turns start with the user and alternate: expected {expected}")
        if not isinstance(content, str) or not content:
            raise ValueError(f"turn {i} ({role}) must have non-empty text as content, got {content!r}")
        pairs.append((role, content))
    if last is not None and pairs[-1][0] != last:
        raise ValueError(f"the conversation must end with the {last}'s turn, but its last turn is the {pairs[-1][0]}'s")
    return pairs


def render(turns, add_generation_prompt: bool = False) -> str:
    """The conversation as text in the template; ``add_generation_prompt`` ends it with
    ``<|assistant|>``, where the model starts to answer (the last turn must be the user's)."""
    pairs = check_turns(turns, last="user" if add_generation_prompt else None)
    text = "".join(ROLE_TOKENS[role] + content + END_TOKEN for role, content in pairs)
    return text + (ROLE_TOKENS["assistant"] if add_generation_prompt else "")


def encode_chat(turns, tokenizer) -> tuple[list[int], list[bool]]:
    """A conversation ending with the assistant → (ids, loss_mask), two lists of one length.

    ``loss_mask[i]`` says whether ``ids[i]`` is a target the model is trained to
    predict: True on every assistant turn's text and closing ``<|end|>``.
    ``decode_chat(ids, tokenizer) == render(turns)``.
    """
    pairs = check_turns(turns, last="assistant")
    special = chat_token_ids(tokenizer)
    ids, mask = [], []
    for role, content in pairs:
        answer = role == "assistant"
        text = tokenizer.encode(content)
        ids += [special[ROLE_TOKENS[role]], *text, special[END_TOKEN]]
        mask += [False] + [answer] * (len(text) + 1)
    return ids, mask


def encode_prompt(turns, tokenizer) -> list[int]:
    """A conversation ending with the user → its ids and ``<|assistant|>``: what generation starts from."""
    pairs = check_turns(turns, last="user")
    special = chat_token_ids(tokenizer)
    ids = []
    for role, content in pairs:
        ids += [special[ROLE_TOKENS[role]], *tokenizer.encode(content), special[END_TOKEN]]
    return ids + [special[ROLE_TOKENS["assistant"]]]


def _chat_id(i, position: int, V: int) -> int:
    """``i`` as an id of the tokenizer (< V) or a chat token, or a ValueError naming its position."""
    i = check_int("token id", i)
    if not 0 <= i < V + len(CHAT_TOKENS):
        raise ValueError(f"token id {i} at position {position} is not in [0, {V + len(CHAT_TOKENS)}), "
                         f"the tokenizer's {V} ids and the {len(CHAT_TOKENS)} chat tokens")
    return i


def decode_chat(ids, tokenizer) -> str:
    """Ids (the tokenizer's and the chat tokens) → text; chat tokens print as ``<|end|>`` etc."""
    V, names = tokenizer.vocab_size, dict(enumerate(CHAT_TOKENS))
    pieces, run = [], []
    for position, i in enumerate(ids):
        i = _chat_id(i, position, V)
        if i < V:
            run.append(i)
            continue
        if run:  # decode runs whole: a character's bytes may span several tokens
            pieces.append(tokenizer.decode(run))
            run = []
        pieces.append(names[i - V])
    if run:
        pieces.append(tokenizer.decode(run))
    return "".join(pieces)


def answer_text(ids, tokenizer) -> str:
    """The text of generated ids (what follows ``encode_prompt``'s ids): up to the first
    chat token, ``<|end|>`` (or a role token: a model that starts a new turn has
    finished its answer); all of it when there is none."""
    V, answer = tokenizer.vocab_size, []
    for position, i in enumerate(ids):
        i = _chat_id(i, position, V)
        if i >= V:
            break
        answer.append(i)
    return tokenizer.decode(answer)


def pad_chats(examples, pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encoded conversations [(ids, loss_mask), ...] → ``(inputs, targets, mask)``, each (B, T_max - 1).

    Padded on the right with ``pad_id``, then shifted: ``inputs = ids[:, :-1]``,
    ``targets = ids[:, 1:]``, ``mask = loss_mask[:, 1:]``, with padding never in
    the mask (so any ``pad_id`` gives the same loss: the tokenizer's ``<PAD>``, or,
    for a BPE built without specials, the ``<|end|>`` id).
    """
    examples = list(examples)
    if not examples:
        raise ValueError("pad_chats needs at least one encoded conversation")
    for k, example in enumerate(examples):
        if not (isinstance(example, tuple | list) and len(example) == 2 and len(example[0]) == len(example[1])):
            raise ValueError(f"example {k} must be (ids, loss_mask) of one length, as encode_chat returns")
        if len(example[0]) < 2:
            raise ValueError(f"example {k} has {len(example[0])} token(s); next-token targets need at least 2")
    ids, padding = pad_batch([list(example[0]) for example in examples], pad_id, device=device)  # (B, T_max)
    loss_mask = torch.zeros(ids.shape, dtype=torch.bool)
    for k, (_, mask) in enumerate(examples):
        loss_mask[k, : len(mask)] = torch.tensor([bool(m) for m in mask], dtype=torch.bool)
    loss_mask = loss_mask.to(ids.device) & ~padding
    return ids[:, :-1], ids[:, 1:], loss_mask[:, 1:]


def assistant_only_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T) where ``mask`` (B, T) is True.

    Every masked target of the batch counts once (a long answer weighs more than a
    short one, as in ordinary next-token training). A mask with no True on the CPU
    is an error; on an accelerator it is not read (a host sync) and the loss is NaN,
    as :func:`~utils.loop.sequence_loss`'s is when every target is ignored.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True where the assistant's tokens are), got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if not isinstance(targets, torch.Tensor) or tuple(mask.shape) != tuple(targets.shape):
        raise ValueError(f"mask and targets must have one shape (B, T); got {tuple(mask.shape)} and "
                         f"{tuple(getattr(targets, 'shape', ()))}")
    if mask.device.type == "cpu" and not torch.compiler.is_compiling() and not bool(mask.any()):
        raise ValueError("the mask has no True position: no assistant token to learn from in this batch")
    return sequence_loss(logits, targets.masked_fill(~mask, IGNORE), ignore_index=IGNORE,
                         label_smoothing=label_smoothing)
