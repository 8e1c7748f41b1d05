"""Backups as the tool sees them: a dump plus its manifest, under ``<env>/<id>``.

A backup exists only when its manifest exists (written last). Dumps without a
manifest are incomplete: never listed, never restored, pruned later.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from ..errors import OpsError
from .base import BackupStore

# \Z, not $ (which lets a trailing newline through); [0-9], not \d (any Unicode digit)
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z\Z")


@dataclass
class Manifest:
    id: str
    env: str
    database: str
    size: int
    sha256: str
    revision: str | None
    created_at: str
    server_version: str
    pg_dump_version: str
    tool_version: str
    git_commit: str | None
    duration_s: float
    reason: str
    dump_key: str
    format: str = "custom"  # pg_dump -Fc
    compression: str = "gzip"  # what wraps the custom-format stream: none | gzip (pg_dump's own) | zstd
    host: str = ""
    tables: dict[str, int] = field(default_factory=dict)  # row counts at dump time (estimates)
    log_key: str | None = None
    # PostgreSQL's write counters when the dump began (database/writestats.py): what a restore
    # of this backup discards is counted against them
    write_stats: dict[str, Any] | None = None
    verifications: list[dict[str, Any]] = field(default_factory=list)
    # database-level properties at dump time (database/dbprops.py: owner, ACL, settings, locale,
    # comment), given back to a restored copy; None in manifests written before they were recorded
    database_props: dict[str, Any] | None = None
    object_owners: list[str] | None = None  # roles owning dumped objects (a restore keeps them)
    # pg_database_size when the dump was taken (the estimates scale durations by it), and every
    # restore of this backup other than a verification: {at, kind: rollback | recovery |
    # rehearsal, ok, restore_s, verify_s, total_s, run_id} (store/estimates.py reads them)
    db_size: int | None = None
    restores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """The latest restore test of this backup passed."""
        return bool(self.verifications and self.verifications[-1].get("ok"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def new_id(now: float | None = None) -> str:
    return datetime.fromtimestamp(now or time.time(), timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def id_time(bid: str) -> datetime:
    return datetime.strptime(bid, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


class Catalog:
    def __init__(self, store: BackupStore, env: str):
        self.store = store
        self.env = env

    def dump_key(self, bid: str, ext: str = "dump") -> str:
        return f"{self.env}/{bid}.{ext}"

    def manifest_key(self, bid: str) -> str:
        return f"{self.env}/{bid}.json"

    def log_key(self, bid: str) -> str:
        return f"{self.env}/{bid}.log.jsonl"

    def allocate_id(self, keys: set[str] | None = None) -> str:
        """A fresh UTC id not used by any object yet (waits a second on a clash). ``keys``: the
        env's keys as a listing just read them (spares one listing; a clash lists again)."""
        while True:
            bid = new_id()
            listed = keys if keys is not None else self.store.list_keys(f"{self.env}/{bid}")
            keys = None
            if not any(k.startswith(f"{self.env}/{bid}.") for k in listed):
                return bid
            time.sleep(1.0)

    def keys(self) -> set[str]:
        """One listing of the env's objects."""
        return set(self.store.list_keys(f"{self.env}/"))

    def write_manifest(self, m: Manifest) -> None:
        self.store.put_bytes(self.manifest_key(m.id), json.dumps(m.to_json(), indent=2, sort_keys=True).encode())

    def add_restore(self, bid: str, rec: dict[str, Any]) -> None:
        """Append a restore record to backup ``bid``'s manifest (re-read first: a verification
        may have been recorded meanwhile). Callers hold the env's lock."""
        fresh = self.read_manifest(bid)
        fresh.restores = list(fresh.restores or []) + [rec]
        self.write_manifest(fresh)

    def read_manifest(self, bid: str) -> Manifest:
        try:
            m = Manifest.from_json(json.loads(self.store.get_bytes(self.manifest_key(bid))))
        except (ValueError, TypeError) as e:
            raise OpsError(f"manifest of backup {bid} is unreadable: {e}", "remove or repair it") from None
        # the manifest's own fields reach SQL comments, object keys and messages: they must be
        # the backup named by the file, nothing else
        if m.id != bid or not ID_RE.match(str(m.id)) or not str(m.dump_key).startswith(f"{self.env}/{bid}."):
            raise OpsError(f"manifest {self.manifest_key(bid)} describes another backup "
                           f"(id {str(m.id)[:40]!r}, dump {str(m.dump_key)[:80]!r}); it is not trusted",
                           "remove it, or restore the manifest that belongs to this backup")
        return m

    def complete(self, bid: str) -> Manifest:
        """Backup ``bid`` read again by its id (its manifest, and its dump still there), without
        listing the store: what a run already selected (and the operator confirmed)."""
        from ..errors import BackupNotFound

        if not ID_RE.match(str(bid)) or not self.store.exists(self.manifest_key(bid)):
            raise BackupNotFound(f"backup {bid} of env {self.env} is gone from {self.store.location}",
                                 "see `invoke backups.list`")
        m = self.read_manifest(bid)
        if not self.store.exists(m.dump_key):
            raise BackupNotFound(f"backup {bid} of env {self.env} has lost its dump {m.dump_key}",
                                 "see `invoke backups.list`")
        return m

    def iter_newest(self, keys: set[str] | None = None) -> Iterator[Manifest]:
        """Complete backups (manifest present and its dump present), newest first, one listing
        of the store (or ``keys``, one just read); each manifest is read only when the caller
        gets that far."""
        keys = self.keys() if keys is None else keys
        ids = sorted((k[len(self.env) + 1 : -5] for k in keys if k.endswith(".json")), reverse=True)
        for bid in ids:
            if not ID_RE.match(bid):
                continue
            try:
                m = self.read_manifest(bid)
            except OpsError:
                continue
            if m.dump_key in keys:
                yield m

    def list(self) -> list[Manifest]:
        """Complete backups (manifest present and its dump present), newest first."""
        return list(self.iter_newest())

    def newest(self, pred: Callable[[Manifest], bool] | None = None, keys: set[str] | None = None) -> Manifest | None:
        """The newest complete backup (for which ``pred`` holds), reading manifests newest first
        until one does: a backup's size estimate need not read every manifest of the env."""
        return next((m for m in self.iter_newest(keys) if pred is None or pred(m)), None)

    def incomplete(self) -> list[str]:
        """Dump keys that have no manifest (interrupted backups)."""
        keys = set(self.store.list_keys(f"{self.env}/"))
        out = []
        for k in keys:
            name = k[len(self.env) + 1 :]
            bid = name.split(".", 1)[0]
            if ID_RE.match(bid) and not name.endswith((".json", ".log.jsonl")) and self.manifest_key(bid) not in keys:
                out.append(k)
        return sorted(out)

    def resolve(self, to: str | None) -> Manifest:
        """``to`` = exact id, unique prefix, ``latest``, a time, ``-2h`` (see :mod:`.when`). Clear errors otherwise."""
        return self.select(to).manifest

    def select(self, to: str | None, *, now: datetime | None = None, history=None, explain: bool = False):
        """The :class:`.when.Selection` for ``to`` (the backup and why); ``history`` is a callable
        returning deploy_history rows, newest first, asked for ``pre-deploy`` (and with ``explain``,
        to name the deploys the restore undoes)."""
        from .when import select

        return select(self.list(), to, env=self.env, location=self.store.location, now=now, history=history,
                      explain=explain)
