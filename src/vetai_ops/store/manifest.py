"""A backup's manifest (``<env>/<id>.json``) and its id: the model the catalog
(store/catalog.py) reads and writes, and the Dump it records of a dump just written."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

# \Z, not $ (which lets a trailing newline through); [0-9], not \d (any Unicode digit)
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z\Z")


class Manifest(BaseModel):
    """A backup's manifest: the JSON object stored as ``<env>/<id>.json`` (keys sorted), signed
    (store/signing.py) over every field, including fields a newer version wrote (kept as read:
    ``extra="allow"``). ``trust`` is set when read, never stored."""

    model_config = ConfigDict(extra="allow")

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
    tables: dict[str, int] = Field(default_factory=dict)  # row counts at dump time (estimates)
    log_key: str | None = None
    # PostgreSQL's write counters when the dump began (database/writestats.py): what a restore
    # of this backup discards is counted against them
    write_stats: dict[str, Any] | None = None
    verifications: list[dict[str, Any]] = Field(default_factory=list)
    # the stored object, pinned (signed with the rest): S3's ETag (read back with If-Match)
    # and, in a versioned bucket, the object's VersionId (read back by that version)
    etag: str | None = None
    version_id: str | None = None
    signature: dict[str, Any] | None = None  # store/signing.py; covers every other field (checked, not typed)

    # database-level properties at dump time (database/dbprops.py: owner, ACL, settings, locale,
    # comment), given back to a restored copy; None in manifests written before they were recorded
    database_props: dict[str, Any] | None = None
    object_owners: list[str] | None = None  # roles owning dumped objects (a restore keeps them)
    # pg_database_size when the dump was taken (the estimates scale durations by it), and every
    # restore of this backup other than a verification: {at, kind: rollback | recovery |
    # rehearsal, ok, restore_s, verify_s, total_s, run_id} (store/estimates.py reads them)
    db_size: int | None = None
    restores: list[dict[str, Any]] = Field(default_factory=list)

    # set when read (not stored): signed | unsigned | bad-signature | no-key
    _trust: str = PrivateAttr(default="unsigned")

    @property
    def trust(self) -> str:
        return self._trust

    @trust.setter
    def trust(self, value: str) -> None:
        self._trust = value

    @property
    def signed(self) -> bool:
        return self.trust == "signed"

    @property
    def verified(self) -> bool:
        """The latest restore test of this backup passed, and the manifest saying so is signed
        (an unsigned ``verifications: [{ok: true}]`` is anyone's word)."""
        return self.signed and bool(self.verifications and self.verifications[-1].get("ok"))

    def to_json(self) -> dict[str, Any]:
        """The stored JSON object (fields of a newer version included, as read)."""
        return self.model_dump()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        return cls.model_validate(d)

    def core(self) -> dict[str, Any]:
        """What the backup is, without the records appended later (verifications, restores) and
        the signature."""
        return {k: v for k, v in self.to_json().items() if k not in ("verifications", "restores", "signature")}


@dataclass
class Dump:
    """A dump as written: its key, the bytes stored (counted and hashed on their way), the
    first bytes (the archive's header), and on S3 the object's ETag / VersionId."""

    key: str
    size: int
    sha256: str
    head: bytes
    etag: str | None
    version_id: str | None


def new_id(now: float | None = None) -> str:
    return datetime.fromtimestamp(now or time.time(), timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def id_time(bid: str) -> datetime:
    return datetime.strptime(bid, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


TRUST_TEXT = {
    "signed": "signed",
    "unsigned": "unsigned",
    "bad-signature": "its signature does not match (the manifest was altered, or signed with another key)",
    "no-key": "signed, but this env has no manifest key to check it (storage.manifest_key_env)",
}
