"""utils.tokenizers: round trips, special tokens, the unknown-token rule, files (chapter 01)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data import load_tiny_shakespeare, train_val_split
from utils.tokenizers import (
    FILE_FORMAT,
    SPECIAL_TOKENS,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    split_words,
)


@pytest.fixture(scope="module")
def shakespeare():
    return load_tiny_shakespeare()


# --- CharTokenizer ---------------------------------------------------------------


def test_char_tokenizer_on_tiny_shakespeare(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    assert tok.vocab_size == 65 == len(set(shakespeare))
    ids = tok.encode(shakespeare)
    assert len(ids) == len(shakespeare) and min(ids) == 0 and max(ids) == 64
    assert tok.decode(ids) == shakespeare
    assert tok.tokens == sorted(set(shakespeare))  # ids are the sorted characters, as in chapter 00
    assert tok.encode("\n !") == [0, 1, 2]


def test_char_tokenizer_unknown_character_raises_naming_it_and_its_position():
    tok = CharTokenizer.from_text("hello world")
    with pytest.raises(ValueError, match=r"character 'é' at position 4 .* specials=True"):
        tok.encode("helléo")
    with pytest.raises(AttributeError, match="specials=True"):
        _ = tok.unk_id


def test_char_tokenizer_with_specials_maps_unknowns_to_unk():
    tok = CharTokenizer.from_text("abc", specials=True)
    assert tok.tokens[:4] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.sos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 7
    assert tok.encode("abz") == [4, 5, 3]
    assert tok.encode("ab", add_sos_eos=True) == [1, 4, 5, 2]
    assert tok.decode([1, 4, 5, 3, 2, 0]) == "<SOS>ab<UNK><EOS><PAD>"
    assert tok.decode([1, 4, 5, 2, 0], skip_specials=True) == "ab"
    assert tok.encode("<PAD>") == [3, 3, 3, 3, 3]  # specials are never read out of the text


def test_decode_rejects_ids_out_of_range_and_accepts_tensors():
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(ValueError, match=r"token id 2 at position 1 is not in \[0, 2\)"):
        tok.decode([0, 2])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])
    assert tok.decode(torch.tensor([1, 0])) == "ba"
    with pytest.raises(TypeError, match="encode takes a string"):
        tok.encode([1, 2])
    with pytest.raises(AttributeError, match="no special tokens"):
        tok.encode("a", add_sos_eos=True)


@settings(max_examples=50, deadline=None)
@given(st.text())
def test_char_tokenizer_round_trips_any_text_it_was_built_on(text):
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set(text))


# --- WordTokenizer ---------------------------------------------------------------


def test_split_words_keeps_inner_apostrophes_and_punctuation():
    assert split_words("O'er the hill, good-night!") == ["O'er", "the", "hill", ",", "good", "-", "night", "!"]
    assert split_words("Ein Mann fährt.", lowercase=True) == ["ein", "mann", "fährt", "."]


def test_word_tokenizer_vocabulary_order_specials_and_unknowns():
    tok = WordTokenizer.from_text("the cat saw the dog . the end")
    assert tok.tokens[:4] == list(SPECIAL_TOKENS)
    assert tok.tokens[4:] == ["the", ".", "cat", "dog", "end", "saw"]  # by count, then alphabetically
    assert tok.encode("the bird saw", add_sos_eos=True) == [tok.sos_id, 4, tok.unk_id, 9, tok.eos_id]
    assert tok.decode(tok.encode("the  dog\n.")) == "the dog ."  # spacing is not kept
    assert tok.decode([tok.sos_id, 4, 2], skip_specials=True) == "the"


def test_word_tokenizer_min_count_max_size_and_lowercase():
    text = "a a a b b c The the"
    assert WordTokenizer.from_text(text, min_count=2).tokens[4:] == ["a", "b"]
    assert WordTokenizer.from_text(text, max_size=6).tokens[4:] == ["a", "b"]
    assert WordTokenizer.from_text(text, lowercase=True).tokens[4:] == ["a", "b", "the", "c"]
    assert WordTokenizer.from_text(["A b", "b"], lowercase=True).encode("B a") == [4, 5]
    with pytest.raises(ValueError, match="max_size=4 leaves no room"):
        WordTokenizer.from_text(text, max_size=4)


def test_word_tokenizer_without_specials_raises_on_unknown_words():
    tok = WordTokenizer.from_text("to be or not to be", specials=False)
    assert tok.vocab_size == 4 and tok.encode("be or") == [0, 3]
    with pytest.raises(ValueError, match=r"word 'question' at position 2 .* specials=True"):
        tok.encode("to be question")


def test_word_tokenizer_on_tiny_shakespeare_has_a_large_vocabulary_and_unknowns(shakespeare):
    train, val = train_val_split(shakespeare)
    tok = WordTokenizer.from_text(train)
    assert tok.vocab_size > 10_000  # far more than 65 characters
    ids = tok.encode(val)
    unknown = sum(i == tok.unk_id for i in ids) / len(ids)
    assert 0.01 < unknown < 0.1  # validation words never seen in training


# --- Files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tokenizer",
    [
        CharTokenizer.from_text("hello, wörld 🙂"),
        CharTokenizer.from_text("abc", specials=True),
        WordTokenizer.from_text("the cat . The Cat", lowercase=True),
        WordTokenizer.from_text("a b", specials=False),
    ],
    ids=repr,
)
def test_save_and_load_round_trip(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "tok.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == FILE_FORMAT and data["version"] == 1 and data["type"] == tokenizer.type_name
    loaded = type(tokenizer).load(path)
    assert loaded == tokenizer and type(loaded) is type(tokenizer)
    assert load_tokenizer(path) == tokenizer
    text = "hello cat"
    if tokenizer.specials or all(c in "helo, wörld🙂" for c in text):
        assert loaded.encode(text) == tokenizer.encode(text)


def _write(tmp_path, content) -> str:
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_loading_a_wrong_file_says_what_is_wrong(tmp_path):
    good = json.loads(CharTokenizer.from_text("ab").save(tmp_path / "good.json").read_text())
    cases = [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({**good, "format": "something-else"}, "expected 'llm-from-scratch/tokenizer'"),
        ({k: v for k, v in good.items() if k != "format"}, "its 'format' is None"),
        ({**good, "version": 2}, "version 2; this code reads version 1"),
        ({**good, "type": "sentencepiece"}, "type 'sentencepiece'; expected one of"),
        ({**good, "specials": "yes"}, "'specials' must be true or false"),
        ({k: v for k, v in good.items() if k != "tokens"}, "it has no field 'tokens'"),
        ({**good, "tokens": ["a", "a"]}, r"\['a'\] more than once"),
        ({**good, "tokens": ["ab"]}, "single characters"),
        ({**good, "tokens": "ab"}, "must be a list of strings"),
        ({**good, "specials": True}, "must start with"),
    ]
    for content, message in cases:
        with pytest.raises(ValueError, match=message):
            CharTokenizer.load(_write(tmp_path, content))
    with pytest.raises(ValueError, match="holds a 'char' tokenizer, expected 'word'"):
        WordTokenizer.load(tmp_path / "good.json")
