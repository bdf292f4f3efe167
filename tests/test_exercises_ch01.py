"""Chapter 01's checkers: they pass the reference solutions and reject plausible wrong answers."""

import re

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch01 import check_byte_fallback, check_pad_batch, check_split_keeping_spacing


def split_keeping_spacing(text):
    return re.findall(r"\w+(?:'\w+)*|[^\w\s]|\s+", text)


def test_split_keeping_spacing_checker(capsys):
    check_split_keeping_spacing(split_keeping_spacing)
    assert "✓" in capsys.readouterr().out
    # section 3's pattern alone drops the spacing
    with pytest.raises(ExerciseFailed, match="every character, spaces and newlines included"):
        check_split_keeping_spacing(lambda text: re.findall(r"\w+(?:'\w+)*|[^\w\s]", text))
    # one piece per whitespace character
    with pytest.raises(ExerciseFailed, match="a run of whitespace .* is one piece"):
        check_split_keeping_spacing(lambda text: re.findall(r"\w+(?:'\w+)*|[^\w\s]|\s", text))
    # apostrophes split off: O ' er
    with pytest.raises(ExerciseFailed, match="expected section 3's words"):
        check_split_keeping_spacing(lambda text: re.findall(r"\w+|[^\w\s]|\s+", text))
    # str.split(" ") keeps the text but glues punctuation to words
    with pytest.raises(ExerciseFailed, match="empty piece|expected section 3's words"):
        check_split_keeping_spacing(lambda text: re.split(r"( +)", text))
    with pytest.raises(ExerciseFailed, match="return a list of strings"):
        check_split_keeping_spacing(lambda text: tuple(split_keeping_spacing(text)))


def encode(text, char_to_id, offset=True, use_ord=False):
    n = len(char_to_id) if offset else 0
    ids = []
    for c in text:
        if c in char_to_id:
            ids.append(char_to_id[c])
        elif use_ord:
            ids.append(n + ord(c))
        else:
            ids.extend(n + b for b in c.encode("utf-8"))
    return ids


def decode(ids, char_to_id, together=True):
    id_to_char = {i: c for c, i in char_to_id.items()}
    n, out, pending = len(char_to_id), [], []
    for i in ids + [None]:
        if i is not None and i >= n:
            pending.append(i - n)
            if not together:
                out.append(bytes(pending).decode("utf-8"))
                pending = []
            continue
        if pending:
            out.append(bytes(pending).decode("utf-8"))
            pending = []
        if i is not None:
            out.append(id_to_char[i])
    return "".join(out)


def test_byte_fallback_checker(capsys):
    check_byte_fallback(encode, decode)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="not ord"):
        check_byte_fallback(lambda t, c: encode(t, c, use_ord=True), decode)
    with pytest.raises(ExerciseFailed, match="must come after the"):
        check_byte_fallback(lambda t, c: encode(t, c, offset=False), decode)
    with pytest.raises(ExerciseFailed, match="decode them together"):
        check_byte_fallback(encode, lambda ids, c: decode(ids, c, together=False))
    with pytest.raises(ExerciseFailed, match="list of ints"):
        check_byte_fallback(lambda t, c: torch.tensor(encode(t, c)), decode)


def test_pad_batch_checker_rejects_wrong_answers():
    def float_ids(sequences, pad_id):
        T = max(map(len, sequences))
        ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in sequences], dtype=torch.float)
        return ids, torch.tensor([[False] * len(s) + [True] * (T - len(s)) for s in sequences])

    with pytest.raises(ExerciseFailed, match="torch.long"):
        check_pad_batch(float_ids)

    def mask_by_value(sequences, pad_id):  # marks a real token equal to pad_id as padding
        T = max(map(len, sequences))
        ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in sequences], dtype=torch.long)
        return ids, ids == pad_id

    with pytest.raises(ExerciseFailed, match="mark padding by length"):
        check_pad_batch(mask_by_value)

    def left_padding(sequences, pad_id):
        T = max(map(len, sequences))
        ids = torch.tensor([[pad_id] * (T - len(s)) + s for s in sequences], dtype=torch.long)
        return ids, torch.tensor([[True] * (T - len(s)) + [False] * len(s) for s in sequences])

    with pytest.raises(ExerciseFailed, match=r"row 0 of ids is \[0, 5, 6, 7\], expected \[5, 6, 7, 0\]"):
        check_pad_batch(left_padding)

    def inverted_mask(sequences, pad_id):
        T = max(map(len, sequences))
        ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in sequences], dtype=torch.long)
        return ids, torch.tensor([[True] * len(s) + [False] * (T - len(s)) for s in sequences])

    with pytest.raises(ExerciseFailed, match="True marks padding"):
        check_pad_batch(inverted_mask)
