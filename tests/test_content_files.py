"""Committed blobs read straight from containerd's content directory
(pyctl.containerd.content.open_committed / file_chunks): what is opened, what is refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pyctl.containerd import content
from pyctl.errors import PyctlError


def _blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = root / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "sha256:" + digest


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_reads_the_whole_blob_in_chunks_and_closes_it(tmp_path: Path) -> None:
    data = os.urandom(content.CHUNK * 2 + 123)
    digest = _blob(tmp_path, data)
    before = _open_fds()
    opened = content.open_committed(str(tmp_path), digest, len(data))
    assert opened is not None
    fd, path = opened
    assert path == str(tmp_path / "blobs" / "sha256" / digest[7:])
    chunks = list(content.file_chunks(fd, path))
    assert [len(c) for c in chunks] == [content.CHUNK, content.CHUNK, 123]
    assert b"".join(chunks) == data
    assert _open_fds() == before


def test_reads_from_an_offset(tmp_path: Path) -> None:
    data = os.urandom(5000)
    digest = _blob(tmp_path, data)
    opened = content.open_committed(str(tmp_path), digest, len(data))
    assert opened is not None
    assert b"".join(content.file_chunks(*opened, 4321)) == data[4321:]


def test_a_reader_that_stops_early_closes_the_file(tmp_path: Path) -> None:
    data = os.urandom(content.CHUNK + 1)
    digest = _blob(tmp_path, data)
    before = _open_fds()
    opened = content.open_committed(str(tmp_path), digest, len(data))
    assert opened is not None
    chunks = content.file_chunks(*opened)
    next(chunks)
    chunks.close()
    assert _open_fds() == before


def test_a_file_of_another_size_is_not_used(tmp_path: Path) -> None:
    digest = _blob(tmp_path, b"abc")
    before = _open_fds()
    assert content.open_committed(str(tmp_path), digest, 4) is None
    assert content.open_committed(str(tmp_path), digest, 2) is None
    assert _open_fds() == before


def test_missing_files_and_directories_are_not_used(tmp_path: Path) -> None:
    assert content.open_committed(str(tmp_path), "sha256:" + "a" * 64, 3) is None
    (tmp_path / "blobs" / "sha256" / ("b" * 64)).mkdir(parents=True)
    assert content.open_committed(str(tmp_path), "sha256:" + "b" * 64, 0) is None


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "A" * 64,  # not containerd's lowercase name
        "sha256:" + "a" * 63,
        "sha256:../../" + "a" * 58,
        "sha512:" + "a" * 128,
        "a" * 64,
    ],
)
def test_digests_that_name_no_committed_blob_open_nothing(tmp_path: Path, digest: str) -> None:
    # a file where a careless join would look
    (tmp_path / ("a" * 58)).write_bytes(b"abc")
    assert content.open_committed(str(tmp_path / "blobs"), digest, 3) is None


def test_a_failing_read_is_one_error_naming_the_file(tmp_path: Path) -> None:
    data = b"x" * 10
    digest = _blob(tmp_path, data)
    opened = content.open_committed(str(tmp_path), digest, len(data))
    assert opened is not None
    fd, path = opened
    os.close(fd)
    other = os.open(tmp_path, os.O_RDONLY)  # the number now names a directory
    try:
        assert other == fd
        with pytest.raises(PyctlError, match=rf"^read {path}: Is a directory$"):
            list(content.file_chunks(fd, path))
    finally:
        if _fd_open(other):
            os.close(other)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
