"""The deploy journal: JSON lines in logs/migration.log (the deploy_history table in the target DB is
database/history.py)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .events import Event
from .paths import logs_dir
from .secrets import redact, redact_data

def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class FileJournal:
    """Appends every event of a run to logs/migration.log (one JSON object a line)."""

    def __init__(self, run_id: str, action: str, env: str, path: Path | None = None, enabled: bool = True):
        self.run_id = run_id
        self.action = action
        self.env = env
        self.path = path or logs_dir() / "migration.log"
        self.lines: list[str] = []
        self._f = None
        if not enabled:  # read-only views: nothing is written
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", buffering=1)
        except OSError:
            self._f = None  # journaling must never break a deploy; the DB row still records it

    def emit(self, event: Event) -> None:
        if event.kind == "progress":
            return
        rec = {
            "ts": _iso(event.ts),
            "run": self.run_id,
            "action": self.action,
            "env": self.env,
            "event": event.kind,
            "step": event.step,
            "message": redact(event.message),
        }
        if event.data:
            rec["data"] = redact_data(json.loads(json.dumps(event.data, default=str)))
        line = json.dumps(rec, default=str)
        self.lines.append(line)
        if self._f:
            try:
                self._f.write(line + "\n")
            except OSError:
                pass

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None


def operator_id() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"

