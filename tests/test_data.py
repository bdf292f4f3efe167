"""utils.data: cache hits, real HTTP downloads (good and corrupt) and offline errors."""

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest
import torch

from utils import data
from utils.data import DataError, DataFile

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"  # created by the first download
    monkeypatch.setenv(data.DATA_ENV, str(directory))
    return directory


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder of files."""
    root = tmp_path / "served"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def register(monkeypatch, name: str, url: str, content: bytes) -> DataFile:
    file = DataFile(name, url, hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(data.DATASETS, name, file)
    return file


@pytest.mark.skipif(not SHARED.is_dir(), reason="no offline data copy next to the checkout")
def test_cache_hit_reads_the_offline_copy_without_network(monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(SHARED))

    def no_network(*args, **kwargs):
        raise AssertionError("a cache hit must not touch the network")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    text = data.load_tiny_shakespeare()
    assert len(text) == 1_115_394
    assert len(set(text)) == 65
    pairs = data.load_multi30k("val")
    assert len(pairs) == 1014
    assert all(de and en for de, en in pairs)


def test_default_data_dir_without_the_variable(monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    assert data.data_dir() == Path.home() / ".cache" / "llm-from-scratch"


def test_real_download_from_a_local_server(data_dir, server, monkeypatch):
    root, base = server
    content = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 100
    (root / "small.txt").write_bytes(content)
    register(monkeypatch, "corpus/small.txt", f"{base}/small.txt", content)

    path = data.fetch("corpus/small.txt")
    assert path == data_dir / "corpus" / "small.txt"
    assert path.read_bytes() == content
    assert sorted(p.name for p in path.parent.iterdir()) == ["small.txt"]  # no temporary left

    (root / "small.txt").unlink()  # a second fetch is a cache hit: the server is not asked
    assert data.fetch("corpus/small.txt").read_bytes() == content


def test_corrupt_download_leaves_no_file_and_names_both_hashes(data_dir, server, monkeypatch):
    root, base = server
    expected = b"the real file\n"
    (root / "file.txt").write_bytes(b"a truncated or tampered file\n")
    file = register(monkeypatch, "file.txt", f"{base}/file.txt", expected)

    with pytest.raises(DataError) as error:
        data.fetch("file.txt")
    message = str(error.value)
    assert file.sha256 in message
    assert hashlib.sha256(b"a truncated or tampered file\n").hexdigest() in message
    assert file.url in message
    assert not data_dir.exists() or list(data_dir.iterdir()) == []  # nothing half-written


def test_offline_error_says_how_to_place_the_file_by_hand(data_dir, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    file = register(monkeypatch, "offline.txt", f"http://127.0.0.1:{port}/offline.txt", b"x")

    with pytest.raises(DataError) as error:
        data.fetch("offline.txt", timeout=5)
    message = str(error.value)
    assert file.url in message
    assert str(data_dir / "offline.txt") in message
    assert file.sha256 in message
    assert data.DATA_ENV in message
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def test_interrupted_download_leaves_nothing(data_dir, monkeypatch):
    file = register(monkeypatch, "big.bin", "http://127.0.0.1:9/big.bin", b"whatever")

    class Interrupted:
        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

        def read(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: Interrupted())
    with pytest.raises(KeyboardInterrupt):
        data.fetch(file.name)
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def test_corrupt_cached_file_is_reported(data_dir, monkeypatch):
    register(monkeypatch, "cached.txt", "http://127.0.0.1:9/cached.txt", b"good")
    data_dir.mkdir()
    (data_dir / "cached.txt").write_bytes(b"bad")
    with pytest.raises(DataError, match="Delete it"):
        data.fetch("cached.txt")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match="tinyshakespeare.txt"):
        data.fetch("no-such-file.txt")


def test_registry_matches_the_offline_readme():
    readme = SHARED / "README.md"
    if not readme.exists():
        pytest.skip("no offline data copy next to the checkout")
    text = readme.read_text()
    for file in data.DATASETS.values():
        assert file.sha256 in text, file.name
        assert os.path.basename(file.url) in text, file.name


def test_train_val_split_is_first_90_percent():
    ids = torch.arange(100)
    train, val = data.train_val_split(ids)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    with pytest.raises(ValueError, match="between 0 and 1"):
        data.train_val_split(ids, 1.5)
    with pytest.raises(ValueError, match="split must be"):
        data.load_multi30k("dev")


# --- issue 11: a data folder that is not a folder --------------------------------------


def test_data_variable_naming_a_file_says_what_is_wrong_and_how_to_fix_it(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("oops")
    monkeypatch.setenv(data.DATA_ENV, str(not_a_folder))
    with pytest.raises(DataError, match=rf"{data.DATA_ENV}={not_a_folder} names a file, not a folder.*export"):
        data.fetch("tinyshakespeare.txt")
    assert not_a_folder.read_text() == "oops"


def test_a_file_or_folder_in_the_wrong_place_is_named(data_dir, monkeypatch):
    register(monkeypatch, "sub/file.txt", "http://127.0.0.1:9/file.txt", b"good")
    register(monkeypatch, "folder.txt", "http://127.0.0.1:9/folder.txt", b"good")
    data_dir.mkdir()
    (data_dir / "sub").write_text("a file where the folder 'sub' should be")
    with pytest.raises(DataError, match=r"(?s)Could not create the data folder .*sub for sub/file.txt: .*sub is a file where a folder should be.*by hand"):
        data.fetch("sub/file.txt")
    (data_dir / "folder.txt").mkdir()
    with pytest.raises(DataError, match="is a folder, not the file folder.txt"):
        data.fetch("folder.txt")


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    path = data.write_atomically(tmp_path / "state.bin", b"good")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_bytes() == b"good" and path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would

    def fails_midway(f):
        f.write(b"half of a ")
        raise KeyboardInterrupt  # the kernel interrupted while saving

    with pytest.raises(KeyboardInterrupt):
        data.write_atomically(path, fails_midway)
    assert path.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["state.bin"]
    path.chmod(0o600)
    data.write_atomically(path, lambda f: torch.save({"w": torch.ones(2)}, f))
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert path.stat().st_mode & 0o777 == 0o600  # an existing file keeps its permissions
    with pytest.raises(FileNotFoundError, match=r"the folder .*no-such-folder does not exist"):
        data.write_atomically(tmp_path / "no-such-folder" / "x.bin", b"")


def test_train_val_split_names_a_fraction_that_is_not_a_number():  # issue 11
    for bad in ("0.9", None, True, float("nan"), 1.0):
        with pytest.raises(ValueError, match="train_fraction must be a number between 0 and 1"):
            data.train_val_split(list(range(10)), bad)


def test_fetch_names_a_name_that_is_not_a_string():
    with pytest.raises(DataError, match=r"Unknown data file \['tinyshakespeare.txt'\]"):
        data.fetch(["tinyshakespeare.txt"])  # was TypeError: unhashable type: 'list'
