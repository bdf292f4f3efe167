"""GPT-2's tokenizer (chapter 16): the same ids as tiktoken, on real corpora, hard Unicode and random text.

The reference is ``tiktoken.Encoding`` built from the same ranks file (read by
tiktoken's own loader, not ours) with r50k's pattern; nothing downloads.
"""

from __future__ import annotations

import unicodedata

import pytest
import tiktoken
import tiktoken.load
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data import fetch, load_multi30k, load_tiny_shakespeare
from utils.tokenizers import (
    END_OF_TEXT,
    END_OF_TEXT_ID,
    GPT2_PATTERN,
    BPETokenizer,
    GPT2Tokenizer,
    bytes_to_unicode,
    gpt2_tokenizer,
    merges_to_ranks,
    read_ranks,
    split_gpt2_chunks,
    train_bpe,
)


@pytest.fixture(scope="module")
def ours() -> GPT2Tokenizer:
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def reference() -> tiktoken.Encoding:
    ranks = tiktoken.load.load_tiktoken_bpe(str(fetch("gpt2/r50k_base.tiktoken")))
    return tiktoken.Encoding("r50k_offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={END_OF_TEXT: END_OF_TEXT_ID})


@pytest.fixture(scope="module")
def shakespeare_ids(ours):
    """All of Tiny Shakespeare, encoded once for the module."""
    text = load_tiny_shakespeare()
    return text, ours.encode(text)


def test_known_ids():
    """The ids GPT-2's own tokenizer gives (TOOLCHAIN.md), with no reference library involved."""
    ids = gpt2_tokenizer().encode("Hello, I'm a language model,")
    assert ids == [15496, 11, 314, 1101, 257, 3303, 2746, 11]
    assert gpt2_tokenizer().vocab_size == 50257 == len(gpt2_tokenizer())


def test_tiny_shakespeare_equals_tiktoken(shakespeare_ids, reference, ours):
    text, ids = shakespeare_ids
    assert len(ids) == 338_025
    assert ids == reference.encode_ordinary(text)
    assert ours.decode(ids) == text


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_multi30k_equals_tiktoken(split, ours, reference):
    pairs = load_multi30k(split)
    for language in (0, 1):  # German, English
        text = "\n".join(pair[language] for pair in pairs)
        ids = ours.encode(text)
        assert ids == reference.encode_ordinary(text), (split, language)
        assert ours.decode(ids) == text


ADVERSARIAL = [
    "👨‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇩🇪🇫🇷 flags, 🏳️‍🌈, ❤️‍🔥",  # joiners, modifiers, variation selectors
    "e\u0301 é Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ \u0301\u0301\u0301 a\u20dd",  # combining marks, alone and stacked
    "日本語のテキスト、中文文本。한국어 텍스트 ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３",  # CJK, Hangul, full width
    "مرحبا بالعالم! שָׁלוֹם עוֹלָם \u200fright-to-left\u200e \u202eevil\u202c ١٢٣ ۴۵۶",  # RTL, marks, digits
    "\x00\x01\x02\x1b[31mred\x1b[0m\x7f \x1c\x1d\x1e\x1f \x85 \u2028\u2029 \ufeffBOM \u200b\u200c\u200d",
    " " * 1000 + "x" + "\t" * 50 + "\n" * 30 + " \n \n" * 20 + "\r\n" * 10 + "\xa0\u2009\u3000 end  ",
    "1" * 5000 + " " + "1234567890" * 300 + " 3.14159 -42 1e10 ४२ ⅫⅬ ½ ²³",
    "'s 's 'S 'll 'LL 've 're 'd 'm 't 'x ’s ''s '''  ' s don't I'M o'er ''",
    "<|endoftext|> <|endoftext <|end|> |>",  # the special token's text, read as ordinary text
    "a" * 3000 + " " + "ab" * 1000 + " " + "!" * 500 + " " + "😀" * 300,
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 \U0001d400\U0001d7ce \ue000\uf8ff \ufffd\ufffe \U0010fffd",
    "",
    " ",
    "\n",
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_unicode_equals_tiktoken(text, ours, reference):
    ids = ours.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert ours.decode(ids) == text


def _assigned(c: int) -> bool:
    """Known to this Python's Unicode database (3.11: Unicode 14.0) and not a surrogate."""
    return unicodedata.category(chr(c)) not in ("Cn", "Cs")


def test_code_points_in_context_equal_tiktoken(ours, reference):
    """Every assigned code point below U+0800 and every 37th above, each in six contexts.

    Only code points this Python knows: characters assigned since Unicode 14 differ
    (17,480 of them, all after tiktoken's tables: the `regex` package calls U+1E6C0 a letter, tiktoken does not).
    """
    points = [c for c in range(0x800) if _assigned(c)]
    points += [c for c in range(0x800, 0x110000, 37) if _assigned(c)]
    for start in range(0, len(points), 2000):
        text = "".join(f"a{chr(c)} {chr(c)}{chr(c)}1 {chr(c)}'s\n" for c in points[start:start + 2000])
        assert ours.encode(text) == reference.encode_ordinary(text), hex(points[start])


# Text from every assigned character, and text from the characters the pattern cares most about.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cn")), max_size=80)
PATTERN_EDGES = st.text(st.sampled_from(list(" \t\n\r'sldvmtSLa1é日!_.\xa0\u2009\u3000😀\u0301\u200d\x85٣")),
                        max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, PATTERN_EDGES))
def test_random_text_equals_tiktoken(text):
    ours = gpt2_tokenizer()
    ids = ours.encode(text)
    assert ids == _REFERENCE().encode_ordinary(text)
    assert ours.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_decode_encode_round_trip_for_any_string(text):
    """Unassigned code points included: whatever the pre-tokenizer does, the bytes come back."""
    assert gpt2_tokenizer().decode(gpt2_tokenizer().encode(text)) == text


_REFERENCE_CACHE: list[tiktoken.Encoding] = []


def _REFERENCE() -> tiktoken.Encoding:  # hypothesis tests cannot take module fixtures
    if not _REFERENCE_CACHE:
        tokenizer = gpt2_tokenizer()
        _REFERENCE_CACHE.append(tiktoken.Encoding("r50k_h", pat_str=GPT2_PATTERN, mergeable_ranks=tokenizer.ranks,
                                                  special_tokens={END_OF_TEXT: END_OF_TEXT_ID}))
    return _REFERENCE_CACHE[0]


def test_special_token(ours, reference):
    text = "first document<|endoftext|>second<|endoftext|>"
    assert ours.encode(text, allowed_special=True) == reference.encode(text, allowed_special="all")
    assert ours.encode(text, allowed_special=True).count(END_OF_TEXT_ID) == 2
    assert END_OF_TEXT_ID not in ours.encode(text)  # ordinary text unless allowed
    assert ours.encode(text) == reference.encode_ordinary(text)
    assert ours.decode([END_OF_TEXT_ID]) == END_OF_TEXT
    assert ours.decode(ours.encode(text, allowed_special=True)) == text


def test_byte_table_and_the_order_of_the_first_256_ranks(ours):
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    # ranks 0..255 are the single bytes, in the table's order
    assert [ours.token_bytes[i] for i in range(256)] == [bytes([b]) for b in table]
    assert ours.token(262) == "Ġthe" and ours.decode([262]) == " the"
    assert ours.token(END_OF_TEXT_ID) == END_OF_TEXT


def test_split_gpt2_chunks():
    text = "Hello world's  end!!\n\n  42x"
    assert split_gpt2_chunks(text) == ["Hello", " world", "'s", " ", " end", "!!", "\n\n ", " 42", "x"]
    assert "".join(split_gpt2_chunks(text)) == text


def test_split_character_decodes_with_replacement(ours):
    ids = ours.encode("é😀")
    assert ours.decode(ids) == "é😀"
    assert ours.decode(ids[-1:]).endswith("\ufffd")  # the emoji's last bytes alone are no character


def test_lone_surrogate_is_named(ours):
    with pytest.raises(ValueError, match="position 3.*lone surrogate"):
        ours.encode("abc\ud800def")


def test_bad_ids_are_named(ours):
    with pytest.raises(ValueError, match="token id 50257 at position 1"):
        ours.decode([1, 50257])
    with pytest.raises(ValueError, match="token id -1 at position 0"):
        ours.decode([-1])
    with pytest.raises(TypeError, match="position 0"):
        ours.decode([1.5])
    assert ours.decode(torch.tensor([15496, 11])) == "Hello,"
    with pytest.raises(TypeError, match="string"):
        ours.encode(b"bytes")


def test_a_small_cache_gives_the_same_ids(shakespeare_ids):
    text, ids = shakespeare_ids
    tokenizer = GPT2Tokenizer(gpt2_tokenizer().ranks)
    tokenizer.CACHE_SIZE = 100  # cleared again and again
    assert tokenizer.encode(text[:50_000]) == gpt2_tokenizer().encode(text[:50_000])


@pytest.mark.parametrize("content, message", [
    (b"IQ== 0\nIQ== 1\n", "line 2: the token b'!' already has rank 0"),
    (b"IQ== 0\nnot-base64 1\n", "line 2: not a tiktoken ranks line"),
    (b"IQ== 0 7\n", "line 1: not a tiktoken ranks line"),
    (b"IQ== zero\n", "line 1: not a tiktoken ranks line"),
    (b"IQ== 3\n", "not 0..0"),
    (b"IQ== 0\n", "255 single bytes have no rank"),
])
def test_damaged_ranks_file_is_named(tmp_path, content, message):
    path = tmp_path / "ranks.tiktoken"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.") + ".*" + message.replace(".", r"\.")
                       .replace("(", r"\(").replace("[", r"\[")):
        read_ranks(path)
    with pytest.raises(ValueError, match="cannot read the ranks file"):
        read_ranks(tmp_path / "missing.tiktoken")


def test_tokenizer_arguments_are_checked(ours):
    with pytest.raises(ValueError, match="belongs to an ordinary token"):
        GPT2Tokenizer(ours.ranks, special_tokens={"<x>": 5})
    with pytest.raises(ValueError, match="single bytes have no rank"):
        GPT2Tokenizer({b"a": 0})


def test_chapter_01_trainer_with_gpt2_pre_tokenizer_encodes_as_tiktoken():
    """Train chapter 01's BPE with GPT-2's pre-tokenizer; as ranks, tiktoken and ours encode unseen text alike,
    and so does chapter 01's pair-by-pair encoder on the same chunks."""
    text = load_tiny_shakespeare()
    train, unseen = text[:200_000], text[-60_000:]
    merges = train_bpe(train, 400, split=split_gpt2_chunks)
    ranks = merges_to_ranks(merges)
    assert len(ranks) == 656
    theirs = tiktoken.Encoding("trained", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    ours = GPT2Tokenizer(ranks)
    pair_by_pair = BPETokenizer(merges)
    for sample in (unseen, ADVERSARIAL[0], ADVERSARIAL[5]):
        ids = ours.encode(sample)
        assert ids == theirs.encode_ordinary(sample)
        assert ids == [i for chunk in split_gpt2_chunks(sample) for i in pair_by_pair._encode_chunk(chunk)]
        assert ours.decode(ids) == sample
    # the trainer used the pre-tokenizer it was given: no token runs on past a word into a space,
    # which one does as soon as the text is not split at all
    assert not any(token[:1].isalpha() and token.endswith(b" ") for token in ranks)
    unsplit = merges_to_ranks(train_bpe(train[:3000], 60, split=lambda t: [t]))
    assert any(token[:1].isalpha() and token.endswith(b" ") for token in unsplit)


def test_merges_to_ranks_refuses_two_merges_of_the_same_bytes():
    # (a, b) then (ab, c) and (a, bc) after (b, c): two ways to the bytes "abc"
    a, b, c = ord("a"), ord("b"), ord("c")
    merges = [(a, b), (b, c), (256, c), (a, 257)]
    with pytest.raises(ValueError, match="b'abc'"):
        merges_to_ranks(merges)
