"""Data sets: download once from the canonical address, verify, cache (chapter 00).

The book never ships data. :func:`fetch` looks for a file in the data directory
(``LLM_FROM_SCRATCH_DATA`` if set, else ``~/.cache/llm-from-scratch``); when it is
missing, it downloads it from its canonical address, checks its sha256 and only
then moves it into place, so an interrupted or corrupt download leaves nothing
behind. Every error says what went wrong and how to place the file by hand.
:func:`write_atomically` is that last step on its own, for every file the book
writes (tokenizers, checkpoints): a temporary file, then a rename.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

DATA_ENV = "LLM_FROM_SCRATCH_DATA"
DEFAULT_DATA_DIR = Path.home() / ".cache" / "llm-from-scratch"


@dataclass(frozen=True)
class DataFile:
    name: str  # path inside the data directory
    url: str  # canonical address
    sha256: str


_MULTI30K = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
DATASETS: dict[str, DataFile] = {
    f.name: f
    for f in [
        DataFile(
            "tinyshakespeare.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        ),
        DataFile("multi30k/train.de.gz", _MULTI30K + "train.de.gz",
                 "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
        DataFile("multi30k/train.en.gz", _MULTI30K + "train.en.gz",
                 "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
        DataFile("multi30k/val.de.gz", _MULTI30K + "val.de.gz",
                 "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
        DataFile("multi30k/val.en.gz", _MULTI30K + "val.en.gz",
                 "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
        DataFile("multi30k/test_2016_flickr.de.gz", _MULTI30K + "test_2016_flickr.de.gz",
                 "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
        DataFile("multi30k/test_2016_flickr.en.gz", _MULTI30K + "test_2016_flickr.en.gz",
                 "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
        # GPT-2's byte-level BPE vocabulary (tiktoken's r50k_base: one "base64 rank" line per token; chapter 16)
        DataFile("gpt2/r50k_base.tiktoken", "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
                 "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"),
    ]
}


class DataError(RuntimeError):
    """A data file could not be found, downloaded or verified."""


def data_dir() -> Path:
    """The folder that holds (or will hold) the data files."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_file_mode(path: Path) -> int:
    """The permissions ``open(path, "w")`` would leave: the old file's, or 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(path: str | Path, content: bytes | Callable[[BinaryIO], object]) -> Path:
    """Write a file that is never seen half written: a temporary file beside it, then a rename.

    ``content`` is bytes, or a function that writes into a binary file, e.g.
    ``lambda f: torch.save(state, f)``. If anything fails (a full disk, an
    interrupted kernel, an error raised by ``content``), the old file at ``path`` is
    left as it was and no temporary file remains. Returns the path.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            if callable(content):
                content(out)
            else:
                out.write(content)
            out.flush()
            os.fsync(out.fileno())  # on disk before the rename makes it visible
        os.chmod(temporary, _new_file_mode(path))  # mkstemp makes files private (0o600)
        os.replace(temporary, path)  # atomic: readers see the old file or the new one
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _by_hand(file: DataFile, path: Path) -> str:
    return (
        f"To place it by hand (e.g. when offline): download {file.url} on a machine that "
        f"can reach it and save it as {path} (its sha256 must be {file.sha256}), "
        f"or set {DATA_ENV} to a folder that already holds {file.name}."
    )


def download(file: DataFile, path: Path, timeout: float = 60.0) -> Path:
    """Download ``file`` to ``path`` atomically: verified first, then moved into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file where a folder should be, or no permission
        in_the_way = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
        reason = (f"{in_the_way} is a file where a folder should be; move it away" if in_the_way
                  else f"{error.strerror or error}; set {DATA_ENV} to a folder you can write to")
        raise DataError(
            f"Could not create the data folder {path.parent} for {file.name}: {reason}.\n{_by_hand(file, path)}"
        ) from error

    def download_and_verify(out: BinaryIO) -> None:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(file.url, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 16), b""):
                    digest.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DataError(f"Could not download {file.name} from {file.url}: {reason}.\n{_by_hand(file, path)}") from error
        actual = digest.hexdigest()
        if actual != file.sha256:
            raise DataError(
                f"The download of {file.name} from {file.url} is corrupt: expected sha256 "
                f"{file.sha256}, got {actual}. Nothing was saved; try again later.\n{_by_hand(file, path)}"
            )

    return write_atomically(path, download_and_verify)  # an error above leaves nothing behind


def fetch(name: str, timeout: float = 60.0) -> Path:
    """The local path of data file ``name``, downloading and verifying it if needed."""
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(f"Unknown data file {name!r}; the book knows {sorted(DATASETS)}")
    file = DATASETS[name]
    folder = data_dir()
    if folder.exists() and not folder.is_dir():
        where = f"{DATA_ENV}={os.environ[DATA_ENV]}" if os.environ.get(DATA_ENV) else "The default data folder"
        raise DataError(
            f"{where} names a file, not a folder: {folder}. Point {DATA_ENV} at a folder that holds "
            f"(or may receive) the data files, e.g. export {DATA_ENV}={folder.parent / 'data'}"
            + ("" if os.environ.get(DATA_ENV) else f", or move the file {folder} away")
            + "."
        )
    path = folder / file.name
    if path.is_dir():
        raise DataError(f"{path} is a folder, not the file {file.name}: move it away so the file can be placed there."
                        f"\n{_by_hand(file, path)}")
    if not path.exists():
        return download(file, path, timeout=timeout)
    actual = sha256_of(path)
    if actual != file.sha256:
        raise DataError(
            f"The cached file {path} is not {file.name}: expected sha256 {file.sha256}, got {actual}. "
            f"Delete it so that it is downloaded again.\n{_by_hand(file, path)}"
        )
    return path


def load_tiny_shakespeare() -> str:
    """Tiny Shakespeare: 1,115,394 characters of plays, the book's running corpus."""
    return fetch("tinyshakespeare.txt").read_text(encoding="utf-8")


def load_multi30k(split: str = "train") -> list[tuple[str, str]]:
    """Multi30k task 1 as (German, English) sentence pairs; split is train, val or test."""
    stem = {"train": "train", "val": "val", "test": "test_2016_flickr"}.get(split)
    if stem is None:
        raise ValueError(f"split must be 'train', 'val' or 'test', not {split!r}")
    german, english = (
        gzip.decompress(fetch(f"multi30k/{stem}.{lang}.gz").read_bytes()).decode("utf-8").splitlines()
        for lang in ("de", "en")
    )
    if len(german) != len(english):
        raise DataError(f"Multi30k {split}: {len(german)} German lines but {len(english)} English lines")
    return list(zip(german, english))


def train_val_split(data: torch.Tensor | str | list, train_fraction: float = 0.9):
    """The first ``train_fraction`` for training, the rest for validation (the field's split)."""
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be a number between 0 and 1, not {train_fraction!r}")
    n = int(train_fraction * len(data))
    return data[:n], data[n:]
