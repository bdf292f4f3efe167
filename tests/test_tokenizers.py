"""utils.tokenizers: round trips, special tokens, the unknown-token rule, files (chapter 01)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data import load_tiny_shakespeare, train_val_split
from utils.tokenizers import (
    CHUNK_PATTERN,
    FILE_FORMAT,
    SPECIAL_TOKENS,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    merge_pair,
    split_chunks,
    split_words,
    train_bpe,
    train_bpe_naive,
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
    with pytest.raises(TypeError, match=r"token ids are integers; got 'a' \(str\) at position 1"):
        tok.decode([0, "a"])
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


# --- Byte-pair encoding ------------------------------------------------------------

# Emoji (with joiners and skin tones), accents precomposed and combining, other
# scripts, control characters and the empty string.
UNICODE_SAMPLES = [
    "",
    " ",
    "\n\n\t ",
    "naïve café, Ångström, crème brûlée",
    "e\u0301 (e + combining accent)",
    "👩🏽‍💻 🇫🇷 🙂🙂🙂",
    "日本語のテキスト、中文文本",
    "Ελληνικά, русский, עברית, العربية, हिन्दी",
    "\x00\x7f\u200b\ufeff",
    "don't 'tis o'er 123,456 __init__ x_y",
]


@pytest.fixture(scope="module")
def bpe(shakespeare):
    return BPETokenizer.from_text(shakespeare[:200_000], vocab_size=400)


@pytest.fixture(scope="module")
def bpe_specials(shakespeare):
    return BPETokenizer.from_text(shakespeare[:20_000], vocab_size=320, specials=True)


def test_merge_pair_replaces_left_to_right_without_overlaps():
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([5, 5, 5], (5, 5), 9) == [9, 5]
    assert merge_pair([5, 5, 5, 5], (5, 5), 9) == [9, 9]
    assert merge_pair([], (1, 2), 9) == [] and merge_pair([1], (1, 2), 9) == [1]


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_chunks_join_back_to_the_text(text):
    assert "".join(split_chunks(text)) == text


def test_chunks_keep_the_space_with_the_next_word():
    assert split_chunks("Hello  world, it's 2024!\n") == ["Hello", " ", " world", ",", " it", "'s", " 2024", "!", "\n"]


def test_fast_training_gives_exactly_the_naive_merges(shakespeare):
    text = shakespeare[:20_000]
    assert train_bpe(text, 60) == train_bpe_naive(text, 60)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab c\nédé🙂", max_size=60), st.integers(0, 30))
def test_fast_training_equals_naive_on_random_texts(text, n_merges):
    assert train_bpe(text, n_merges) == train_bpe_naive(text, n_merges)


def test_the_first_merge_is_the_most_frequent_pair(shakespeare):
    text = shakespeare[:50_000]
    counts = {}
    for chunk in split_chunks(text):
        data = chunk.encode("utf-8")
        for pair in zip(data, data[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    assert train_bpe(text, 1) == [max(counts, key=counts.get)]


def test_bpe_vocabulary_and_first_merges(bpe):
    assert bpe.vocab_size == 400 and len(bpe.merges) == 144
    assert bpe.token(256) == " t" and bpe.token(ord("a")) == "a"
    for i, (a, b) in enumerate(bpe.merges):  # every merge joins two tokens made before it
        assert bpe.token_bytes[256 + i] == bpe.token_bytes[a] + bpe.token_bytes[b]


def test_bpe_encoding_replays_the_merges_in_training_order(shakespeare, bpe):
    text = shakespeare[-3_000:]  # not in the 200,000 characters it was trained on
    expected = []
    for chunk in split_chunks(text):
        ids = list(chunk.encode("utf-8"))
        for i, pair in enumerate(bpe.merges):  # every merge, in the order learned
            ids = merge_pair(ids, pair, 256 + i)
        expected.extend(ids)
    assert bpe.encode(text) == expected


@pytest.mark.parametrize("text", UNICODE_SAMPLES, ids=range(len(UNICODE_SAMPLES)))
def test_bpe_round_trips_unicode_samples(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text


# Random strings, and strings glued together from the samples above, English and random text.
unicode_texts = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(UNICODE_SAMPLES), st.sampled_from(["the king", " ", "\n"]), st.text(max_size=5)),
             max_size=8).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(unicode_texts)
def test_bpe_round_trips_any_unicode_string(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(unicode_texts)
def test_bpe_with_specials_round_trips_any_unicode_string(bpe_specials, text):
    assert bpe_specials.decode(bpe_specials.encode(text)) == text
    assert bpe_specials.decode(bpe_specials.encode(text, add_sos_eos=True), skip_specials=True) == text


@settings(max_examples=50, deadline=None)
@given(unicode_texts)
def test_bpe_encoding_is_byte_accurate(bpe, text):
    ids = bpe.encode(text)
    assert b"".join(bpe.token_bytes[i] for i in ids) == text.encode("utf-8")
    assert len(ids) <= len(text.encode("utf-8"))


def test_bpe_compresses_shakespeare_and_splitting_a_character_shows_a_replacement(shakespeare, bpe):
    val = shakespeare[-100_000:]
    assert len(val) / len(bpe.encode(val)) > 1.5
    ids = bpe.encode("é")  # two bytes, never merged in Shakespeare
    assert ids == [0xC3, 0xA9] and bpe.decode(ids[:1]) == "\ufffd"


def test_bpe_with_specials_shifts_ids_and_never_uses_unk(shakespeare):
    plain = BPETokenizer.from_text(shakespeare[:20_000], vocab_size=300)
    special = BPETokenizer.from_text(shakespeare[:20_000], vocab_size=304, specials=True)
    assert special.merges == plain.merges and special.vocab_size == 304
    text = "To be, or not to be 🙂"
    assert special.encode(text) == [i + 4 for i in plain.encode(text)]
    assert special.unk_id not in special.encode(text)
    ids = special.encode(text, add_sos_eos=True)
    assert ids[0] == special.sos_id and ids[-1] == special.eos_id
    assert special.decode(ids) == "<SOS>" + text + "<EOS>"
    assert special.decode(ids + [special.pad_id], skip_specials=True) == text
    assert special.token(0) == "<PAD>" and special.token(4 + ord("T")) == "T"


def test_bpe_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size=255 is too small"):
        BPETokenizer.from_text("abc", vocab_size=255)
    with pytest.raises(ValueError, match="vocab_size=259 is too small"):
        BPETokenizer.from_text("abc", vocab_size=259, specials=True)
    assert BPETokenizer.from_text("abab", vocab_size=1000).vocab_size == 258  # ab, then abab: out of pairs
    with pytest.raises(ValueError, match="merge 1 is \\(258, 1\\)"):
        BPETokenizer([(1, 2), (258, 1)])


# --- Files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tokenizer",
    [
        CharTokenizer.from_text("hello, wörld 🙂"),
        CharTokenizer.from_text("abc", specials=True),
        WordTokenizer.from_text("the cat . The Cat", lowercase=True),
        WordTokenizer.from_text("a b", specials=False),
        BPETokenizer.from_text("hello hello world 🙂🙂", vocab_size=270),
        BPETokenizer.from_text("hello hello", vocab_size=262, specials=True),
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


def test_loading_a_wrong_bpe_file_says_what_is_wrong(tmp_path):
    good = json.loads(BPETokenizer.from_text("abab cd", vocab_size=258).save(tmp_path / "good.json").read_text())
    assert good["merges"] == [[97, 98], [32, 99]] and good["chunk_pattern"] == CHUNK_PATTERN
    cases = [
        ({**good, "merges": [[97, 98, 99]]}, "list of \\[id, id\\] pairs"),
        ({**good, "merges": [[97, 256]]}, "merge 0 is \\(97, 256\\)"),
        ({**good, "merges": [["a", "b"]]}, "merge 0"),
        ({**good, "chunk_pattern": "\\S+"}, "chunk pattern"),
        ({k: v for k, v in good.items() if k != "merges"}, "no field 'merges'"),
    ]
    for content, message in cases:
        with pytest.raises(ValueError, match=message):
            BPETokenizer.load(_write(tmp_path, content))
    with pytest.raises(ValueError, match="holds a 'bpe' tokenizer, expected 'char'"):
        CharTokenizer.load(tmp_path / "good.json")


def test_pad_batch_pads_on_the_right_and_marks_padding_by_length():
    from utils.exercises.ch01 import check_pad_batch
    from utils.tokenizers import pad_batch

    ids, mask = pad_batch([[5, 0], [7], []], pad_id=0)
    assert ids.tolist() == [[5, 0], [7, 0], [0, 0]]
    assert mask.tolist() == [[False, False], [False, True], [True, True]]  # the real 0 is not padding
    check_pad_batch(pad_batch)  # the kept version passes chapter 01's checker
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([], pad_id=0)


# --- issue 11: unusual text, wrong arguments, damaged files ---------------------------


def test_bpe_refuses_a_lone_surrogate_naming_its_position_in_the_text(bpe):
    text = "hello world \ud800!"
    with pytest.raises(ValueError, match=r"'\\ud800' at position 12, a lone surrogate"):
        bpe.encode(text)
    with pytest.raises(ValueError, match=r"text 1 holds '\\udfff' at position 2"):
        BPETokenizer.from_text(["fine", "ab\udfff"], vocab_size=260)
    emoji = "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")  # the message's repair
    assert emoji == "😀" and bpe.decode(bpe.encode(f"hello {emoji}")) == f"hello {emoji}"


@pytest.mark.parametrize("bad", [300.5, "300", None, True])
def test_bpe_vocab_size_must_be_an_integer(bad):
    with pytest.raises(ValueError, match=f"vocab_size must be an integer, got {bad!r}"):
        BPETokenizer.from_text("abc abc", vocab_size=bad)
    with pytest.raises(ValueError, match="n_merges must be an integer"):
        train_bpe("abc abc", bad)
    with pytest.raises(ValueError, match="min_count must be an integer"):
        WordTokenizer.from_text("a b", min_count=bad)


@pytest.mark.parametrize("specials", [False, True])
def test_bpe_token_of_an_id_outside_the_vocabulary_raises(specials):
    tok = BPETokenizer.from_text("hello hello", vocab_size=262 + 4 * specials, specials=specials)
    assert tok.token(tok.vocab_size - 1) == tok.decode([tok.vocab_size - 1])
    for bad in (-1, -tok.vocab_size, tok.vocab_size):
        with pytest.raises(ValueError, match=rf"token id {bad} is not in \[0, {tok.vocab_size}\)"):
            tok.token(bad)
    with pytest.raises(ValueError, match="token id must be an integer"):
        tok.token(1.0)


def test_a_tokenizer_that_cannot_be_saved_is_refused_and_the_old_file_survives(tmp_path):
    path = CharTokenizer.from_text("good").save(tmp_path / "tok.json")
    before = path.read_bytes()
    forged = CharTokenizer.from_text("ab")
    forged.tokens.append("\ud800")  # from_text refuses a lone surrogate now; save checks all the same
    with pytest.raises(ValueError, match=r"token 2 of this CharTokenizer holds '\\ud800'"):
        forged.save(path)
    assert path.read_bytes() == before and CharTokenizer.load(path) == CharTokenizer.from_text("good")
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left behind


def test_saving_is_atomic_when_the_write_fails_midway(tmp_path, monkeypatch):
    import os

    path = CharTokenizer.from_text("good").save(tmp_path / "tok.json")
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        WordTokenizer.from_text("a much longer vocabulary " * 50).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


def test_loading_a_file_that_is_not_utf8_or_has_odd_field_types_names_the_file(tmp_path):
    good = CharTokenizer.from_text("hé").save(tmp_path / "good.json").read_bytes()
    bad = tmp_path / "bad.json"
    for content, message in [
        (good.replace("é".encode(), b"\xe9"), "not UTF-8 text"),  # Latin-1, not UTF-8
        (good[: good.index("é".encode()) + 1], "not UTF-8 text"),  # cut in the middle of é
        (b"\xff\xfe" + good, "not UTF-8 text"),
        (b"[" * 100_000, "nested too deeply|not valid JSON"),
    ]:
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"{bad}.*({message})"):
            load_tokenizer(bad)
    data = json.loads(good)
    for field in ("type", "format", "version", "specials", "tokens"):
        for value in ([data[field]], {"a": 1}, None, 1.5, [[]]):
            bad.write_text(json.dumps({**data, field: value}), encoding="utf-8")
            with pytest.raises(ValueError, match=str(bad)):
                load_tokenizer(bad)
    bpe = json.loads(BPETokenizer.from_text("abab", vocab_size=257).save(tmp_path / "bpe.json").read_text())
    for merges in ([[True, False]], [[97.0, 98.0]], [None], {"0": [97, 98]}, [[97, [98]]]):
        bad.write_text(json.dumps({**bpe, "merges": merges}), encoding="utf-8")
        with pytest.raises(ValueError, match=str(bad)):
            load_tokenizer(bad)


@pytest.mark.parametrize(
    "tokenizer",
    [CharTokenizer.from_text("hé🙂", specials=True), WordTokenizer.from_text("o'er the lea"),
     BPETokenizer.from_text("hé hé 🙂", vocab_size=258)],
    ids=repr,
)
def test_every_truncation_of_a_file_loads_or_gives_the_documented_error(tokenizer, tmp_path):
    good = tokenizer.save(tmp_path / "good.json").read_bytes()
    bad = tmp_path / "bad.json"
    for end in range(len(good)):
        bad.write_bytes(good[:end])
        try:
            loaded = load_tokenizer(bad)
        except ValueError as error:
            assert str(bad) in str(error)
        else:
            assert loaded == tokenizer  # only the final newline was cut


def test_bpe_refuses_a_repeated_merge_and_pad_batch_a_pad_id_that_is_not_an_integer(tmp_path):
    with pytest.raises(ValueError, match=r"merge 1 repeats merge 0, \(97, 98\)"):
        BPETokenizer([(97, 98), (97, 98)])  # the second would never be used: encoding would skip id 257
    path = BPETokenizer([(97, 98)]).save(tmp_path / "tok.json")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "merges": [[97, 98], [97, 98]]}))
    with pytest.raises(ValueError, match=f"{path}.*repeats merge 0"):
        load_tokenizer(path)
    from utils.tokenizers import pad_batch

    with pytest.raises(ValueError, match="pad_id must be an integer, got 0.5"):
        pad_batch([[1, 2], [3]], pad_id=0.5)  # torch would silently make it 0


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"the folder .*missing does not exist"):
        CharTokenizer.from_text("ab").save(tmp_path / "missing" / "tok.json")


def test_decode_refuses_booleans_as_token_ids():  # a mask passed by mistake would decode as ids 0 and 1
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(TypeError, match=r"got True \(bool\) at position 0"):
        tok.decode([True, False])
    with pytest.raises(TypeError, match="bool"):
        tok.decode(torch.tensor([True, False]))


def test_decode_takes_numpy_integers_and_0_d_tensors_in_a_list():
    import numpy as np

    tok = CharTokenizer.from_text("ab")
    assert tok.decode([np.int64(0), torch.tensor(1), 1]) == "abb"  # was "token ids are integers; got 0 (int64)"
    with pytest.raises(TypeError, match=r"got tensor\(1.5000\)"):
        tok.decode([torch.tensor(1.5)])


@pytest.mark.parametrize("build", [lambda: WordTokenizer.from_text("ab \ud800"), lambda: WordTokenizer(["ok", "\ud800"])])
def test_a_word_tokenizer_with_a_lone_surrogate_is_refused_when_built(build):
    with pytest.raises(ValueError, match=r"'\\ud800' at position 0, a lone surrogate"):
        build()  # before: built, encoded, and only save() refused it


@pytest.mark.parametrize("words", [["ok", ""], ["ok", 3]])
def test_a_word_tokenizer_holds_non_empty_strings(words):
    with pytest.raises(ValueError, match="holds non-empty strings"):
        WordTokenizer(words)
