"""Checkers for chapter 17's exercises (a chat template, the loss on the answer, LoRA)."""

from __future__ import annotations

import copy
import functools
import numbers
import re

from torch import nn

from utils.exercises import checker, expect

SYSTEM_TOKEN = "<|system|>"

_SENTENCES = [
    "You are a helpful assistant who answers briefly.",
    "Translate to English: Ein Hund läuft im Schnee.",
    "A dog runs in the snow.",
    "Two children are playing football in the park.",
    "What is the capital of France? Paris is the capital of France.",
    "Answer in one word, please. Thank you, that helps a lot.",
]


@functools.cache
def _tokenizer():
    """A small BPE (300 tokens with specials), trained once: the checkers' tokenizer."""
    from utils.tokenizers import BPETokenizer

    return BPETokenizer.from_text(_SENTENCES, vocab_size=300, specials=True)


def _conversation(*pairs: str) -> list[dict[str, str]]:
    """Alternating user / assistant turns from their texts."""
    return [{"role": ("user", "assistant")[k % 2], "content": text} for k, text in enumerate(pairs)]


_SYSTEM = {"role": "system", "content": "You are a helpful assistant who answers briefly."}
_CONVERSATIONS = [
    _conversation("Translate to English: Ein Hund läuft im Schnee.", "A dog runs in the snow."),
    _conversation("What is the capital of France?", "Paris.", "And of Italy?", "Rome, of course.",
                  "Thank you!", "You are welcome."),
    _conversation("Hi", "Hello! How can I help?"),
]


def _as_ids(value, what: str) -> list[int]:
    expect(isinstance(value, list | tuple) and all(
        isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in value),
        f"{what} should be a list of int token ids, got {type(value).__name__} {str(value)[:60]}")
    return [int(i) for i in value]


def _as_mask(value, what: str) -> list[bool]:
    expect(isinstance(value, list | tuple) and all(isinstance(m, bool) for m in value),
           f"{what} should be a list of True/False, got {type(value).__name__} {str(value)[:60]}")
    return list(value)


def _first_difference(yours: list, expected: list) -> int:
    return next(k for k, (a, b) in enumerate(zip(yours, expected, strict=True)) if a != b)


# ---------------------------------------------------------------- 17.1 a system turn

def _system_reference(turns, tokenizer) -> tuple[list[int], list[bool], dict[str, list[int]]]:
    """The template with a system turn, written out token by token, and where each kind of token sits."""
    V = tokenizer.vocab_size
    user, assistant, end, system = V, V + 1, V + 2, V + 3
    role_id = {"system": system, "user": user, "assistant": assistant}
    ids, mask = [], []
    where = {"system_text": [], "system_end": [], "roles": [], "assistant_end": []}
    for turn in turns:
        text = tokenizer.encode(turn["content"])
        answer = turn["role"] == "assistant"
        where["roles"].append(len(ids))
        span = range(len(ids) + 1, len(ids) + 1 + len(text))
        if turn["role"] == "system":
            where["system_text"] += list(span)
            where["system_end"].append(span.stop)
        if answer:
            where["assistant_end"].append(span.stop)
        ids += [role_id[turn["role"]], *text, end]
        mask += [False] + [answer] * (len(text) + 1)
    return ids, mask, where


@checker("Exercise 17.1 — a system turn")
def check_encode_chat_with_system(encode_chat_with_system) -> None:
    """``encode_chat_with_system(turns, tokenizer)`` → (ids, loss_mask): a first turn may have the role
    "system", written ``<|system|>text<|end|>`` with ``<|system|>`` = chat_vocab_size(tokenizer), never a
    target; the rest as encode_chat. A system turn anywhere but first is a ValueError."""
    tokenizer = _tokenizer()
    V = tokenizer.vocab_size
    names = {V: "<|user|>", V + 1: "<|assistant|>", V + 2: "<|end|>"}
    cases = [[_SYSTEM, *turns] for turns in _CONVERSATIONS] + _CONVERSATIONS
    for turns in cases:
        given = copy.deepcopy(turns)
        result = encode_chat_with_system(given, tokenizer)
        expect(given == turns, "your function changed the turns it was given: leave them as they are")
        shown = f"{[turn['role'] for turn in turns]}"
        expect(isinstance(result, tuple | list) and len(result) == 2,
               f"return (ids, loss_mask), as encode_chat does; got {type(result).__name__} for turns {shown}")
        ids = _as_ids(result[0], "ids")
        mask = _as_mask(result[1], "loss_mask")
        expected_ids, expected_mask, where = _system_reference(turns, tokenizer)
        expect(len(ids) == len(mask), f"ids and loss_mask have lengths {len(ids)} and {len(mask)} for turns "
               f"{shown}: one flag per id")
        has_system = turns[0]["role"] == "system"
        if has_system and len(ids) == len(expected_ids) and ids[1:] == expected_ids[1:] and ids[0] != V + 3:
            taken = f", {names[ids[0]]}'s id" if ids[0] in names else ""
            expect(False, f"<|system|> has id {ids[0]}{taken}; it is the first id no other token has: "
                   f"chat_vocab_size(tokenizer) = {V + 3}")
        if has_system and ids == expected_ids[len(where["system_text"]) + 2:]:
            expect(False, "the system turn is missing from the ids: write <|system|>, its text and <|end|> first")
        if ids != expected_ids:
            if len(ids) == len(expected_ids):
                k = _first_difference(ids, expected_ids)
                expect(False, f"for turns {shown}, ids[{k}] is {ids[k]}, expected {expected_ids[k]}: the "
                       "template is <|system|>text<|end|>, then <|user|>text<|end|><|assistant|>text<|end|>…")
            expect(False, f"for turns {shown} you return {len(ids)} ids, expected {len(expected_ids)}: the "
                   "template is <|system|>text<|end|>, then <|user|>text<|end|><|assistant|>text<|end|>…")
        wrong = {k for k, (a, b) in enumerate(zip(mask, expected_mask, strict=True)) if a != b}
        if not wrong:
            continue
        if wrong & set(where["system_text"]):
            expect(False, "the system's text is in the loss mask: it is given to the model like the user's "
                   "turn, never a target")
        if wrong & set(where["system_end"]):
            expect(False, "the <|end|> that closes the system turn is in the loss mask: only the assistant's "
                   "<|end|> is a target (the model must learn to stop its answers)")
        if wrong & set(where["assistant_end"]):
            expect(False, "the <|end|> that closes an assistant turn is missing from the loss mask: the "
                   "model must learn to stop")
        if wrong & set(where["roles"]):
            expect(False, "a role token is in the loss mask: role tokens are given, never predicted")
        k = min(wrong)
        expect(False, f"for turns {shown}, loss_mask[{k}] is {mask[k]}, expected {expected_mask[k]}")
    for bad, where_put in ((_CONVERSATIONS[0][:1] + [_SYSTEM] + _CONVERSATIONS[0][1:], "second"),
                           (_CONVERSATIONS[1][:2] + [_SYSTEM] + _CONVERSATIONS[1][2:], "third"),
                           ([_SYSTEM, _SYSTEM, *_CONVERSATIONS[0]], "second (after another one)")):
        try:
            encode_chat_with_system(copy.deepcopy(bad), tokenizer)
        except ValueError:
            continue
        expect(False, f"a system turn {where_put} in the conversation should raise ValueError: the system turn "
               "may only come first")


# ---------------------------------------------------------------- 17.2 LoRA where it counts

ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]
ALL_LINEAR = [*ATTENTION, "gate_proj", "up_proj", "down_proj"]


def _small_llama(**settings):
    """A Llama small enough to copy in a blink (its weights' values never matter here)."""
    from utils.modern import Llama, LlamaConfig

    config = dict(vocab_size=50, block_size=16, C=16, n_heads=4, n_kv_heads=2, n_layers=2) | settings
    return Llama(LlamaConfig(**config))


def _add_lora_count(model, r, target_modules) -> int | None:
    """What add_lora on a copy trains (None when add_lora refuses the targets)."""
    from utils.lora import add_lora, parameter_counts

    try:
        model = add_lora(copy.deepcopy(model), target_modules, r=r, alpha=2 * r)
    except ValueError:
        return None
    return parameter_counts(model)[0]


def _matched_linears(model, target_modules) -> list[tuple[str, nn.Linear]]:
    def matches(name):
        if isinstance(target_modules, str):
            return re.fullmatch(target_modules, name) is not None
        return any(name == t or name.endswith("." + t) for t in target_modules)

    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and matches(n)]


@checker("Exercise 17.2 — LoRA where it counts")
def check_lora_trainable_parameters(lora_trainable_parameters) -> None:
    """``lora_trainable_parameters(model, r, target_modules)`` → how many parameters add_lora would train,
    counted from the matched Linear layers' shapes without building a LoRA layer; a ValueError where
    add_lora refuses a match (not a Linear, or a weight tied to another)."""
    import utils.lora

    cases = [  # (model settings, r, target_modules)
        ({}, 2, ATTENTION),
        ({}, 4, ATTENTION),
        ({}, 8, ALL_LINEAR),
        ({}, 1, r".*\.(q|v)_proj"),
        ({}, 3, r"blocks\.1\..*_proj"),
        ({}, 2, r"q_proj|.*\.v_proj"),  # "q_proj" alone never is a whole (dotted) name
        ({"bias": True}, 4, ATTENTION),
        ({"tie_weights": False}, 2, ["q_proj", "head"]),
        ({}, 2, ["q_proj", "head"]),  # the head is tied to the token embedding: refused
        ({}, 2, r"token_embedding|.*q_proj"),  # an Embedding is not a Linear: refused
    ]
    built = []
    original_init = utils.lora.LoRALinear.__init__

    def spy(self, *args, **kwargs):
        built.append(type(self).__name__)
        original_init(self, *args, **kwargs)

    for settings, r, targets in cases:
        model = _small_llama(**settings)
        expected = _add_lora_count(model, r, targets)
        names = [name for name, _ in model.named_parameters()]
        utils.lora.LoRALinear.__init__ = spy
        try:
            try:
                answer = lora_trainable_parameters(model, r, copy.deepcopy(targets))
            except ValueError as error:
                answer = error
        finally:
            utils.lora.LoRALinear.__init__ = original_init
        call = f"r={r}, target_modules={targets!r}" + (f" on a Llama with {settings}" if settings else "")
        expect(not built, "your function built LoRA layers (add_lora or LoRALinear): count from the Linear "
               "layers' shapes instead, without building anything")
        expect(names == [name for name, _ in model.named_parameters()]
               and all(p.requires_grad for p in model.parameters()),
               "your function changed the model it was given; it should only read the layers' shapes")
        if expected is None:
            if isinstance(targets, list) and "head" in targets:
                hint = ("head.weight is the token embedding's tensor (tied): add_lora refuses it, since merging "
                        "an update would change the embedding too. Find tied weights (a tensor that two "
                        "modules hold) and raise ValueError")
            else:
                hint = ("token_embedding matches, and it is an nn.Embedding, not an nn.Linear: add_lora "
                        "refuses it; raise ValueError for a matched module that is not an nn.Linear")
            expect(isinstance(answer, ValueError), f"for {call} you return {answer!r}, but add_lora raises "
                   f"ValueError here: {hint}")
            continue
        expect(not isinstance(answer, ValueError), f"for {call} you raise ValueError({answer}), but add_lora "
               f"trains {expected:,} parameters")
        expect(isinstance(answer, numbers.Integral) and not isinstance(answer, bool),
               f"return the count as an int, got {type(answer).__name__} {str(answer)[:40]} for {call}")
        if answer == expected:
            continue
        matched = _matched_linears(model, targets)
        every = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        own = [(n, m) for n, m in every if m.weight is not model.token_embedding.weight]
        if answer == sum(r * m.in_features * m.out_features for _, m in matched):
            expect(False, f"for {call} you count r * in * out = {answer:,}: A is (r, in) and B is (out, r), "
                   "so a layer trains r * (in + out) numbers, never the (out, in) product")
        if answer == sum(m.in_features * m.out_features for _, m in matched):
            expect(False, f"for {call} you count in * out = {answer:,}, the full weights: LoRA trains A (r, "
                   "in) and B (out, r) instead")
        biases = sum(m.bias.numel() for _, m in matched if m.bias is not None)
        if biases and answer == expected + biases:
            expect(False, f"for {call} you count the biases too ({biases:,} numbers): add_lora freezes them; "
                   "only A and B train")
        for layers, what in ((every, "every Linear of the model, the tied head included"),
                             (own, "every Linear of the model")):
            if answer == sum(r * (m.in_features + m.out_features) for _, m in layers):
                expect(False, f"for {call} you count {what} ({answer:,}), not only those target_modules "
                       "names: a name matches when it is a target or ends with '.' + target (a string is "
                       "one regular expression the whole name must match, re.fullmatch)")
        if isinstance(targets, str):
            found = [m for n, m in model.named_modules() if isinstance(m, nn.Linear) and re.search(targets, n)]
            if answer == sum(r * (m.in_features + m.out_features) for m in found):
                expect(False, f"for {call} you count every Linear whose name contains a match ({answer:,}): "
                       "a string target must match the whole name (re.fullmatch), not a part of it")
        expect(False, f"for {call} you return {answer:,}; add_lora trains {expected:,} parameters")


# ---------------------------------------------------------------- 17.3 only the last answer

@checker("Exercise 17.3 — only the last answer")
def check_last_turn_mask(last_turn_mask) -> None:
    """``last_turn_mask(turns, tokenizer)`` → one bool per id of encode_chat(turns, tokenizer), True only on
    the last assistant turn's text and the <|end|> that closes it."""
    from utils.chat import encode_chat

    tokenizer = _tokenizer()
    for turns in _CONVERSATIONS:
        given = copy.deepcopy(turns)
        ids, all_answers = encode_chat(turns, tokenizer)
        mask = last_turn_mask(given, tokenizer)
        expect(given == turns, "your function changed the turns it was given: leave them as they are")
        mask = _as_mask(mask, "last_turn_mask(turns, tokenizer)")
        expect(len(mask) == len(ids), f"your mask has {len(mask)} flags but encode_chat gives {len(ids)} ids "
               f"for a conversation of {len(turns)} turns: one flag per id")
        n = len(tokenizer.encode(turns[-1]["content"]))  # the last answer: n tokens, then <|end|>
        start = len(ids) - n - 1  # its first token; start - 1 is its <|assistant|>
        expected = [False] * start + [True] * (n + 1)
        if mask == expected:
            continue
        if len(turns) > 2 and mask == all_answers:
            expect(False, f"in a conversation of {len(turns)} turns every assistant turn is in your mask; "
                   "only the last answer is a target here")
        if mask == expected[:-1] + [False]:
            expect(False, "the <|end|> that closes the last answer is missing: the model must learn to stop")
        if mask == expected[1:] + [False]:
            expect(False, "your mask is one position early: it starts on the <|assistant|> role token and "
                   "misses the <|end|>")
        if mask[start - 1] and mask[:start - 1] == expected[:start - 1] and mask[start:] == expected[start:]:
            expect(False, "the <|assistant|> role token is in your mask: it is given, never predicted")
        k = _first_difference(mask, expected)
        expect(False, f"for a conversation of {len(turns)} turns, mask[{k}] is {mask[k]}, expected {expected[k]} "
               f"(the last answer's tokens are positions {start}..{len(ids) - 1}, its <|end|> last)")
