"""Which backup a ``--to`` means, and which backups a ``--before`` / ``--after`` bound keeps.

One primitive for rollback (its plan and restore), ``backups.verify --to`` and
``backups.list --before/--after``. The forms, in the order they are tried:

- ``latest``: the newest complete backup.
- the tool's compact id form, digits with an optional ``T...`` and ``Z``
  (``20261202T053059Z``, ``20261202T05``, ``20261202``, ``2026``): ALWAYS an id or a unique
  prefix of one, never a time. ``20261202`` is also an ISO 8601 basic date, but read as a
  time it would silently pick a different backup than the operator who pasted an id prefix
  meant; an exact id therefore always wins, and a time is written with dashes.
- an ISO 8601 / RFC 3339 time with dashes: ``2026-12-02T05:40:00Z``,
  ``2026-12-02T05:40+01:00``, ``2026-12-02 05:40``, ``2026-12-02`` (midnight). Without a zone
  it is UTC, like every id, manifest, log line and ``deploy_history`` row of the tool (the
  operator's laptop zone would make the same command pick different backups on different
  machines); the selection says so, with the local equivalent.
- a relative time: ``-2h``, ``-30m``, ``-1d``, ``-90s``, ``-1h30m`` (before now).
- ``pre-deploy``: the backup the last deploy of the env took before it migrated, from the
  journal (``deploy_history`` rows, newest first). A deploy that was already undone (its own
  failure handler restored it, or a later rollback went back to its backup or an older one)
  is skipped for the one before it.

A time means the state as of that time: the newest complete backup taken (id time) at or
before it. A time before every backup or in the future is refused, naming the nearest
backups. Refusals raise :class:`BackupNotFound` (exit 2: nothing changed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

from ..errors import BackupNotFound
from ..units import human_span
from .manifest import Manifest, id_time

ID_FORM = re.compile(r"[0-9]{1,8}(?:T[0-9]{0,6}Z?)?")
FULL_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z")
ISO_FORM = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
RELATIVE_FORM = re.compile(r"-(?:([0-9]{1,5})d)?(?:([0-9]{1,6})h)?(?:([0-9]{1,7})m)?(?:([0-9]{1,9})s)?")

FORMS = ("an id (20261202T053059Z) or a unique prefix of one (20261202T05), latest, a time "
         "(2026-12-02T05:40:00Z, 2026-12-02T05:40+01:00, 2026-12-02 05:40, 2026-12-02; no zone = UTC), "
         "a relative time (-2h, -30m, -1d, -90s) or pre-deploy")
TIME_HINT = "for a time, write it with dashes (2026-12-02, 2026-12-02T05:40:00Z): digit-only values are read as ids"


def fmt(t: datetime) -> str:
    """``2026-12-02T05:40:00Z`` (fractions of a second kept when given)."""
    t = t.astimezone(timezone.utc)
    return t.isoformat(timespec="microseconds" if t.microsecond else "seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class When:
    """A parsed ``--to`` / bound: ``kind`` is latest | id | time | relative | pre-deploy."""

    kind: str
    text: str
    at: datetime | None = None  # UTC, for time / relative
    zone_given: bool = True


def parse(text: Any, now: datetime, option: str = "--to") -> When:
    s = str(text).strip()
    if s == "latest":
        return When("latest", s)
    if s == "pre-deploy":
        return When("pre-deploy", s)
    if ID_FORM.fullmatch(s):
        return When("id", s)
    m = RELATIVE_FORM.fullmatch(s)
    if m and s != "-":
        d, h, mi, se = (int(g or 0) for g in m.groups())
        return When("relative", s, now - timedelta(days=d, hours=h, minutes=mi, seconds=se))
    if ISO_FORM.fullmatch(s):
        try:
            t = datetime.fromisoformat(s)
        except ValueError as e:
            raise BackupNotFound(f"{option}={s!r} is not a valid time: {e}",
                                 "e.g. 2026-12-02T05:40:00Z or 2026-12-02 05:40 (UTC)") from None
        if t.tzinfo is None:
            return When("time", s, t.replace(tzinfo=timezone.utc), zone_given=False)
        return When("time", s, t.astimezone(timezone.utc))
    raise BackupNotFound(f"{option}={s[:60]!r} is not a backup id nor a time (expected {FORMS})",
                         "see `invoke backups.list`; `invoke rollback --help` shows how each form is read")


@dataclass
class Selection:
    """The backup a ``--to`` chose, and why (shown in the plan, the confirmation and the report)."""

    manifest: Manifest
    kind: str
    asked: str
    at: datetime | None = None
    zone_given: bool = True
    undid: list[dict[str, Any]] | None = None  # the journaled deploys this restore undoes (None: not read)

    @property
    def before_s(self) -> float | None:
        return None if self.at is None else (self.at - id_time(self.manifest.id)).total_seconds()

    def describe(self) -> str:
        bid = self.manifest.id
        if self.kind in ("time", "relative") and self.at is not None:
            d = self.before_s or 0.0
            asked = f"{self.asked} ({fmt(self.at)})" if self.kind == "relative" else fmt(self.at)
            text = f"backup {bid}, " + (f"taken at {asked}" if d < 1 else f"{human_span(d)} before {asked}")
            if self.kind == "time" and not self.zone_given:
                local = self.at.astimezone()
                same = local.utcoffset() == timedelta(0)
                text += (" (no zone given: read as UTC" + ("" if same else
                         f"; that is {local.strftime('%Y-%m-%d %H:%M:%S')} {local.tzname()} here") + ")")
            return text
        if self.kind == "pre-deploy" and self.undid:
            return f"backup {bid}, taken by deploy {self.undid[0]['run_id']} before it migrated"
        if self.kind == "latest":
            return f"backup {bid} (the latest)"
        return f"backup {bid}" + (f" (prefix {self.asked})" if self.asked != bid else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backup": self.manifest.id, "form": self.kind, "asked": self.asked,
                               "text": self.describe()}
        if self.at is not None:
            out.update(at=fmt(self.at), zone_given=self.zone_given, before_s=round(self.before_s or 0.0, 3))
        if self.undid is not None:
            out["undid"] = self.undid
        return out


def _ids(ms: Iterable[Manifest], now: datetime | None = None) -> str:
    out = []
    for m in ms:
        out.append(m.id + (f" ({human_span((now - id_time(m.id)).total_seconds())} ago)" if now else ""))
    return ", ".join(out)


def select(backups: list[Manifest], to: Any, *, env: str, location: str, now: datetime | None = None,
           history: Callable[[], list[dict[str, Any]]] | None = None, explain: bool = False) -> Selection:
    """Pick one backup of ``backups`` (newest first, complete ones) for ``to``; BackupNotFound otherwise.
    With ``explain``, whatever the form, ``undid`` lists the journaled deploys the restore undoes."""
    sel = _select(backups, to, env=env, location=location, now=now, history=history)
    if explain and history is not None and sel.undid is None:
        try:
            sel.undid = undone_by(history(), sel.manifest.id)
        except Exception:  # noqa: BLE001 - naming them is a courtesy: an unreadable journal never blocks a restore
            sel.undid = None
    return sel


def _select(backups: list[Manifest], to: Any, *, env: str, location: str, now: datetime | None,
            history: Callable[[], list[dict[str, Any]]] | None) -> Selection:
    if to is None or not str(to).strip():
        raise BackupNotFound("--to is required: which backup to restore",
                             "pass --to=<id>, a time, -2h, pre-deploy or latest; `invoke backups.list` shows them")
    now = now or datetime.now(timezone.utc)
    w = parse(to, now)
    if not backups:
        raise BackupNotFound(f"no complete backups for env {env!r} in {location}", "run `invoke backup` first")
    if w.kind == "latest":
        return Selection(backups[0], "latest", w.text)
    if w.kind == "id":
        return _by_id(backups, w.text, env, location)
    if w.kind == "pre-deploy":
        if history is None:  # a caller without the env's journal must not read "no deploys"
            raise BackupNotFound("--to=pre-deploy needs the env's deploy journal, which this command does not read",
                                 "use `invoke rollback --to=pre-deploy` or `invoke backups.verify --to=pre-deploy`")
        return _pre_deploy(backups, history(), env)
    assert w.at is not None
    if w.at > now:
        raise BackupNotFound(
            f"--to={w.text!r} is in the future ({fmt(w.at)}; now {fmt(now)}): a rollback goes back to a backup "
            "taken at or before a past time",
            f"newest backups: {_ids(backups[:3], now)}")
    older = [m for m in backups if id_time(m.id) <= w.at]
    if not older:
        oldest = backups[-3:][::-1]
        raise BackupNotFound(
            f"no backup of env {env!r} was taken at or before {fmt(w.at)}"
            + ("" if w.zone_given else " (no zone given: read as UTC)")
            + f"; the oldest is {oldest[0].id}, {human_span((id_time(oldest[0].id) - w.at).total_seconds())} later",
            f"oldest backups: {_ids(oldest)}; `invoke backups.list` shows them all")
    return Selection(older[0], w.kind, w.text, w.at, w.zone_given)


def _by_id(backups: list[Manifest], to: str, env: str, location: str) -> Selection:
    exact = [m for m in backups if m.id == to]
    if exact:
        return Selection(exact[0], "id", to)
    matches = [m for m in backups if m.id.startswith(to)]
    if len(matches) == 1:
        return Selection(matches[0], "prefix", to)
    if not matches:
        nearest = sorted(backups, key=lambda m: _distance(m.id, to))[:3]
        raise BackupNotFound(f"no backup {to!r} for env {env!r} in {location}",
                             f"nearest: {_ids(nearest)}" + ("" if FULL_ID.fullmatch(to) else f"; {TIME_HINT}"))
    raise BackupNotFound(
        f"--to={to!r} is ambiguous: {len(matches)} backups match ({', '.join(m.id for m in matches[:5])})",
        f"give more characters of the id; {TIME_HINT}")


def _distance(bid: str, wanted: str) -> float:
    have = bid.replace("T", "").replace("Z", "")
    digits = wanted.replace("T", "").replace("Z", "")
    n = min(len(digits), len(have))
    return abs(int(have[:n] or 0) - int(digits[:n] or 0))


# ------------------------------------------------------------------ pre-deploy


def _main_step(row: dict[str, Any], names: tuple[str, ...], statuses: tuple[str, ...]) -> bool:
    return any(s.get("step") in names and s.get("phase", "main") == "main" and s.get("status") in statuses
               for s in row.get("steps") or [])


def _restored_to(row: dict[str, Any]) -> str | None:
    """The backup a journaled run put in place of the live DB (a rollback, fab restore), if any."""
    if row.get("backup_id") and _main_step(row, ("restore",), ("ok",)):
        return str(row["backup_id"])
    return None


def _undid(row: dict[str, Any]) -> dict[str, Any]:
    frm, to = row.get("from_revision") or "base", row.get("to_revision") or "base"
    fin = row.get("finished_at")
    fin = fmt(fin) if isinstance(fin, datetime) else str(fin or "?").replace("+00:00", "Z")
    return {"action": "deploy", "run_id": row.get("run_id"), "finished_at": fin, "operator": row.get("operator"),
            "from": frm, "to": to, "outcome": row.get("outcome"), "backup": row.get("backup_id"),
            "text": f"deploy {row.get('run_id')} of {fin}: {frm} -> {to}"}


def last_deploy(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest deploy of ``history`` (deploy_history rows, newest first) not already undone."""
    return next(_live_deploys(history), None)


def undone_by(history: list[dict[str, Any]], bid: str) -> list[dict[str, Any]]:
    """The deploys (newest first, not already undone) that restoring backup ``bid`` undoes:
    those that started from it or from a later state."""
    return [_undid(row) for row in _live_deploys(history) if _state_key(row) >= bid]


def _live_deploys(history: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    floor: str | None = None  # the oldest backup a later run restored: deploys after it are undone
    for row in history:
        back = _restored_to(row)
        if back:
            floor = back if floor is None else min(floor, back)
            continue
        if row.get("action") != "deploy":
            continue
        outcome = str(row.get("outcome") or "")
        if outcome.endswith("+restored"):
            continue  # its own on_failure already put its backup back
        if outcome != "success" and not _main_step(row, ("migrate", "seed"), ("ok", "failed")):
            continue  # failed before it changed anything: nothing to undo
        if floor is not None and _state_key(row) >= floor:
            continue  # a later rollback already went back to its backup, or to one taken before it began
        yield row


def _state_key(row: dict[str, Any]) -> str:
    """The state a deploy started from, as an id: its backup, or (none taken) its start time."""
    if row.get("backup_id"):
        return str(row["backup_id"])
    started = row.get("started_at")
    if isinstance(started, str):
        try:
            started = datetime.fromisoformat(started)
        except ValueError:
            return ""
    if not isinstance(started, datetime):
        return ""  # unknown: never counted as undone
    return started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _pre_deploy(backups: list[Manifest], history: list[dict[str, Any]], env: str) -> Selection:
    row = last_deploy(history)
    if row is None:
        raise BackupNotFound(
            f"--to=pre-deploy: the journal of env {env!r} (deploy_history) has no deploy left to undo",
            "`invoke history` shows the runs; pick a backup by time or id (`invoke backups.list`)")
    ev = _undid(row)
    bid = row.get("backup_id")
    if not bid:
        raise BackupNotFound(f"--to=pre-deploy: the last deploy ({ev['text']}) took no backup",
                             "pick a backup by time or id (`invoke backups.list`)")
    found = [m for m in backups if m.id == bid]
    if not found:
        raise BackupNotFound(f"--to=pre-deploy: backup {bid} of the last deploy ({ev['text']}) is not a complete "
                             "backup in the store (pruned or incomplete)",
                             "pick another backup by time or id (`invoke backups.list`)")
    return Selection(found[0], "pre-deploy", "pre-deploy", undid=[ev])


# ------------------------------------------------------------------ bounds (backups.list)


def bound(text: Any, now: datetime, option: str) -> datetime:
    """A ``--before`` / ``--after`` instant: a time, a relative time, or a whole backup id (its time)."""
    w = parse(text, now, option)
    if w.kind == "id":
        if FULL_ID.fullmatch(w.text):
            return id_time(w.text)
        raise BackupNotFound(f"{option}={w.text!r} is a partial id, not an instant",
                             f"give a whole id (20261202T053059Z) or a time; {TIME_HINT}")
    if w.at is None:
        raise BackupNotFound(f"{option}={w.text!r} is not an instant",
                             "give a time (2026-12-02T05:40:00Z, 2026-12-02), -2h or a whole backup id")
    return w.at


def window(backups: list[Manifest], before: Any = None, after: Any = None,
           now: datetime | None = None) -> list[Manifest]:
    """The backups taken at or after ``after`` and at or before ``before`` (both optional)."""
    now = now or datetime.now(timezone.utc)
    hi = bound(before, now, "--before") if before not in (None, "") else None
    lo = bound(after, now, "--after") if after not in (None, "") else None
    if hi is not None and lo is not None and lo > hi:
        raise BackupNotFound(f"--after={after!s} ({fmt(lo)}) is later than --before={before!s} ({fmt(hi)})",
                             "swap them")
    return [m for m in backups
            if (hi is None or id_time(m.id) <= hi) and (lo is None or id_time(m.id) >= lo)]
