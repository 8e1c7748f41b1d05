"""Backups in a folder (the default ``backups/``).

Dumps hold the whole database (clinic data, password hashes): every file is created 0600
and every folder 0700, whatever the umask; folders made by older versions are tightened.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import StoreError
from .base import ProgressFn

CHUNK = 1 << 20
FILE_MODE = 0o600
DIR_MODE = 0o700


def _private_dirs(root: Path, d: Path) -> None:
    """Create ``d`` (under ``root``) and its missing parents 0700; tighten the store's own
    folders (root .. d) to 0700 when they are ours."""
    d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    p = d
    while True:
        with contextlib.suppress(OSError):
            st = p.stat()
            if st.st_uid == os.geteuid() and st.st_mode & 0o077:
                p.chmod(DIR_MODE)
        if p == root or root not in p.parents:
            break
        p = p.parent


def _create_private(path: Path):
    """Open ``path`` for writing, created (or truncated) with mode 0600 before any byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its old mode through O_CREAT
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


class LocalStore:
    kind = "local"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents and p != self.root:
            raise StoreError(f"backup key escapes the store: {key!r}")
        return p

    def put_stream(self, key: str, reader: BinaryIO, *, progress: ProgressFn | None = None,
                   size_hint: int | None = None) -> dict:
        dest = self._path(key)
        _private_dirs(self.root, dest.parent)
        tmp = dest.with_name(dest.name + ".partial")
        total = 0
        try:
            with _create_private(tmp) as f:
                while True:
                    chunk = reader.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    total += len(chunk)
                    if progress:
                        progress(len(chunk))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if e.errno == errno.ENOSPC:
                raise StoreError(
                    f"no space left on the device holding {self.root} after {total} bytes; the partial dump was removed",
                    "free space there or point storage.path at a larger disk",
                ) from None
            raise StoreError(f"could not write {dest}: {e.strerror or e}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return {"size": total, "etag": None, "version_id": None}

    @contextlib.contextmanager
    def open_read(self, key: str, *, etag: str | None = None, version_id: str | None = None) -> Iterator[BinaryIO]:
        # a folder has no ETag nor versions: the pinned size and sha256 are checked by the reader
        try:
            f = open(self._path(key), "rb")
        except FileNotFoundError:
            raise StoreError(f"backup object missing: {self._path(key)}") from None
        with f:
            yield f

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        _private_dirs(self.root, dest.parent)
        tmp = dest.with_name(dest.name + ".partial")
        try:
            with _create_private(tmp) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"could not write {dest}: {e.strerror or e}") from None

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"backup object missing: {self._path(key)}") from None

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self.root
        if not base.exists():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for fn in files:
                rel = os.path.relpath(os.path.join(dirpath, fn), base).replace(os.sep, "/")
                if rel.startswith(prefix):
                    out.append(rel)
        return out

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise StoreError(f"backup object missing: {self._path(key)}") from None

    def stat(self, key: str) -> dict:
        return {"size": self.size(key), "etag": None, "version_id": None}

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def url(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def free_bytes(self) -> int | None:
        p = self.root
        while not p.exists():
            p = p.parent
        st = os.statvfs(p)
        return st.f_bavail * st.f_frsize

    def abort_incomplete_uploads(self, prefix: str = "", *, older_than_s: float | None = None) -> int:
        return 0
