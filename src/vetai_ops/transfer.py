"""Moving a backup's bytes between the DB host, the operator and the store: the pieces the
backup, restore, verify and rehearse steps share (no step imports another step).

:class:`Every` keeps a transfer's progress events bounded.
"""

from __future__ import annotations

import time


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
