"""Bytes on their way between the DB host, the operator and the store: hashed, counted,
(de)compressed, with bounded progress; and the dump's stream out of ``pg_dump``.

Nothing here holds more than a chunk (``CHUNK``) of a dump in memory."""

from __future__ import annotations

import hashlib
import time
from typing import Callable

from ..errors import CommandFailed
from ..targets.stall import StallWatch, WatchedReader

CHUNK = 1 << 20
HEAD_BYTES = 64 << 10  # the first stored bytes kept: the archive header says pg_dump's version


class Every:
    """Rate-limit progress events to one per ``interval`` seconds (plus ``final()``):
    the run keeps every event it emits (ctx.events), so one event per chunk would make
    memory grow with the dump size; this keeps it bounded by wall time instead."""

    def __init__(self, emit, interval: float = 0.5):
        self._emit = emit
        self._interval = interval
        self._next = 0.0
        self._last = None

    def __call__(self, *args, **kw) -> None:
        self._last = (args, kw)
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            self._emit(*args, **kw)
            self._last = None

    def final(self) -> None:
        if self._last is not None:
            args, kw = self._last
            self._last = None
            self._emit(*args, **kw)


class HashingReader:
    """Wraps a binary stream: read(n) passes bytes through, hashing (sha256) and counting them,
    and keeps the first ``HEAD_BYTES`` (``head``). ``progress(n)`` is told every chunk."""

    def __init__(self, raw, progress: Callable[[int], None] | None = None):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.progress = progress
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        b = self.raw.read(CHUNK if n is None or n < 0 else n)
        if b:
            self.sha.update(b)
            if self.size < HEAD_BYTES:
                self.head += b[:HEAD_BYTES - self.size]
            self.size += len(b)
            if self.progress:
                self.progress(len(b))
        return b

    def readable(self) -> bool:
        return True


class ZstdReader:
    """Compress a stream on the operator side (zstd encode), multi-threaded, bounded memory."""

    def __init__(self, raw, level: int):
        import zstandard

        self._r = zstandard.ZstdCompressor(level=level, threads=-1).stream_reader(raw, read_size=CHUNK)

    def read(self, n: int = -1) -> bytes:
        return self._r.read(CHUNK if n is None or n < 0 else n)


def zstd_decoder():
    """A zstd decoder on the operator side (zstd decode): ``.decompress(chunk)`` per chunk."""
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


class DumpStream:
    """``pg_dump`` (``argv``), started on ``target`` with ``env`` when this is made (so that it
    connects and reads its catalogs while the caller does other work); ``with`` it to read its
    stdout as a byte stream: watched for stalls (``stall_timeout`` seconds without a byte kill
    it and say so), compressed here with zstd when ``zstd_level`` is given. An exception in the
    block kills the process; a normal exit checks its exit code (``CommandFailed``).
    :meth:`abort` kills a dump that is not wanted after all."""

    def __init__(self, target, argv: list[str], *, env: dict | None, stall_timeout: float,
                 zstd_level: int | None = None):
        self.target = target
        self.proc = target.start(argv, env=env)
        self.watch = StallWatch(self.proc, stall_timeout, f"the dump stream from pg_dump on {target.name}")
        raw = WatchedReader(self.proc.stdout, self.watch, "no backup was registered")
        self.reader = ZstdReader(raw, zstd_level) if zstd_level is not None else raw

    def abort(self) -> None:
        self.watch.close()
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self.reader

    def __exit__(self, typ, *_) -> None:
        if typ is not None:
            self.abort()
            return
        self.watch.close()
        rc = self.proc.wait()
        if rc != 0:
            raise CommandFailed(
                f"pg_dump failed on {self.target.name} (exit {rc}): {self.proc.stderr_text().strip()[-600:]};"
                " no backup was registered",
                "check the DB connection settings and that pg_dump matches the server version",
                returncode=rc,
            )
