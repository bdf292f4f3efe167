"""Checkers for chapter 01's exercises (tokenization)."""

from __future__ import annotations

import re

import torch

from utils.exercises import ExerciseFailed, checker, expect, expect_shape

WORD_PATTERN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")  # section 3's words and punctuation
PIECE_PATTERN = re.compile(r"\w+(?:'\w+)*|[^\w\s]|\s+")  # ... and runs of whitespace


@checker("Exercise 1.1 — words that give the text back")
def check_split_keeping_spacing(split_keeping_spacing) -> None:
    """``split_keeping_spacing(text)``: section 3's words and marks, plus each run of whitespace as one piece."""
    cases = [
        "O'er the hill, good-night!",
        "ROMEO:\nIs the day so young?\n\n",
        "  two  spaces,\ttab and trailing ",
        "",
        "word",
    ]
    for text in cases:
        pieces = split_keeping_spacing(text)
        expect(isinstance(pieces, list) and all(isinstance(p, str) for p in pieces),
               f"return a list of strings, got {type(pieces).__name__}")
        expect(all(pieces), f"split_keeping_spacing({text!r}) contains an empty piece: {pieces}")
        expect("".join(pieces) == text,
               f"joining the pieces of {text!r} gives {''.join(pieces)!r}: every character, spaces "
               "and newlines included, must be in exactly one piece")
        words = [p for p in pieces if not p.isspace()]
        expected_words = WORD_PATTERN.findall(text)
        expect(words == expected_words,
               f"the pieces of {text!r} that are not whitespace are {words}, expected section 3's "
               f"words and marks {expected_words}")
        expected = PIECE_PATTERN.findall(text)
        expect(len(pieces) <= len(expected),
               f"split_keeping_spacing({text!r}) gave {pieces}: a run of whitespace (such as two "
               "spaces or two newlines) is one piece, so that a word tokenizer learns it as one token")
        expect(pieces == expected, f"split_keeping_spacing({text!r}) gave {pieces}, expected {expected}")


def _reference_fallback(text: str, char_to_id: dict[str, int]) -> list[int]:
    n = len(char_to_id)
    ids = []
    for character in text:
        if character in char_to_id:
            ids.append(char_to_id[character])
        else:
            ids.extend(n + byte for byte in character.encode("utf-8"))
    return ids


@checker("Exercise 1.2 — byte fallback for unknown characters")
def check_byte_fallback(encode, decode) -> None:
    """``encode(text, char_to_id)``: known characters by id, others as their UTF-8 bytes (ids n + byte);
    ``decode(ids, char_to_id)`` gives the text back."""
    char_to_id = {c: i for i, c in enumerate(sorted(set("abcdefghijklmnopqrstuvwxyz ,.!?\n")))}
    n = len(char_to_id)
    cases = ["hello, world", "café", "naïve — 🙂!", "é", "日本", ""]
    for text in cases:
        expected = _reference_fallback(text, char_to_id)
        ids = encode(text, dict(char_to_id))
        expect(isinstance(ids, list) and all(isinstance(i, int) for i in ids),
               f"encode should return a list of ints, got {type(ids).__name__} {str(ids)[:40]}")
        if text and len(ids) == len(text) and ids != expected:
            expect(False, f"encode({text!r}) gave {ids}: one id per character, but an unknown character "
                          f"becomes its UTF-8 bytes, character.encode('utf-8'), not ord(character) (é is 2 bytes, "
                          f"🙂 is 4): {expected}")
        if text and ids != expected and ids == [e - n if e >= n else e for e in expected]:
            expect(False, f"encode({text!r}) gave {ids}: a byte's id must come after the {n} character "
                          f"ids (n + byte), or byte 3 and character 3 would be the same token")
        expect(ids == expected, f"encode({text!r}) gave {ids}, expected {expected}")
        try:
            back = decode(list(expected), dict(char_to_id))
        except UnicodeDecodeError as error:
            raise ExerciseFailed(
                f"decode({expected}) raised {error}: a byte alone is not a character; collect the "
                "consecutive byte ids and decode them together with bytes(...).decode('utf-8')") from None
        expect(back == text, f"decode({expected}) gave {back!r}, expected {text!r}")


@checker("Exercise 1.3 — padding a batch")
def check_pad_batch(pad_batch) -> None:
    """``pad_batch(sequences, pad_id)`` -> (ids (B, T) long, padding_mask (B, T) bool, True = padding)."""
    sequences = [[5, 6, 7], [8], [9, 10, 11, 12], []]
    pad_id = 0
    result = pad_batch([list(s) for s in sequences], pad_id)
    expect(isinstance(result, tuple) and len(result) == 2, "return a tuple (ids, padding_mask)")
    ids, mask = result
    expect_shape(ids, (4, 4), "ids")
    expect(ids.dtype == torch.long, f"ids should be torch.long (embedding tables need integer ids), got {ids.dtype}")
    expect_shape(mask, (4, 4), "padding_mask")
    expect(mask.dtype == torch.bool, f"padding_mask should be a bool tensor, got {mask.dtype}")
    for b, sequence in enumerate(sequences):
        row = ids[b].tolist()
        expected = sequence + [pad_id] * (4 - len(sequence))
        expect(row == expected, f"row {b} of ids is {row}, expected {expected} (the sequence, then padding on the right)")
        expected_mask = [False] * len(sequence) + [True] * (4 - len(sequence))
        expect(mask[b].tolist() == expected_mask,
               f"row {b} of padding_mask is {mask[b].tolist()}, expected {expected_mask} (True marks padding)")
    ids, mask = pad_batch([[3, 4]], 1)
    expect(ids.tolist() == [[3, 4]] and not mask.any().item(),
           f"a batch of one sequence needs no padding: got ids {ids.tolist()}, padding_mask {mask.tolist()}")
    ids, mask = pad_batch([[1, 2], [3]], 2)
    expect(mask.tolist() == [[False, False], [False, True]],
           f"with pad_id=2, the real id 2 in [1, 2] is not padding: padding_mask is {mask.tolist()}, "
           "expected [[False, False], [False, True]] (mark padding by length, not by comparing with pad_id)")
