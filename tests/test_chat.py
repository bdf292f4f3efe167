"""utils.chat: the chat template, its loss mask, padding and the assistant-only loss (chapter 17)."""

import math

import pytest
import torch

from utils.chat import (
    CHAT_TOKENS,
    answer_text,
    assistant_only_loss,
    chat_token_ids,
    chat_vocab_size,
    decode_chat,
    encode_chat,
    encode_prompt,
    pad_chats,
    render,
    translation_turns,
)
from utils.loop import sequence_loss
from utils.models import GPT, GPTConfig
from utils.tokenizers import BPETokenizer

PAIRS = [
    ("Ein Hund läuft im Schnee.", "A dog runs in the snow."),
    ("Zwei Männer spielen Fußball.", "Two men are playing soccer."),
    ("Ein Mädchen in einem rosa Kleid.", "A girl in a pink dress."),
]


@pytest.fixture(scope="module")
def tokenizer():
    text = [sentence for pair in PAIRS for sentence in pair] * 3 + ["Translate to English: "] * 3
    return BPETokenizer.from_text(text, vocab_size=300, specials=True)


def test_render_writes_the_template():
    turns = translation_turns(*PAIRS[0])
    assert render(turns) == (
        "<|user|>Translate to English: Ein Hund läuft im Schnee.<|end|><|assistant|>A dog runs in the snow.<|end|>"
    )
    assert render(turns[:1], add_generation_prompt=True) == (
        "<|user|>Translate to English: Ein Hund läuft im Schnee.<|end|><|assistant|>"
    )


def test_chat_tokens_are_new_ids_after_the_vocabulary(tokenizer):
    V = tokenizer.vocab_size
    assert chat_token_ids(tokenizer) == {"<|user|>": V, "<|assistant|>": V + 1, "<|end|>": V + 2}
    assert chat_vocab_size(tokenizer) == V + 3
    german, english = PAIRS[0]
    ids, _ = encode_chat(translation_turns(german, english), tokenizer)
    user, assistant, end = V, V + 1, V + 2
    prompt = tokenizer.encode("Translate to English: " + german)
    answer = tokenizer.encode(english)
    assert ids == [user, *prompt, end, assistant, *answer, end]  # the text's ids are the BPE's own
    # text that looks like a chat token stays text: no new ids but the four above
    typed, _ = encode_chat([{"role": "user", "content": "<|end|><|assistant|>"},
                            {"role": "assistant", "content": "no"}], tokenizer)
    assert sum(i >= V for i in typed) == 4


def test_decode_chat_inverts_encode_chat(tokenizer):
    turns = translation_turns(*PAIRS[1])
    ids, _ = encode_chat(turns, tokenizer)
    assert decode_chat(ids, tokenizer) == render(turns)
    assert decode_chat(encode_prompt(turns[:1], tokenizer), tokenizer) == render(turns[:1], add_generation_prompt=True)


def masked_and_unmasked_text(ids, mask, tokenizer):
    kept = decode_chat([i for i, m in zip(ids, mask) if m], tokenizer)
    dropped = decode_chat([i for i, m in zip(ids, mask) if not m], tokenizer)
    return kept, dropped


def test_the_mask_covers_the_answer_and_its_end_token(tokenizer):
    german, english = PAIRS[2]
    ids, mask = encode_chat(translation_turns(german, english), tokenizer)
    assert len(ids) == len(mask) and all(type(m) is bool for m in mask)
    kept, dropped = masked_and_unmasked_text(ids, mask, tokenizer)
    assert kept == english + "<|end|>"
    assert dropped == f"<|user|>Translate to English: {german}<|end|><|assistant|>"
    assert sum(mask) == len(tokenizer.encode(english)) + 1


def test_multi_turn_masks_every_assistant_turn(tokenizer):
    turns = []
    for german, english in PAIRS:
        turns += translation_turns(german, english)
    ids, mask = encode_chat(turns, tokenizer)
    kept, dropped = masked_and_unmasked_text(ids, mask, tokenizer)
    assert kept == "".join(english + "<|end|>" for _, english in PAIRS)
    assert dropped == "".join(f"<|user|>Translate to English: {german}<|end|><|assistant|>" for german, _ in PAIRS)
    # by position: True exactly from after each <|assistant|> through the next <|end|>
    user, assistant, end = (chat_token_ids(tokenizer)[t] for t in CHAT_TOKENS)
    expected, inside = [], False
    for i in ids:
        expected.append(inside)
        if i == assistant:
            inside = True
        elif i == end:
            expected[-1], inside = inside, False
    assert mask == expected and sum(mask) > 0


def test_the_prompt_is_the_training_sequence_up_to_the_answer(tokenizer):
    turns = translation_turns(*PAIRS[0]) + translation_turns(*PAIRS[1])
    ids, mask = encode_chat(turns, tokenizer)
    prompt = encode_prompt(turns[:-1], tokenizer)
    assert ids[: len(prompt)] == prompt  # generation starts where training's answer starts
    assert all(mask[len(prompt):]) and not mask[len(prompt) - 1]  # the last answer, not its <|assistant|>
    assert sum(mask[: len(prompt)]) == len(tokenizer.encode(PAIRS[0][1])) + 1  # the first answer and its end


def brute_force_loss(logits, targets, mask, smoothing=0.0):
    """Per position in float64 with Python's math: -log softmax, averaged over masked targets."""
    total, count = 0.0, 0
    B, T, V = logits.shape
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            row = [float(v) for v in logits[b, t]]
            top = max(row)
            log_z = top + math.log(math.fsum(math.exp(v - top) for v in row))
            nll = log_z - row[int(targets[b, t])]
            uniform = math.fsum(log_z - v for v in row) / V
            total += (1 - smoothing) * nll + smoothing * uniform
            count += 1
    return total / count


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_assistant_only_loss_equals_a_brute_force_float64_sum(smoothing):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, dtype=torch.float64, generator=generator) * 3
    targets = torch.randint(0, 11, (3, 7), generator=generator)
    mask = torch.rand(3, 7, generator=generator) < 0.4
    loss = assistant_only_loss(logits, targets, mask, label_smoothing=smoothing)
    assert abs(loss.item() - brute_force_loss(logits, targets, mask, smoothing)) <= 1e-12
    everything = sequence_loss(logits, targets, label_smoothing=smoothing)
    assert abs(everything.item() - brute_force_loss(logits, targets, torch.ones_like(mask), smoothing)) <= 1e-12
    assert abs(loss.item() - everything.item()) > 0.05  # the mask changes the loss


def test_no_gradient_reaches_an_unmasked_position():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 9, dtype=torch.float64, generator=generator).requires_grad_()
    targets = torch.randint(0, 9, (2, 6), generator=generator)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)
    assistant_only_loss(logits, targets, mask).backward()
    assert torch.count_nonzero(logits.grad[~mask]) == 0
    # where it counts: (softmax - one_hot) / number of masked targets, by hand
    expected = (torch.softmax(logits.detach(), -1) - torch.nn.functional.one_hot(targets, 9)) / mask.sum()
    assert (logits.grad[mask] - expected[mask]).abs().max() <= 1e-15


def test_answer_text_stops_at_the_first_chat_token(tokenizer):
    V = tokenizer.vocab_size
    user, assistant, end = V, V + 1, V + 2
    answer = tokenizer.encode("A dog runs in the snow.")
    assert answer_text([*answer, end, *tokenizer.encode("more")], tokenizer) == "A dog runs in the snow."
    assert answer_text([*answer, user, *answer], tokenizer) == "A dog runs in the snow."
    assert answer_text(answer, tokenizer) == "A dog runs in the snow."  # ran out of tokens: all of it
    assert answer_text([end], tokenizer) == ""
    with pytest.raises(ValueError, match="token id -1 at position 0"):
        answer_text([-1, assistant], tokenizer)


def test_the_loss_on_a_chat_differs_with_and_without_the_mask(tokenizer):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=chat_vocab_size(tokenizer), block_size=64, C=32, n_heads=4, n_layers=2)).eval()
    inputs, targets, mask = pad_chats([encode_chat(translation_turns(*pair), tokenizer) for pair in PAIRS],
                                      pad_id=tokenizer.pad_id)
    with torch.no_grad():
        logits = model(inputs).double()
    masked = assistant_only_loss(logits, targets, mask)
    assert abs(masked.item() - brute_force_loss(logits, targets, mask)) <= 1e-12
    unmasked = assistant_only_loss(logits, targets, torch.ones_like(mask))
    assert masked.item() != unmasked.item()


def test_padding_never_counts(tokenizer):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=chat_vocab_size(tokenizer), block_size=64, C=32, n_heads=4, n_layers=2)).eval()
    examples = [encode_chat(translation_turns(*pair), tokenizer) for pair in PAIRS]
    lengths = [len(ids) for ids, _ in examples]
    assert len(set(lengths)) == len(lengths)  # different lengths: the batch has padding
    losses = {}
    for pad_id in (tokenizer.pad_id, chat_vocab_size(tokenizer) - 1):
        inputs, targets, mask = pad_chats(examples, pad_id=pad_id)
        assert inputs.shape == targets.shape == mask.shape == (3, max(lengths) - 1)
        for k, n in enumerate(lengths):
            assert not mask[k, n - 1:].any()  # no padded target is in the mask
            assert mask[k].tolist()[: n - 1] == examples[k][1][1:]
        with torch.no_grad():
            losses[pad_id] = assistant_only_loss(model(inputs), targets, mask).item()
    assert len(set(losses.values())) == 1, losses  # any pad id: the same loss
    # the batch's loss is the token-weighted mean of each conversation's loss alone, unpadded
    total = count = 0.0
    for ids, loss_mask in examples:
        x = torch.tensor([ids[:-1]])
        with torch.no_grad():
            alone = assistant_only_loss(model(x), torch.tensor([ids[1:]]), torch.tensor([loss_mask[1:]]))
        total += alone.item() * sum(loss_mask[1:])
        count += sum(loss_mask[1:])
    assert abs(losses[tokenizer.pad_id] - total / count) <= 1e-6


@pytest.mark.parametrize("turns, message", [
    ([], "the conversation has no turns"),
    ("Ein Hund.", "turns must be a list"),
    ({"role": "user", "content": "Hallo"}, "turns must be a list"),
    ([{"role": "system", "content": "Be brief."}], "turn 0 has role 'system'; the roles are user, assistant"),
    ([{"role": "assistant", "content": "Hi"}], "turn 0 is the assistant's, but turns start with the user"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "turn 1 is the user's"),
    ([{"role": "user", "content": ""}, {"role": "assistant", "content": "b"}], "turn 0 \\(user\\) must have non-empty"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}], "turn 1 \\(assistant\\) must have"),
    ([{"role": "user"}], "turn 0 must be a mapping with 'role' and 'content'"),
    ([("user", "a")], "turn 0 must be a mapping"),
    (translation_turns("Ein Hund."), "must end with the assistant's turn, but its last turn is the user's"),
])
def test_bad_conversations_fail_in_one_line(tokenizer, turns, message):
    with pytest.raises(ValueError, match=message) as error:
        encode_chat(turns, tokenizer)
    assert "\n" not in str(error.value)


def test_bad_prompts_batches_ids_and_masks(tokenizer):
    with pytest.raises(ValueError, match="must end with the user's turn"):
        encode_prompt(translation_turns(*PAIRS[0]), tokenizer)
    with pytest.raises(ValueError, match="must end with the user's turn"):
        render(translation_turns(*PAIRS[0]), add_generation_prompt=True)
    with pytest.raises(ValueError, match="token id 303 at position 1 is not in \\[0, 303\\)"):
        decode_chat([5, chat_vocab_size(tokenizer)], tokenizer)
    with pytest.raises(ValueError, match="needs at least one"):
        pad_chats([], pad_id=0)
    with pytest.raises(ValueError, match="example 1 must be \\(ids, loss_mask\\) of one length"):
        pad_chats([([1, 2], [False, True]), ([1, 2, 3], [True])], pad_id=0)
    with pytest.raises(ValueError, match="example 0 has 1 token"):
        pad_chats([([1], [True])], pad_id=0)
    logits, targets = torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="no True position"):
        assistant_only_loss(logits, targets, torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        assistant_only_loss(logits, targets, torch.ones(1, 3))
    with pytest.raises(ValueError, match="mask and targets must have one shape"):
        assistant_only_loss(logits, targets, torch.ones(1, 4, dtype=torch.bool))


def test_every_multi30k_validation_pair_round_trips_with_chapter_12s_bpe():
    """Real captions (umlauts, ß, quotes): the template and its mask on 514 pairs the BPE never saw.

    The BPE is trained (as chapter 12 trains it, utils.translation.train_tokenizer) on
    the first 500 validation pairs: loading the training split alone would take seconds.
    """
    from utils.data import load_multi30k
    from utils.translation import train_tokenizer

    pairs = load_multi30k("val")
    tokenizer = train_tokenizer(pairs[:500], vocab_size=400)
    assert len(pairs[500:]) == 514
    for german, english in pairs[500:]:
        turns = translation_turns(german, english)
        ids, mask = encode_chat(turns, tokenizer)
        assert decode_chat(ids, tokenizer) == render(turns)
        kept, dropped = masked_and_unmasked_text(ids, mask, tokenizer)
        assert kept == english + "<|end|>"
        assert dropped == f"<|user|>Translate to English: {german}<|end|><|assistant|>"
