"""A watchdog for byte streams between a host and the operator (dumps, restores).

A ``pg_dump`` or ``pg_restore`` that stops moving bytes (a stopped process, a hung NFS
mount, a network path that drops packets without closing) would otherwise block the run
forever: a blocked ``read()``/``write()`` on a pipe or an SSH channel has no timeout of its
own. :class:`StallWatch` notes the time of every chunk moved (:meth:`tick`); when nothing
moved for ``timeout`` seconds it kills the process (which unblocks the reader/writer with
an EOF or a broken pipe) and remembers why, so the caller reports a stall instead of a
truncated stream or a pg_restore error. A process that moves no bytes past the operator
(pg_restore reading its archive on the host) is watched through ``moving``, a callable the
watch asks at each look whether it got anywhere since the last one (e.g.
``database.activity.RestoreProgress.moved``).
"""

from __future__ import annotations

import threading
import time

from ..errors import StreamStalled


class StallWatch:
    def __init__(self, proc, timeout: float, what: str, moving=None, still: str = "moved no bytes"):
        self.proc = proc
        self.timeout = float(timeout)
        self.what = what  # e.g. "pg_dump on db1"
        self.moving = moving
        self.still = still  # what it did for ``timeout`` seconds, in the report
        self.stalled = False
        self._last = time.monotonic()
        self._done = threading.Event()
        self._t = threading.Thread(target=self._watch, name=f"stall-{what}", daemon=True)
        self._t.start()

    def tick(self) -> None:
        self._last = time.monotonic()

    def _watch(self) -> None:
        step = max(0.05, min(1.0, self.timeout / 4))
        while not self._done.wait(step):
            if self.moving is not None:
                try:
                    if self.moving():
                        self.tick()
                except Exception:  # noqa: BLE001 - cannot tell (a dropped link): no sign of progress
                    pass
            if time.monotonic() - self._last >= self.timeout:
                self.stalled = True
                try:
                    self.proc.kill()
                except Exception:  # noqa: BLE001 - best effort; the reader sees EOF or keeps waiting
                    pass
                return

    def error(self, consequence: str) -> StreamStalled:
        return StreamStalled(
            f"{self.what} {self.still} for {self.timeout:g}s (backup.stall_timeout) and was stopped; {consequence}",
            "check the DB host (load, disk, a stopped process) and the network, then retry; "
            "raise backup.stall_timeout if this host is just slow",
        )

    def check(self, consequence: str) -> None:
        if self.stalled:
            raise self.error(consequence)

    def close(self) -> None:
        self._done.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WatchedReader:
    """``raw.read()`` that ticks the watch on every chunk and turns the EOF a stall-kill
    causes into :class:`StreamStalled` (never a silently truncated stream)."""

    def __init__(self, raw, watch: StallWatch, consequence: str):
        self.raw = raw
        self.watch = watch
        self.consequence = consequence

    def read(self, n: int = -1) -> bytes:
        try:
            b = self.raw.read(n)
        except Exception:
            self.watch.check(self.consequence)
            raise
        if b:
            self.watch.tick()
        else:
            self.watch.check(self.consequence)
        return b

    def readable(self) -> bool:
        return True
