"""Chapter 17's checkers: they accept the right answer and name each plausible mistake."""

import copy
import re

import pytest
from torch import nn

from utils.chat import chat_token_ids, chat_vocab_size, check_turns, encode_chat
from utils.exercises import ExerciseFailed
from utils.exercises.ch17 import (
    ALL_LINEAR,
    ATTENTION,
    _small_llama,
    check_encode_chat_with_system,
    check_last_turn_mask,
    check_lora_trainable_parameters,
)
from utils.lora import add_lora, parameter_counts

# ---------------------------------------------------------------- 17.1


def system_encoder(*, system_id=None, system_text_masked=False, system_end_masked=False,
                   assistant_end=True, roles_masked=False, only_first=True, system_end=True):
    """encode_chat_with_system, right by default, with one chosen mistake."""

    def encode_chat_with_system(turns, tokenizer):
        turns = list(turns)
        system = [k for k, turn in enumerate(turns) if turn["role"] == "system"]
        if only_first and system and system != [0]:
            raise ValueError("the system turn may only come first")
        special = chat_token_ids(tokenizer)
        ids, mask = [], []
        for turn in turns:
            if turn["role"] == "system":
                text = tokenizer.encode(turn["content"])
                ids += [chat_vocab_size(tokenizer) if system_id is None else system_id(tokenizer), *text]
                mask += [roles_masked] + [system_text_masked] * len(text)
                if system_end:
                    ids.append(special["<|end|>"])
                    mask.append(system_end_masked)
                continue
            role = turn["role"]
            text = tokenizer.encode(turn["content"])
            answer = role == "assistant"
            ids += [special[f"<|{role}|>"], *text, special["<|end|>"]]
            mask += [roles_masked] + [answer] * len(text) + [answer and assistant_end]
        return ids, mask

    return encode_chat_with_system


def test_system_turn_checker_accepts_the_right_answer(capsys):
    check_encode_chat_with_system(system_encoder())
    assert "✓ Exercise 17.1" in capsys.readouterr().out


def test_system_turn_checker_accepts_a_solution_built_on_encode_chat(capsys):
    def encode_chat_with_system(turns, tokenizer):
        if turns[0]["role"] != "system":
            return encode_chat(turns, tokenizer)
        head = [chat_vocab_size(tokenizer), *tokenizer.encode(turns[0]["content"]),
                chat_token_ids(tokenizer)["<|end|>"]]
        ids, mask = encode_chat(turns[1:], tokenizer)  # a later system turn: check_turns raises
        return head + ids, [False] * len(head) + mask

    check_encode_chat_with_system(encode_chat_with_system)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(("mistake", "message"), [
    (dict(system_text_masked=True), "the system's text is in the loss mask"),
    (dict(system_end_masked=True), "the <|end|> that closes the system turn is in the loss mask"),
    (dict(assistant_end=False), r"the <\|end\|> that closes an assistant turn is missing"),
    (dict(roles_masked=True), "a role token is in the loss mask"),
    (dict(system_id=lambda tokenizer: tokenizer.vocab_size + 2), r"<\|system\|> has id 302, <\|end\|>'s id"),
    (dict(system_id=lambda tokenizer: tokenizer.vocab_size), r"has id 300, <\|user\|>'s id.*= 303"),
    (dict(system_id=lambda tokenizer: 0), r"<\|system\|> has id 0; .*= 303"),
    (dict(only_first=False), "a system turn second in the conversation should raise ValueError"),
    (dict(system_end=False), r"you return \d+ ids, expected \d+: the template is <\|system\|>text<\|end\|>"),
])
def test_system_turn_checker_names_each_mistake(mistake, message):
    with pytest.raises(ExerciseFailed, match=re.compile(re.escape("Exercise 17.1") + ".*" + message)):
        check_encode_chat_with_system(system_encoder(**mistake))


def test_system_turn_checker_names_a_missing_system_turn_and_bad_returns():
    def drops_the_system(turns, tokenizer):
        return encode_chat([turn for turn in turns if turn["role"] != "system"], tokenizer)

    with pytest.raises(ExerciseFailed, match="the system turn is missing from the ids"):
        check_encode_chat_with_system(drops_the_system)
    with pytest.raises(ExerciseFailed, match=r"return \(ids, loss_mask\)"):
        check_encode_chat_with_system(lambda turns, tokenizer: system_encoder()(turns, tokenizer)[0])
    with pytest.raises(ExerciseFailed, match="loss_mask should be a list of True/False"):
        check_encode_chat_with_system(
            lambda turns, tokenizer: (lambda ids, mask: (ids, [int(m) for m in mask]))(
                *system_encoder()(turns, tokenizer)))

    def pops_the_system(turns, tokenizer):
        if turns[0]["role"] == "system":
            system = turns.pop(0)
            ids, mask = system_encoder()(turns, tokenizer)
            turns.insert(0, dict(system, content=system["content"].upper()))
            return system_encoder()([system, *turns[1:]], tokenizer)
        return system_encoder()(turns, tokenizer)

    with pytest.raises(ExerciseFailed, match="changed the turns it was given"):
        check_encode_chat_with_system(pops_the_system)


def test_system_turn_checker_says_not_attempted(capsys):
    def encode_chat_with_system(turns, tokenizer):
        raise NotImplementedError

    check_encode_chat_with_system(encode_chat_with_system)
    assert "not attempted yet" in capsys.readouterr().out


# ---------------------------------------------------------------- 17.2


def counter(*, product=False, full=False, biases=False, every_linear=False, refuse_tied=True,
            refuse_other=True, match="fullmatch"):
    """lora_trainable_parameters, right by default, with one chosen mistake."""

    def lora_trainable_parameters(model, r, target_modules):
        holders = {}
        for module in model.modules():
            for parameter in module.parameters(recurse=False):
                holders[id(parameter)] = holders.get(id(parameter), 0) + 1

        def matches(name):
            if isinstance(target_modules, str):
                return getattr(re, match)(target_modules, name) is not None
            return any(name == t or name.endswith("." + t) for t in target_modules)

        total = 0
        for name, module in model.named_modules():
            if not name or not (every_linear or matches(name)):
                continue
            if not isinstance(module, nn.Linear):
                if refuse_other and not every_linear:
                    raise ValueError(f"{name} is not an nn.Linear")
                continue
            if holders[id(module.weight)] > 1 and refuse_tied and not every_linear:
                raise ValueError(f"{name}.weight is tied")
            i, o = module.in_features, module.out_features
            total += i * o if full else r * i * o if product else r * (i + o)
            if biases and module.bias is not None:
                total += module.bias.numel()
        return total

    return lora_trainable_parameters


def test_lora_count_checker_accepts_the_right_answer(capsys):
    check_lora_trainable_parameters(counter())
    assert "✓ Exercise 17.2" in capsys.readouterr().out


def test_lora_count_checker_agrees_with_add_lora_on_the_counts_it_uses():
    model = _small_llama()  # C = 16, 4 heads of 4, 2 kv heads: k and v are 16 -> 8
    attention = (r := 4) * ((16 + 16) * 2 + (16 + 8) * 2) * 2  # q, out; k, v; 2 layers
    assert counter()(model, r, ATTENTION) == attention
    assert parameter_counts(add_lora(copy.deepcopy(model), ATTENTION, r=r, alpha=8))[0] == attention
    d_ff = model.blocks[0].feed_forward.d_ff
    everything = attention + r * 3 * (16 + d_ff) * 2
    assert parameter_counts(add_lora(copy.deepcopy(model), ALL_LINEAR, r=r, alpha=8))[0] == everything


@pytest.mark.parametrize(("mistake", "message"), [
    (dict(product=True), r"you count r \* in \* out"),
    (dict(full=True), r"you count in \* out = .*, the full weights"),
    (dict(biases=True), r"you count the biases too \([\d,]+ numbers\)"),
    (dict(every_linear=True), r"you count every Linear of the model, the tied head included"),
    (dict(refuse_tied=False), "head.weight is the token embedding's tensor"),
    (dict(refuse_other=False), "token_embedding matches, and it is an nn.Embedding"),
    (dict(match="search"), r"must match the whole name \(re.fullmatch\), not a part"),
])
def test_lora_count_checker_names_each_mistake(mistake, message):
    with pytest.raises(ExerciseFailed, match=re.compile(re.escape("Exercise 17.2") + ".*" + message)):
        check_lora_trainable_parameters(counter(**mistake))


def test_lora_count_checker_names_unmatched_linears_without_the_head():
    def own_linears(model, r, target_modules):
        return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
                   if isinstance(m, nn.Linear) and n != "head")

    with pytest.raises(ExerciseFailed, match=r"you count every Linear of the model \([\d,]+\), not only"):
        check_lora_trainable_parameters(own_linears)


def test_lora_count_checker_refuses_building_lora_and_changing_the_model():
    def builds(model, r, target_modules):
        return parameter_counts(add_lora(copy.deepcopy(model), target_modules, r=r, alpha=1))[0]

    with pytest.raises(ExerciseFailed, match="your function built LoRA layers"):
        check_lora_trainable_parameters(builds)

    def freezes(model, r, target_modules):
        model.requires_grad_(False)
        return counter()(model, r, target_modules)

    with pytest.raises(ExerciseFailed, match="changed the model it was given"):
        check_lora_trainable_parameters(freezes)
    with pytest.raises(ExerciseFailed, match="return the count as an int, got float"):
        check_lora_trainable_parameters(lambda model, r, targets: float(counter()(model, r, targets)))
    with pytest.raises(ExerciseFailed, match=r"you raise ValueError\(no\), but add_lora trains"):
        check_lora_trainable_parameters(lambda model, r, targets: (_ for _ in ()).throw(ValueError("no")))


# ---------------------------------------------------------------- 17.3


def last_masker(*, every_answer=False, end=True, role=False, shift=0):
    """last_turn_mask, right by default, with one chosen mistake."""

    def last_turn_mask(turns, tokenizer):
        pairs = check_turns(turns, last="assistant")
        mask = []
        for k, (speaker, content) in enumerate(pairs):
            target = speaker == "assistant" and (every_answer or k == len(pairs) - 1)
            n = len(tokenizer.encode(content))
            mask += [target and role] + [target] * n + [target and end]
        if shift:
            mask = mask[shift:] + [False] * shift
        return mask

    return last_turn_mask


def test_last_turn_checker_accepts_the_right_answer(capsys):
    check_last_turn_mask(last_masker())
    assert "✓ Exercise 17.3" in capsys.readouterr().out


@pytest.mark.parametrize(("mistake", "message"), [
    (dict(every_answer=True), "every assistant turn is in your mask"),
    (dict(end=False), r"the <\|end\|> that closes the last answer is missing"),
    (dict(role=True), r"the <\|assistant\|> role token is in your mask"),
    (dict(shift=1), "your mask is one position early"),
])
def test_last_turn_checker_names_each_mistake(mistake, message):
    with pytest.raises(ExerciseFailed, match=re.compile(re.escape("Exercise 17.3") + ".*" + message)):
        check_last_turn_mask(last_masker(**mistake))


def test_last_turn_checker_names_wrong_lengths_and_types():
    with pytest.raises(ExerciseFailed, match="one flag per id"):
        check_last_turn_mask(lambda turns, tokenizer: last_masker()(turns, tokenizer)[:-1])
    with pytest.raises(ExerciseFailed, match="should be a list of True/False"):
        check_last_turn_mask(lambda turns, tokenizer: [int(m) for m in last_masker()(turns, tokenizer)])

    def one_late(turns, tokenizer):  # True from the answer's second token through <|end|> and beyond
        mask = last_masker()(turns, tokenizer)
        return [False] + mask[:-1]

    with pytest.raises(ExerciseFailed, match=r"mask\[\d+\] is False, expected True"):
        check_last_turn_mask(one_late)
