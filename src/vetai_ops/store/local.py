"""Backups in a folder (the default ``backups/``)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import StoreError
from .base import ProgressFn

CHUNK = 1 << 20


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
                   size_hint: int | None = None) -> int:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        total = 0
        try:
            with open(tmp, "wb") as f:
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
        return total

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
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        try:
            with open(tmp, "wb") as f:
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
