"""Steps report events; the face renders them. Steps never print."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Event:
    kind: str  # run_started | step_started | step_finished | step_failed | step_skipped | info | warning | progress | run_finished
    step: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class NullSink:
    def emit(self, event: Event) -> None:
        pass


class ListSink:
    """Keeps every event except transfer progress (memory stays flat whatever the DB size)."""

    def __init__(self):
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        if event.kind != "progress":
            self.events.append(event)


class Tee:
    def __init__(self, *sinks: EventSink):
        self.sinks = [s for s in sinks if s is not None]

    def emit(self, event: Event) -> None:
        for s in self.sinks:
            try:
                s.emit(event)
            except OSError:  # a closed terminal or pipe (SIGHUP, `| head`) must not stop a run or its recovery
                pass
