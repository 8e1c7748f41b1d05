"""Backups as the tool sees them: a dump plus its manifest, under ``<env>/<id>``.

A backup exists only when its manifest exists (written last). Dumps without a
manifest are incomplete: never listed, never restored, pruned later.

Trust (issue 12): a manifest is signed (store/signing.py) with a key the store does not
hold, and pins the stored object (size, sha256, and on S3 its ETag and VersionId). Each
manifest read gets a ``trust``: ``signed``, ``unsigned``, ``bad-signature`` or ``no-key``
(signed, but this env has no key to check it). Only ``signed`` backups count as verified,
are picked by ``latest`` and restored without ``--trust-unsigned``; protected envs never
restore any other. A manifest naming another backup, env or database is not listed at all.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from pydantic import ValidationError

from ..errors import BackupNotFound, OpsError, StoreError, UnsignedBackup, UntrustedBackup
from .base import BackupStore, ProgressFn
from .manifest import ID_RE, TRUST_TEXT, Dump, Manifest, new_id

class Catalog:
    def __init__(self, store: BackupStore, env: str, *, database: str | None = None, key=None,
                 protected: bool = False):
        """``key``: a ManifestKey, None (this env signs nothing), or a callable returning one
        (resolved on first use; a ConfigError from it reaches only what signs or restores)."""
        self.store = store
        self.env = env
        self.database = database
        self.protected = protected
        self._key_src = key
        self._key_done = not callable(key)
        self._key = None if callable(key) else key
        self._key_error: OpsError | None = None
        self.rejected: dict[str, str] = {}  # id -> why its manifest is not listed (last list())
        # one listing per run (a catalog lives as long as its run): the env's keys, and the
        # manifests read, kept up to date by what this catalog writes and deletes itself
        self._keys: set[str] | None = None
        self._read: dict[str, Manifest] = {}

    # ------------------------------------------------------------ keys and trust

    def key(self):
        """This env's ManifestKey or None; raises the key's ConfigError (missing variable...)."""
        if not self._key_done:
            self._key_done = True
            try:
                self._key = self._key_src()
            except OpsError as e:
                self._key_error = e
        if self._key_error is not None:
            raise self._key_error
        return self._key

    def _trust(self, raw: dict[str, Any]) -> str:
        try:
            key = self.key()
        except OpsError:
            key = None
        if key is None:
            return "unsigned" if raw.get("signature") is None else "no-key"
        return key.check(raw)

    def require_trusted(self, m: Manifest, trust_unsigned: bool = False) -> None:
        """Refuse a backup that is not signed: always on a protected env, elsewhere unless
        ``trust_unsigned``. Unsigned: UnsignedBackup (exit 2); a signature that does not
        match: UntrustedBackup (exit 4)."""
        if m.signed:
            return
        if m.trust == "no-key":
            self.key()  # a configured key that is missing (variable not exported) is what to fix: say so
        why = TRUST_TEXT.get(m.trust, m.trust)
        sign = f"`invoke backups.verify --to={m.id} --sign --env={self.env}` (after a successful restore drill)"
        cls = UntrustedBackup if m.trust == "bad-signature" else UnsignedBackup
        if self.protected:
            raise cls(f"backup {m.id} of env {self.env!r} is not trusted: {why}; a protected env restores only signed "
                      "backups; nothing was changed",
                      f"restore a signed backup (`invoke backups.list --env={self.env}`), or, if this backup is yours, "
                      f"sign it with {sign}")
        if not trust_unsigned:
            raise cls(f"backup {m.id} of env {self.env!r} is not trusted: {why}; nothing was changed",
                      f"if you know this backup is yours: pass --trust-unsigned, or sign it with {sign}")

    def dump_key(self, bid: str, ext: str = "dump") -> str:
        return f"{self.env}/{bid}.{ext}"

    def manifest_key(self, bid: str) -> str:
        return f"{self.env}/{bid}.json"

    def log_key(self, bid: str) -> str:
        return f"{self.env}/{bid}.log.jsonl"

    def allocate_id(self) -> str:
        """A fresh UTC id not used by any object yet (waits a second on a clash): checked
        against the run's listing, and on a clash against a fresh listing of that id."""
        keys: set[str] | None = self.keys()
        while True:
            bid = new_id()
            listed = keys if keys is not None else self.store.list_keys(f"{self.env}/{bid}")
            keys = None
            if not any(k.startswith(f"{self.env}/{bid}.") for k in listed):
                return bid
            time.sleep(1.0)

    def keys(self) -> set[str]:
        """The env's objects: listed once per catalog (per run), then kept up to date by what
        the catalog writes and deletes."""
        if self._keys is None:
            self._keys = set(self.store.list_keys(f"{self.env}/"))
        return set(self._keys)

    def _added(self, key: str) -> None:
        if self._keys is not None:
            self._keys.add(key)

    # ------------------------------------------------------------ the objects of a backup

    def write_dump(self, bid: str, source, *, size_hint: int | None = None,
                   progress: ProgressFn | None = None) -> Dump:
        """Stream backup ``bid``'s dump into the store from ``source`` (a context manager
        giving a readable stream: its exit raises when the producer failed), hashing and
        counting every byte on its way. The stored size is checked against the bytes sent,
        once. On any failure the dump is deleted (its manifest is never written) and the
        error raised. Returns the :class:`Dump`."""
        from ..transfer.stream import HashingReader

        key = self.dump_key(bid)
        try:
            with source as raw:
                reader = HashingReader(raw, progress)
                pinned = self.store.put_stream(key, reader, size_hint=size_hint)
            if reader.size == 0:
                raise StoreError("pg_dump produced no bytes; no backup was registered")
            if pinned["size"] != reader.size:
                raise StoreError(f"stored size {pinned['size']} != streamed size {reader.size} for "
                                 f"{self.store.url(key)}; no backup was registered")
        except BaseException:
            # the first error says what happened; a delete that fails too (S3 unreachable)
            # must not replace it with "S3 delete failed"
            with contextlib.suppress(OpsError):
                self.store.delete(key)
            raise
        self._added(key)
        return Dump(key, reader.size, reader.sha.hexdigest(), reader.head, pinned.get("etag"), pinned.get("version_id"))

    def open_dump(self, m: Manifest):
        """A readable stream of ``m``'s dump, exactly the object its manifest pinned (S3: its
        ETag / VersionId; UntrustedBackup when it was replaced)."""
        return self.store.open_read(m.dump_key, etag=m.etag, version_id=m.version_id)

    def write_log(self, bid: str, lines: list[str]) -> None:
        """The run's journal lines, next to the backup ``bid`` it made."""
        self.store.put_bytes(self.log_key(bid), ("\n".join(lines) + "\n").encode())
        self._added(self.log_key(bid))

    def write_manifest(self, m: Manifest, *, sign: bool = True) -> None:
        """Write ``m``, signed with this env's key when it has one (``sign=False``: as it is,
        for an untrusted manifest whose record must not be laundered by a fresh signature)."""
        d = m.to_json()
        if sign:
            key = self.key()
            d["signature"] = key.sign(d) if key is not None else None
            m.signature = d["signature"]
            m.trust = "signed" if key is not None else "unsigned"
        self.store.put_bytes(self.manifest_key(m.id), json.dumps(d, indent=2, sort_keys=True).encode())
        self._added(self.manifest_key(m.id))
        self._read[m.id] = m

    def add_restore(self, bid: str, rec: dict[str, Any]) -> None:
        """Append a restore record to backup ``bid``'s manifest (re-read first: a verification
        may have been recorded meanwhile). Callers hold the env's lock. (Where manifests are
        signed, this rewrite must sign only a manifest that was signed: a record never launders
        an unsigned one.)"""
        fresh = self.read_manifest(bid)
        fresh.restores = list(fresh.restores or []) + [rec]
        # signed again only when it was signed: signing what was read unsigned or mis-signed
        # (a --trust-unsigned restore) would launder it
        self.write_manifest(fresh, sign=fresh.signed)

    def read_manifest(self, bid: str) -> Manifest:
        try:
            raw = json.loads(self.store.get_bytes(self.manifest_key(bid)))
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            m = Manifest.from_json(raw)
        except ValidationError as e:  # which fields, never their (untrusted) values
            bad = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
            raise OpsError(f"manifest of backup {bid} is unreadable: {bad}", "remove or repair it") from None
        except (ValueError, TypeError) as e:
            raise OpsError(f"manifest of backup {bid} is unreadable: {e}", "remove or repair it") from None
        # the manifest's own fields reach SQL comments, object keys and messages: they must be
        # the backup named by the file, nothing else
        if m.id != bid or not ID_RE.match(str(m.id)) or not str(m.dump_key).startswith(f"{self.env}/{bid}."):
            raise OpsError(f"manifest {self.manifest_key(bid)} describes another backup "
                           f"(id {str(m.id)[:40]!r}, dump {str(m.dump_key)[:80]!r}); it is not trusted",
                           "remove it, or restore the manifest that belongs to this backup")
        if m.env != self.env or (self.database is not None and m.database != self.database):
            raise UntrustedBackup(
                f"manifest {self.manifest_key(bid)} describes a backup of env {str(m.env)[:40]!r}, database "
                f"{str(m.database)[:40]!r}, not of env {self.env!r} database {self.database!r}; it is not trusted",
                "remove it; restore only this env's own backups")
        m.trust = self._trust(raw)
        self._read[bid] = m
        return m

    def _manifest(self, bid: str) -> Manifest:
        """Backup ``bid``'s manifest as this run read it (read now if it was not)."""
        return self._read.get(bid) or self.read_manifest(bid)

    def complete(self, bid: str, *, trust_unsigned: bool = False) -> Manifest:
        """Backup ``bid`` read again by its id (its manifest, its trust checked again as
        :meth:`select` checks it, and its dump still there), without listing the store: what a
        run already selected (and the operator confirmed): the manifest this run's listing
        read, when it did (one resolve per rollback; the dump's bytes are checked against it
        before pg_restore reads them)."""
        m = self._read.get(str(bid))
        if m is not None and self._keys is not None and m.dump_key in self._keys:
            self.require_trusted(m, trust_unsigned)
            return m
        if not ID_RE.match(str(bid)) or not self.store.exists(self.manifest_key(bid)):
            raise BackupNotFound(f"backup {bid} of env {self.env} is gone from {self.store.location}",
                                 "see `invoke backups.list`")
        m = self.read_manifest(bid)
        if not self.store.exists(m.dump_key):
            raise BackupNotFound(f"backup {bid} of env {self.env} has lost its dump {m.dump_key}",
                                 "see `invoke backups.list`")
        self.require_trusted(m, trust_unsigned)
        return m

    def iter_newest(self) -> Iterator[Manifest]:
        """Complete backups (manifest present and its dump present), newest first, each with its
        ``trust``, from the run's one listing of the store; each manifest is read (once per
        run) only when the caller gets that far. Manifests that describe another backup, env or
        database are left out (and noted in ``rejected``)."""
        keys = self.keys()
        self.rejected = {}
        ids = sorted((k[len(self.env) + 1 : -5] for k in keys if k.endswith(".json")), reverse=True)
        for bid in ids:
            if not ID_RE.match(bid):
                continue
            try:
                m = self._manifest(bid)
            except OpsError as e:
                self.rejected[bid] = e.message
                continue
            if m.dump_key in keys:
                yield m

    def list(self) -> list[Manifest]:
        """Complete backups (manifest present and its dump present), newest first."""
        return list(self.iter_newest())

    def newest(self, pred: Callable[[Manifest], bool] | None = None) -> Manifest | None:
        """The newest complete backup (for which ``pred`` holds), reading manifests newest first
        until one does: a backup's size estimate need not read every manifest of the env."""
        return next((m for m in self.iter_newest() if pred is None or pred(m)), None)

    def incomplete(self) -> list[str]:
        """Dump keys that have no manifest (interrupted backups)."""
        keys = self.keys()
        out = []
        for k in keys:
            name = k[len(self.env) + 1 :]
            bid = name.split(".", 1)[0]
            if ID_RE.match(bid) and not name.endswith((".json", ".log.jsonl")) and self.manifest_key(bid) not in keys:
                out.append(k)
        return sorted(out)

    def resolve(self, to: str | None, *, trust_unsigned: bool = False, enforce: bool = True) -> Manifest:
        """``to`` = exact id, unique prefix, ``latest``, a time, ``-2h`` (see :mod:`.when`). Clear errors otherwise."""
        return self.select(to, trust_unsigned=trust_unsigned, enforce=enforce).manifest

    def select(self, to: str | None, *, now: datetime | None = None, history=None, explain: bool = False,
               trust_unsigned: bool = False, enforce: bool = True):
        """The :class:`.when.Selection` for ``to`` (the backup and why); ``history`` is a callable
        returning deploy_history rows, newest first, asked for ``pre-deploy`` (and with ``explain``,
        to name the deploys the restore undoes).

        Trust: ``latest`` and times pick among SIGNED backups only (with ``trust_unsigned`` on
        an unprotected env, among all), so a forged newer manifest is never chosen for the
        operator; an id, a prefix or ``pre-deploy`` names a backup whatever its trust, and
        ``enforce`` then refuses what :meth:`require_trusted` refuses (``enforce=False``: for
        ``backups.verify --sign``). A manifest naming another backup/env/database: exit 4."""
        from .when import parse, select

        now = now or datetime.now(timezone.utc)
        backups = self.list()
        try:
            kind = parse(to, now).kind if to is not None and str(to).strip() else None
        except BackupNotFound:
            kind = None  # select() raises the same, clearly
        any_trust = (trust_unsigned or not enforce) and not self.protected
        pool = backups if any_trust or kind in ("id", "pre-deploy", None) else [m for m in backups if m.signed]
        if backups and not pool:
            raise UnsignedBackup(
                f"env {self.env!r} has {len(backups)} backup(s) in {self.store.location} but none is signed"
                " with this env's manifest key; nothing was changed",
                "name one with --to=<id> (`invoke backups.list` shows them) and --trust-unsigned on an "
                "unprotected env, or sign it after a restore drill with `invoke backups.verify --to=<id> --sign`")
        try:
            sel = select(pool, to, env=self.env, location=self.store.location, now=now, history=history,
                         explain=explain)
        except BackupNotFound:
            bad = [bid for bid in self.rejected if kind == "id" and bid.startswith(str(to).strip())]
            if len(bad) == 1:
                raise UntrustedBackup(self.rejected[bad[0]], "restore only this env's own backups (`invoke backups.list`)") from None
            raise
        if enforce:
            self.require_trusted(sel.manifest, trust_unsigned)
        return sel
