"""Tokenizers: text ↔ lists of token ids (chapter 01).

Three tokenizers, all with the same small interface (``vocab_size``, ``encode``,
``decode``, ``save``, ``load``):

* :class:`CharTokenizer`: one token per character (Tiny Shakespeare has 65);
* :class:`WordTokenizer`: one token per word or punctuation mark;
* :class:`BPETokenizer`: byte-pair encoding over UTF-8 bytes (Sennrich et al., 2016;
  GPT-2's byte-level variant, Radford et al., 2019).

Chapter 16 adds GPT-2's own tokenizer at the end of this module: :func:`gpt2_tokenizer`,
a :class:`GPT2Tokenizer` (``encode``/``decode``, no JSON file: its vocabulary is
tiktoken's ``r50k_base`` ranks file) with GPT-2's pre-tokenizer and ``<|endoftext|>``.

**Special tokens.** Built with ``specials=True``, a tokenizer gives ids 0..3 to
``SPECIAL_TOKENS = ("<PAD>", "<SOS>", "<EOS>", "<UNK>")`` (padding, start and end of
sequence, unknown) and has ``pad_id``, ``sos_id``, ``eos_id``, ``unk_id``. ``encode``
never reads special tokens out of the text (the text ``"<PAD>"`` is five ordinary
characters); add them by id, or with ``encode(text, add_sos_eos=True)``.

**The unknown-token rule** (one rule for every tokenizer): a character (or word)
that is not in the vocabulary maps to ``<UNK>`` when the tokenizer has specials,
and raises a ``ValueError`` naming it and its position when it has none.
:class:`BPETokenizer` never meets an unknown: every text is a sequence of UTF-8
bytes, and all 256 bytes are in its vocabulary. (A Python string may hold a lone
*surrogate*, half of a UTF-16 pair such as ``"\\ud800"``, which is no character and
has no UTF-8 bytes; BPE refuses it with a ``ValueError`` naming its position.)

**Files.** ``save(path)`` writes a small JSON file with ``"format":
"llm-from-scratch/tokenizer"``, ``"version": 1`` and ``"type"``; ``load(path)``
checks all three and every field, raising a ``ValueError`` that names the file,
says what is wrong and what was expected. :func:`load_tokenizer` loads any of the
three. Saving is atomic: the file is written under a temporary name and renamed
into place, so a failed save never leaves a damaged file or destroys the old one.
"""

from __future__ import annotations

import heapq
import json
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from utils.checks import check_int
from utils.data import write_atomically

SPECIAL_TOKENS = ("<PAD>", "<SOS>", "<EOS>", "<UNK>")
FILE_FORMAT = "llm-from-scratch/tokenizer"
FILE_VERSION = 1


def _utf8(text: str, what: str = "the text") -> bytes:
    """``text`` as UTF-8 bytes, or a ValueError naming the position of a lone surrogate."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{what} holds {text[error.start]!r} at position {error.start}, a lone surrogate (half of a "
            "UTF-16 pair), which is not a character and has no UTF-8 bytes; remove it (surrogate pairs join "
            "into characters with text.encode('utf-16', 'surrogatepass').decode('utf-16'))"
        ) from None


def _as_texts(text: str | Iterable[str]) -> list[str]:
    """Training data is one string or an iterable of strings (e.g. sentences)."""
    if isinstance(text, str):
        return [text]
    texts = list(text)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"expected a string or an iterable of strings; item {i} is a {type(t).__name__}")
    return texts


class Tokenizer:
    """What every tokenizer shares: special tokens, id checks and the JSON file format."""

    type_name = "tokenizer"  # the "type" written to the JSON file; set by each subclass

    def __init__(self, specials: bool):
        self.specials = bool(specials)
        self.n_specials = len(SPECIAL_TOKENS) if self.specials else 0

    # --- special tokens ---------------------------------------------------------
    def _special_id(self, token: str) -> int:
        if not self.specials:
            raise AttributeError(
                f"this {type(self).__name__} has no special tokens; build it with specials=True to get {token}"
            )
        return SPECIAL_TOKENS.index(token)

    @property
    def pad_id(self) -> int:
        return self._special_id("<PAD>")

    @property
    def sos_id(self) -> int:
        return self._special_id("<SOS>")

    @property
    def eos_id(self) -> int:
        return self._special_id("<EOS>")

    @property
    def unk_id(self) -> int:
        return self._special_id("<UNK>")

    # --- the interface each tokenizer fills in ----------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode(self, ids: list[int], skip_specials: bool) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------
    def encode(self, text: str, *, add_sos_eos: bool = False) -> list[int]:
        """The token ids of ``text``; with ``add_sos_eos``, wrapped in <SOS> ... <EOS>."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a string, got {type(text).__name__}")
        ids = self._encode(text)
        if add_sos_eos:
            ids = [self.sos_id, *ids, self.eos_id]
        return ids

    def decode(self, ids: Iterable[int], *, skip_specials: bool = False) -> str:
        """The text of token ids; special tokens print as ``<PAD>`` etc. unless ``skip_specials``."""
        if hasattr(ids, "tolist"):  # a tensor or an array of ids
            ids = ids.tolist()
        ids = list(ids)
        if not all(type(i) is int for i in ids):  # rare: NumPy integers, 0-d tensors, or a mistake
            ids = [_token_id(i, position) for position, i in enumerate(ids)]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            position, i = next((p, i) for p, i in enumerate(ids) if not 0 <= i < self.vocab_size)
            raise ValueError(
                f"token id {i} at position {position} is not in [0, {self.vocab_size}), "
                f"the ids of this {type(self).__name__}"
            )
        return self._decode(ids, skip_specials)

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, specials={self.specials})"

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer to a small JSON file, atomically; returns the path.

        A vocabulary that cannot be written as UTF-8 (a lone surrogate) is refused
        with a ValueError before anything is written.
        """
        path = Path(path)
        data = {"format": FILE_FORMAT, "version": FILE_VERSION, "type": self.type_name, **self.to_dict()}
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        for i, token in enumerate(getattr(self, "tokens", ())):
            _utf8(token, f"token {i} of this {type(self).__name__}")  # names the token that cannot be saved
        return write_atomically(path, _utf8(text, f"the file for {path}"))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer written by ``save``; a wrong or damaged file raises a ValueError."""
        data = _read_tokenizer_file(path)
        if cls is not Tokenizer and data["type"] != cls.type_name:
            raise ValueError(
                f"{path} holds a {data['type']!r} tokenizer, expected {cls.type_name!r}; "
                f"use {_TYPES[data['type']].__name__}.load or load_tokenizer"
            )
        try:
            return _TYPES[data["type"]].from_dict(data)
        except KeyError as error:
            raise ValueError(f"{path} is not a valid {data['type']!r} tokenizer file: it has no field {error}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a valid {data['type']!r} tokenizer file: {error}") from None

    # --- helpers for subclasses ---------------------------------------------------
    def _unknown(self, what: str, item: str, position: int, known: int) -> int:
        """The unknown-token rule: <UNK> with specials, else a ValueError naming the item."""
        if self.specials:
            return self.unk_id
        raise ValueError(
            f"{what} {item!r} at position {position} is not in the vocabulary of {known} {what}s; "
            f"build the tokenizer with specials=True to map unseen {what}s to <UNK>"
        )

    def _check_tokens(self, tokens, what: str) -> list[str]:
        """Validate a loaded token list: strings, no duplicates, specials first when expected."""
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"'tokens' must be a list of strings, got {type(tokens).__name__}")
        if len(set(tokens)) != len(tokens):
            duplicates = sorted(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"'tokens' lists {duplicates[:5]} more than once")
        if self.specials and tuple(tokens[: self.n_specials]) != SPECIAL_TOKENS:
            raise ValueError(f"with specials, 'tokens' must start with {list(SPECIAL_TOKENS)}, got {tokens[:4]}")
        return tokens


def _read_tokenizer_file(path: str | Path) -> dict:
    """Parse a tokenizer file and check its header: format, version and type."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not a tokenizer file: it is not UTF-8 text (byte {error.start} is "
            f"{error.object[error.start:error.start + 1]!r}: {error.reason}); was it cut short or overwritten?"
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a tokenizer file: it is not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError(f"{path} is not a tokenizer file: its JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a tokenizer file: expected a JSON object, got a {type(data).__name__}")
    if data.get("format") != FILE_FORMAT:
        raise ValueError(f"{path} is not a tokenizer file: its 'format' is {data.get('format')!r}, expected {FILE_FORMAT!r}")
    if data.get("version") != FILE_VERSION:
        raise ValueError(
            f"{path} is a tokenizer file of version {data.get('version')!r}; this code reads version {FILE_VERSION}"
        )
    if not isinstance(data.get("type"), str) or data["type"] not in _TYPES:
        raise ValueError(f"{path} has tokenizer type {data.get('type')!r}; expected one of {sorted(_TYPES)}")
    if not isinstance(data.get("specials"), bool):
        raise ValueError(f"{path}: 'specials' must be true or false, got {data.get('specials')!r}")
    return data


def _token_id(i, position: int) -> int:
    """One token id as an int: Python and NumPy integers and 0-d integer tensors; never a bool."""
    try:
        if isinstance(i, bool):
            raise TypeError  # True would silently be id 1
        return operator.index(i)
    except TypeError:
        raise TypeError(f"token ids are integers; got {i!r} ({type(i).__name__}) at position {position}") from None


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load any tokenizer saved with ``save``, whatever its type."""
    return Tokenizer.load(path)


def pad_batch(sequences: list[list[int]], pad_id: int, device=None):
    """Id lists of different lengths → ``(ids, padding_mask)``, both (B, T_max), padded on the right.

    ``padding_mask`` is True at padding positions (the convention of chapter 05's
    ``key_padding_mask``). It is made from the lengths, not by comparing with
    ``pad_id``, so a real token that happens to share the id is never mistaken for
    padding. Chapter 01's exercise 1.3 builds this; later chapters import it.
    """
    import torch

    if not sequences:
        raise ValueError("pad_batch needs at least one sequence")
    pad_id = check_int("pad_id", pad_id)
    T_max = max(len(s) for s in sequences)
    ids = torch.tensor([list(s) + [pad_id] * (T_max - len(s)) for s in sequences], dtype=torch.long, device=device)
    lengths = torch.tensor([len(s) for s in sequences], device=device)
    padding_mask = torch.arange(T_max, device=device)[None, :] >= lengths[:, None]  # (B, T_max)
    return ids, padding_mask


class CharTokenizer(Tokenizer):
    """One token per character; the vocabulary is the sorted set of characters seen.

    Unknown characters: with ``specials=True`` they become ``<UNK>`` (id 3); without,
    ``encode`` raises a ValueError naming the character and its position.
    """

    type_name = "char"

    def __init__(self, characters: Iterable[str], specials: bool = False):
        super().__init__(specials)
        characters = list(characters)
        for c in characters:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"a CharTokenizer's vocabulary holds single characters, got {c!r}")
            _utf8(c, "the vocabulary of this CharTokenizer")  # a lone surrogate could never be saved
        if len(set(characters)) != len(characters):
            raise ValueError("the characters of a CharTokenizer must be distinct")
        self.tokens = [*SPECIAL_TOKENS[: self.n_specials], *characters]  # id -> token
        self.token_to_id = {c: i for i, c in enumerate(self.tokens) if i >= self.n_specials}

    @classmethod
    def from_text(cls, text: str | Iterable[str], specials: bool = False) -> CharTokenizer:
        """Vocabulary = the distinct characters of ``text``, in sorted order.

        A lone surrogate (``"\\ud800"``, half of a UTF-16 pair) is refused here, with its
        position in the text: it is no character, and the tokenizer could not be saved.
        """
        texts = _as_texts(text)
        for i, piece in enumerate(texts):
            try:
                piece.encode("utf-8")
            except UnicodeEncodeError:
                _utf8(piece, "the text" if len(texts) == 1 else f"text {i}")  # raises, naming the position
        return cls(sorted(set().union(*map(set, texts))), specials=specials)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _encode(self, text: str) -> list[int]:
        lookup = self.token_to_id
        try:
            return [lookup[c] for c in text]
        except KeyError:  # rare: find each unknown character and apply the rule
            n_chars = self.vocab_size - self.n_specials
            return [lookup[c] if c in lookup else self._unknown("character", c, i, n_chars) for i, c in enumerate(text)]

    def _decode(self, ids: list[int], skip_specials: bool) -> str:
        return "".join(self.tokens[i] for i in ids if not (skip_specials and i < self.n_specials))

    def to_dict(self) -> dict:
        return {"specials": self.specials, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        specials = data["specials"]
        tokens = Tokenizer(specials)._check_tokens(data["tokens"], "character")
        return cls(tokens[len(SPECIAL_TOKENS) if specials else 0 :], specials=specials)


# Words (letters, digits and inner apostrophes, as in "o'er") or single punctuation marks.
WORD_PATTERN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def split_words(text: str, lowercase: bool = False) -> list[str]:
    """The words and punctuation marks of ``text``, whitespace dropped."""
    return WORD_PATTERN.findall(text.lower() if lowercase else text)


class WordTokenizer(Tokenizer):
    """One token per word or punctuation mark (whitespace is dropped).

    The vocabulary keeps words seen at least ``min_count`` times, the most frequent
    first (ties in alphabetical order), at most ``max_size`` tokens including the
    specials. ``decode`` joins tokens with single spaces: a word tokenizer forgets
    the original spacing. Unknown words: ``<UNK>`` with specials (the default),
    else a ValueError naming the word and its position (counted in words).
    """

    type_name = "word"

    def __init__(self, words: Iterable[str], specials: bool = True, lowercase: bool = False):
        super().__init__(specials)
        words = list(words)
        for w in words:
            if not isinstance(w, str) or not w:
                raise ValueError(f"a WordTokenizer's vocabulary holds non-empty strings, got {w!r}")
            _utf8(w, "the vocabulary of this WordTokenizer")  # a lone surrogate could never be saved
        if len(set(words)) != len(words):
            raise ValueError("the words of a WordTokenizer must be distinct")
        self.lowercase = bool(lowercase)
        self.tokens = [*SPECIAL_TOKENS[: self.n_specials], *words]  # id -> token
        self.token_to_id = {w: i for i, w in enumerate(self.tokens) if i >= self.n_specials}

    @classmethod
    def from_text(
        cls,
        text: str | Iterable[str],
        specials: bool = True,
        *,
        lowercase: bool = False,
        min_count: int = 1,
        max_size: int | None = None,
    ) -> WordTokenizer:
        min_count = check_int("min_count", min_count)
        if max_size is not None:
            max_size = check_int("max_size", max_size)
        counts = Counter(w for t in _as_texts(text) for w in split_words(t, lowercase))
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            n_specials = len(SPECIAL_TOKENS) if specials else 0
            if max_size <= n_specials:
                raise ValueError(f"max_size={max_size} leaves no room for words after {n_specials} special tokens")
            words = words[: max_size - n_specials]
        return cls(words, specials=specials, lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """The words this tokenizer sees in ``text`` (lowercased if it lowercases)."""
        return split_words(text, self.lowercase)

    def _encode(self, text: str) -> list[int]:
        lookup, n_words = self.token_to_id, self.vocab_size - self.n_specials
        return [
            lookup[w] if w in lookup else self._unknown("word", w, i, n_words) for i, w in enumerate(self.split(text))
        ]

    def _decode(self, ids: list[int], skip_specials: bool) -> str:
        return " ".join(self.tokens[i] for i in ids if not (skip_specials and i < self.n_specials))

    def to_dict(self) -> dict:
        return {"specials": self.specials, "lowercase": self.lowercase, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: dict) -> WordTokenizer:
        specials = data["specials"]
        tokens = Tokenizer(specials)._check_tokens(data["tokens"], "word")
        if not isinstance(data["lowercase"], bool):
            raise ValueError(f"'lowercase' must be true or false, got {data['lowercase']!r}")
        return cls(tokens[len(SPECIAL_TOKENS) if specials else 0 :], specials=specials, lowercase=data["lowercase"])


# --- Byte-pair encoding -------------------------------------------------------------
#
# Text is first split into chunks that merges never cross, in the manner of GPT-2
# (this pattern is our own, for Python's `re`): an English contraction, a run of
# letters or of digits or of other symbols with at most one leading space, or a run
# of whitespace (its last space is left to the word that follows it).
CHUNK_PATTERN = r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+"
_CHUNKS = re.compile(CHUNK_PATTERN)


def split_chunks(text: str) -> list[str]:
    """The pre-split chunks of ``text``; they join back to exactly ``text``."""
    return _CHUNKS.findall(text)


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``."""
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def _chunk_table(text: str | Iterable[str], split=split_chunks) -> tuple[list[list[int]], list[int]]:
    """Each distinct chunk (cut by ``split``) as a list of byte values, and how often it occurs."""
    texts = _as_texts(text)
    counts = Counter(chunk for t in texts for chunk in split(t))
    try:
        return [list(chunk.encode("utf-8")) for chunk in counts], list(counts.values())
    except UnicodeEncodeError:  # rare: find the text and the position of the lone surrogate
        for i, t in enumerate(texts):
            _utf8(t, "the text" if len(texts) == 1 else f"text {i}")
        raise


def train_bpe_naive(text: str | Iterable[str], n_merges: int) -> list[tuple[int, int]]:
    """BPE training, the slow and obvious way: recount every pair before every merge.

    The most frequent pair of adjacent ids (ties: the smallest pair) becomes id
    256, 257, ... in turn. Kept as the reference the fast :func:`train_bpe` is tested against.
    """
    n_merges = check_int("n_merges", n_merges, minimum=0)
    words, counts = _chunk_table(text)
    merges = []
    for new_id in range(256, 256 + n_merges):
        pair_counts = Counter()
        for word, n in zip(words, counts):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += n
        if not pair_counts:
            break  # every chunk is a single token: nothing left to merge
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        words = [merge_pair(word, best, new_id) for word in words]
    return merges


def train_bpe(text: str | Iterable[str], n_merges: int, *, split=split_chunks) -> list[tuple[int, int]]:
    """BPE training, fast: the same merges as :func:`train_bpe_naive`, in a fraction of the time.

    ``split`` is the pre-tokenizer, a function text -> chunks (chapter 16 trains with
    GPT-2's, :func:`split_gpt2_chunks`). Three ideas: train over *distinct* chunks weighted by their counts; keep the pair
    counts and an index pair -> chunks containing it, and after a merge update only
    the chunks that contained the merged pair; find the most frequent pair with a
    heap whose out-of-date entries are skipped when popped.
    """
    n_merges = check_int("n_merges", n_merges, minimum=0)
    words, counts = _chunk_table(text, split)
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of chunks that hold it
    for w, (word, n) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += n
            where[pair].add(w)
    heap = [(-n, pair) for pair, n in pair_counts.items()]  # most frequent first, ties: smallest pair
    heapq.heapify(heap)

    merges = []
    for new_id in range(256, 256 + n_merges):
        while heap:
            negative_count, best = heapq.heappop(heap)
            if pair_counts.get(best, 0) == -negative_count:
                break  # an up-to-date entry
        else:
            break  # nothing left to merge
        merges.append(best)
        changed = set()
        for w in where.pop(best):
            word, n = words[w], counts[w]
            merged = merge_pair(word, best, new_id)
            if len(merged) == len(word):
                continue  # an out-of-date index entry: this chunk no longer holds the pair
            for pair in zip(word, word[1:]):  # take the chunk's old pairs out ...
                pair_counts[pair] -= n
                changed.add(pair)
            for pair in zip(merged, merged[1:]):  # ... and put its new pairs in
                pair_counts[pair] += n
                changed.add(pair)
                where[pair].add(w)
            words[w] = merged
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
            else:
                del pair_counts[pair]
    return merges


class BPETokenizer(Tokenizer):
    """Byte-pair encoding over UTF-8 bytes (Sennrich et al., 2016; GPT-2's byte-level BPE).

    Ids 0..255 are the 256 byte values and merge ``i`` makes id ``256 + i`` (all shifted
    up by 4 when built with specials, which then take ids 0..3). Any text encodes,
    so there is never an unknown token, and ``decode(encode(s)) == s`` for every ``s``
    that is valid Unicode text; a string holding a lone surrogate (``"\\ud800"``, half
    of a UTF-16 pair and no character) has no UTF-8 bytes and raises a ValueError
    naming its position. Decoding ids that split a character's bytes shows U+FFFD (�)
    for them.
    """

    type_name = "bpe"

    def __init__(self, merges: Iterable[tuple[int, int]], specials: bool = False):
        super().__init__(specials)
        self.merges = [tuple(pair) for pair in merges]  # merge i makes byte-level id 256 + i
        self.ranks: dict[tuple[int, int], int] = {}  # pair -> the merge that joins it
        self.token_bytes = [bytes([b]) for b in range(256)]  # byte-level id -> the bytes it stands for
        for i, (a, b) in enumerate(self.merges):
            if not (type(a) is int and type(b) is int and 0 <= a < 256 + i and 0 <= b < 256 + i):
                raise ValueError(f"merge {i} is {(a, b)}, but it may only join ids 0..{256 + i - 1} made before it")
            if (a, b) in self.ranks:
                raise ValueError(f"merge {i} repeats merge {self.ranks[(a, b)]}, {(a, b)}: each pair is merged once")
            self.ranks[(a, b)] = i
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_text(cls, text: str | Iterable[str], vocab_size: int = 512, specials: bool = False) -> BPETokenizer:
        """Train on ``text`` until the vocabulary (256 bytes, merges, specials) has ``vocab_size`` tokens.

        A tiny text may run out of pairs to merge first; the vocabulary is then smaller.
        """
        vocab_size = check_int("vocab_size", vocab_size)
        n_merges = vocab_size - 256 - (len(SPECIAL_TOKENS) if specials else 0)
        if n_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} is too small: the 256 bytes{' and 4 specials' * specials} need more")
        return cls(train_bpe(text, n_merges), specials=specials)

    @property
    def vocab_size(self) -> int:
        return self.n_specials + len(self.token_bytes)

    def token(self, i: int) -> str:
        """What token ``i`` stands for, as text (bytes that are not whole characters show as �)."""
        if check_int("token id", i) < 0 or i >= self.vocab_size:
            raise ValueError(f"token id {i} is not in [0, {self.vocab_size}), the ids of this {type(self).__name__}")
        if i < self.n_specials:
            return SPECIAL_TOKENS[i]
        return self.token_bytes[i - self.n_specials].decode("utf-8", errors="replace")

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Apply the merges to one chunk's bytes, lowest rank (earliest learned) first."""
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break  # no pair of this chunk was ever merged
            ids = merge_pair(ids, pair, 256 + self.ranks[pair])
        return ids

    def _encode(self, text: str) -> list[int]:
        ids = []
        try:
            for chunk in split_chunks(text):
                if chunk not in self._cache:  # the same few thousand chunks come again and again
                    self._cache[chunk] = [i + self.n_specials for i in self._encode_chunk(chunk)]
                ids.extend(self._cache[chunk])
        except UnicodeEncodeError:  # a lone surrogate: name its position in the text, not in the chunk
            _utf8(text)
            raise
        return ids

    def _decode(self, ids: list[int], skip_specials: bool) -> str:
        n, token_bytes = self.n_specials, self.token_bytes
        specials = [b""] * n if skip_specials else [t.encode("utf-8") for t in SPECIAL_TOKENS[:n]]
        pieces = [token_bytes[i - n] if i >= n else specials[i] for i in ids]
        return b"".join(pieces).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"specials": self.specials, "chunk_pattern": CHUNK_PATTERN, "merges": [list(p) for p in self.merges]}

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        if data["chunk_pattern"] != CHUNK_PATTERN:
            raise ValueError(f"its chunk pattern {data['chunk_pattern']!r} is not this code's {CHUNK_PATTERN!r}")
        merges = data["merges"]
        if not isinstance(merges, list) or not all(isinstance(m, list) and len(m) == 2 for m in merges):
            raise ValueError("'merges' must be a list of [id, id] pairs")
        return cls(merges, specials=data["specials"])


_TYPES: dict[str, type[Tokenizer]] = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BPETokenizer}


def benchmark(vocab_size: int = 512) -> list[tuple[str, float]]:
    """Time BPE on all of Tiny Shakespeare: ``python -m utils.tokenizers --benchmark``.

    Run it on one core (``taskset -c 0 python -m utils.tokenizers --benchmark``); the
    naive trainer alone takes about half a minute.
    """
    import time

    from utils.data import load_tiny_shakespeare

    text = load_tiny_shakespeare()
    n_merges = vocab_size - 256
    times = []

    def timed(label, function):
        start = time.perf_counter()
        result = function()
        times.append((label, time.perf_counter() - start))
        return result

    naive = timed(f"naive training, {n_merges} merges", lambda: train_bpe_naive(text, n_merges))
    tokenizer = timed(f"fast training, vocab_size={vocab_size}", lambda: BPETokenizer.from_text(text, vocab_size))
    ids = timed("encoding the whole text (empty cache)", lambda: tokenizer.encode(text))
    decoded = timed("decoding the whole text", lambda: tokenizer.decode(ids))
    if naive != tokenizer.merges or decoded != text:
        raise AssertionError("the fast trainer must give the naive merges, and decode(encode(text)) the text")
    times.append((f"({len(text):,} characters -> {len(ids):,} tokens, {len(text) / len(ids):.3f} characters/token)", 0.0))
    return times


# --- GPT-2's tokenizer (chapter 16) ----------------------------------------------------
#
# GPT-2 (Radford et al., 2019) is a byte-level BPE like BPETokenizer, with three
# differences chapter 16 takes in turn:
# * its pre-tokenizer, GPT2_PATTERN, names Unicode classes (\p{L} letters, \p{N}
#   numbers), which Python's `re` lacks: it needs the `regex` package;
# * its vocabulary file (tiktoken's format, "base64-of-the-bytes rank" per line)
#   stores each token's bytes and rank, not the pair that made it: a merge is found
#   by joining two neighbours' bytes and looking the result up;
# * one special token, <|endoftext|> (id 50256), which separates documents.
# Ranks 0..255 are the 256 single bytes in the order of GPT-2's byte-to-unicode
# table (bytes_to_unicode), which gives every byte a printable stand-in ("Ġ" for a
# space) so that a token can be shown, or stored in a JSON vocabulary, as text.

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256
GPT2_RANKS_FILE = "gpt2/r50k_base.tiktoken"  # a name in utils.data.DATASETS


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: each byte value → one printable character, in GPT-2's order.

    The 188 bytes that print as themselves ("!".."~", "¡".."¬", "®".."ÿ") come first
    and keep their character; the other 68 (control bytes, space, ...) follow in
    byte order and get ``chr(256 + n)``: space (32) is "Ġ", newline (10) is "Ċ".
    The dictionary's order is the order of ranks 0..255 in GPT-2's vocabulary.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def _gpt2_regex(pattern: str = GPT2_PATTERN):
    import regex  # the `regex` package: Python's `re` has no \p{L}

    return regex.compile(pattern)


def split_gpt2_chunks(text: str) -> list[str]:
    """GPT-2's pre-tokenizer: the chunks of ``text`` that merges never cross; they join back to ``text``."""
    return _gpt2_regex().findall(text)


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """A tiktoken ranks file (``base64-of-the-bytes rank`` per line) → {token bytes: rank}.

    The ranks must be 0, 1, ..., n - 1, each once, and the 256 single bytes must be
    among the tokens (then every text can be encoded); anything else is a ValueError
    naming the file and the line.
    """
    import base64
    import binascii

    ranks: dict[bytes, int] = {}
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as error:
        raise ValueError(f"cannot read the ranks file {path}: {error.strerror or error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError(f"expected 'base64 rank', got {len(fields)} field(s)")
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
        except (ValueError, binascii.Error) as error:
            raise ValueError(f"{path}, line {number}: not a tiktoken ranks line ({error}): {line[:60]!r}") from None
        if token in ranks:
            raise ValueError(f"{path}, line {number}: the token {token!r} already has rank {ranks[token]}")
        ranks[token] = rank
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{path}: the ranks of its {len(ranks):,} tokens are not 0..{len(ranks) - 1}, each once")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(f"{path}: {len(missing)} single bytes have no rank (the first: {missing[0]}); "
                         "a byte-level vocabulary needs all 256")
    return ranks


def merges_to_ranks(merges: Iterable[tuple[int, int]]) -> dict[bytes, int]:
    """Chapter 01's merges (byte ids 0..255, merge i makes id 256 + i) as tiktoken ranks {bytes: id}."""
    token_bytes = BPETokenizer(merges).token_bytes
    ranks = {token: i for i, token in enumerate(token_bytes)}
    if len(ranks) != len(token_bytes):
        token = next(t for t in token_bytes if token_bytes.count(t) > 1)
        raise ValueError(f"two merges make the same bytes {token!r}; a ranks file can hold one of them only")
    return ranks


class GPT2Tokenizer:
    """Byte-level BPE over a ranks file, as GPT-2 encodes (chapter 16): ``encode(str) -> list[int]``, ``decode``.

    ``ranks`` maps each token's bytes to its rank, which is also its id (tiktoken's
    format; :func:`read_ranks`); ``pattern`` is the pre-tokenizer; ``special_tokens``
    maps texts such as ``"<|endoftext|>"`` to ids after the ranks.

    Encoding a chunk starts from its single bytes and, again and again, joins the
    neighbouring pair whose joined bytes have the lowest rank (the leftmost, on a tie),
    until no joined pair is a token. A chunk that is itself a token is one id at once,
    and every chunk's ids are kept in a cache: Tiny Shakespeare's 297,833 chunks are
    15,057 distinct ones, so the merging runs 15,057 times.

    ``encode`` never reads special tokens out of the text (as chapter 01's
    tokenizers; the text "<|endoftext|>" is ordinary characters, tiktoken's
    ``encode_ordinary``), unless ``allowed_special=True`` (tiktoken's
    ``encode(text, allowed_special="all")``). ``decode(encode(s)) == s`` for every
    string ``s`` of Unicode characters; a lone surrogate (``"\\ud800"``) has no
    UTF-8 bytes and raises a ValueError naming its position (tiktoken replaces it by
    U+FFFD). Decoding ids that split a character's bytes shows U+FFFD (�) for them.
    """

    CACHE_SIZE = 100_000  # distinct chunks kept; the cache starts afresh when full

    def __init__(self, ranks: dict[bytes, int], pattern: str = GPT2_PATTERN,
                 special_tokens: dict[str, int] | None = None):
        self.ranks = dict(ranks)
        if sorted(self.ranks.values()) != list(range(len(self.ranks))):
            raise ValueError(f"the ranks of the {len(self.ranks):,} tokens must be 0..{len(self.ranks) - 1}, each once")
        self.token_bytes = sorted(self.ranks, key=self.ranks.__getitem__)  # id -> bytes
        missing = [b for b in range(256) if bytes([b]) not in self.ranks]
        if missing:
            raise ValueError(f"{len(missing)} single bytes have no rank (the first: {missing[0]}); all 256 are needed")
        self.special_tokens = dict(special_tokens or {})
        for text, i in self.special_tokens.items():
            if not isinstance(text, str) or check_int(f"the id of {text!r}", i) < len(self.ranks):
                raise ValueError(f"special token {text!r} has id {i}, which belongs to an ordinary token "
                                 f"(ranks 0..{len(self.ranks) - 1})")
        self.special_text = {i: text for text, i in self.special_tokens.items()}
        if len(self.special_text) != len(self.special_tokens):
            raise ValueError(f"two special tokens share an id: {self.special_tokens}")
        self.vocab_size = max([len(self.ranks) - 1, *self.special_text]) + 1
        self.pattern = pattern
        self._chunks = _gpt2_regex(pattern)
        self._specials = None
        if self.special_tokens:
            import regex

            longest_first = sorted(self.special_tokens, key=len, reverse=True)
            self._specials = regex.compile("|".join(regex.escape(text) for text in longest_first))
        self._cache: dict[str, list[int]] = {}

    def merge(self, chunk: bytes) -> list[int]:
        """The ids of one chunk's bytes: join the lowest-ranked neighbouring pair until none is a token."""
        ranks = self.ranks
        rank = ranks.get(chunk)
        if rank is not None:
            return [rank]  # the chunk is a token: most chunks of real text are
        parts = [chunk[i:i + 1] for i in range(len(chunk))]
        never = len(ranks)  # "no such token": above every rank
        pair_ranks = [ranks.get(a + b, never) for a, b in zip(parts, parts[1:])]  # pair i = parts i and i + 1
        while pair_ranks:
            best = min(pair_ranks)
            if best == never:
                break
            i = pair_ranks.index(best)  # the leftmost pair with the lowest rank
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
            del pair_ranks[i]  # only the two pairs next to the new part change
            if i > 0:
                pair_ranks[i - 1] = ranks.get(parts[i - 1] + parts[i], never)
            if i < len(pair_ranks):
                pair_ranks[i] = ranks.get(parts[i] + parts[i + 1], never)
        return [ranks[part] for part in parts]

    def _encode_ordinary(self, text: str) -> list[int]:
        cache, ids = self._cache, []
        try:
            for chunk in self._chunks.findall(text):
                chunk_ids = cache.get(chunk)
                if chunk_ids is None:
                    if len(cache) >= self.CACHE_SIZE:
                        cache.clear()
                    chunk_ids = cache[chunk] = self.merge(chunk.encode("utf-8"))
                ids += chunk_ids
        except UnicodeEncodeError:  # a lone surrogate: name its position in the text
            _utf8(text)
            raise
        return ids

    def encode(self, text: str, *, allowed_special: bool = False) -> list[int]:
        """The token ids of ``text``; with ``allowed_special``, "<|endoftext|>" in the text is id 50256."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a string, got {type(text).__name__}")
        if not (allowed_special and self._specials):
            return self._encode_ordinary(text)
        ids, start = [], 0
        for match in self._specials.finditer(text):
            ids += self._encode_ordinary(text[start:match.start()])
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        return ids + self._encode_ordinary(text[start:])

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that token ids stand for (special tokens as their text's UTF-8)."""
        if hasattr(ids, "tolist"):  # a tensor or an array of ids
            ids = ids.tolist()
        ids = [i if type(i) is int else _token_id(i, position) for position, i in enumerate(ids)]
        token_bytes, n = self.token_bytes, len(self.token_bytes)
        try:
            return b"".join(token_bytes[i] if 0 <= i < n else self.special_text[i].encode("utf-8") for i in ids)
        except KeyError:
            position, i = next((p, i) for p, i in enumerate(ids)
                               if not (0 <= i < n or i in self.special_text))
            raise ValueError(f"token id {i} at position {position} is not an id of this tokenizer "
                             f"(0..{n - 1} and the special {sorted(self.special_text)})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids; bytes that do not form whole characters show as U+FFFD (�)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token(self, i: int) -> str:
        """Token ``i`` written with GPT-2's printable byte stand-ins, e.g. "Ġthe" for " the"."""
        table = bytes_to_unicode()
        if check_int("token id", i) in self.special_text:
            return self.special_text[i]
        if not 0 <= i < len(self.token_bytes):
            raise ValueError(f"token id {i} is not in [0, {self.vocab_size}), the ids of this tokenizer")
        return "".join(table[b] for b in self.token_bytes[i])

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"GPT2Tokenizer(vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"


_GPT2_TOKENIZER: GPT2Tokenizer | None = None


def gpt2_tokenizer() -> GPT2Tokenizer:
    """GPT-2's tokenizer: r50k_base's 50,256 ranks (fetched and checked by :mod:`utils.data`) and <|endoftext|>.

    Made once per process and shared (its chunk cache too).
    """
    global _GPT2_TOKENIZER
    if _GPT2_TOKENIZER is None:
        from utils.data import fetch

        ranks = read_ranks(fetch(GPT2_RANKS_FILE))
        _GPT2_TOKENIZER = GPT2Tokenizer(ranks, GPT2_PATTERN, {END_OF_TEXT: END_OF_TEXT_ID})
    return _GPT2_TOKENIZER


if __name__ == "__main__":
    import argparse
    import datetime
    import os
    import platform

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", action="store_true", help="time BPE training and encoding on Tiny Shakespeare")
    parser.add_argument("--vocab-size", type=int, default=512)
    arguments = parser.parse_args()
    if not arguments.benchmark:
        parser.print_help()
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"BPE benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
              f"Python {platform.python_version()}, {cores} core(s) available to this process\n")
        print("| step | seconds |\n| --- | ---: |")
        for label, seconds in benchmark(arguments.vocab_size):
            print(f"| {label} | {seconds:.2f} |" if seconds else f"| {label} | |")
