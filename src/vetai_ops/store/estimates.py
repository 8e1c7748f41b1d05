"""Time estimates from this env's own history (issue 14 item 3).

Where the history lives (each fact once):

- a backup's manifest: ``duration_s`` (the backup) and ``db_size`` (``pg_database_size`` when
  it was taken); every restore of that backup appends a record to it: ``verifications`` (backups.verify)
  and ``restores`` (``kind``: rollback, recovery, rehearsal; ``restore_s``, ``total_s``). The
  size a restore handled is the manifest's ``db_size``: the copy is that database.
- the journal (``deploy_history``): per-revision migration durations, ``revisions`` of the
  runs that migrated the live database and the ``rehearse`` step's ``detail`` of the runs
  that rehearsed.

A duration is predicted by scaling each of the latest samples by the size now over the size
then, and taking the median: ``t * size_now / size_then`` (restore and dump are dominated by
the bytes they move). ``None`` when there is no sample.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable

SAMPLES = 5  # the latest samples of each kind that count


def _scaled(samples: Iterable[tuple[int, float]], size_now: int | None) -> float | None:
    pts = [(s, t) for s, t in samples if s and t is not None and t >= 0][:SAMPLES]
    if not pts:
        return None
    if not size_now:
        return round(statistics.median(t for _, t in pts), 2)
    return round(statistics.median(t * size_now / s for s, t in pts), 2)


def backup_samples(manifests: list) -> list[tuple[int, float]]:
    """(db size, seconds) of the backups, newest first."""
    return [(m.db_size, m.duration_s) for m in manifests if getattr(m, "db_size", None) and m.duration_s]


def restore_samples(manifests: list, kinds: tuple[str, ...] | None = None,
                    total: bool = False) -> list[tuple[int, float]]:
    """(db size, seconds) of every recorded restore of these backups, newest first: verifications
    (kind ``verify``) and ``restores`` records. ``total``: the whole restore (with the swap and
    checks) where recorded, else the restore itself (checksum + pg_restore)."""
    pts: list[tuple[str, int, float]] = []
    for m in manifests:
        size = getattr(m, "db_size", None)
        if not size:
            continue
        recs = [dict(v, kind="verify") for v in (m.verifications or []) if v.get("ok")]
        recs += [r for r in (getattr(m, "restores", None) or []) if r.get("ok", True)]
        for r in recs:
            if kinds is not None and r.get("kind") not in kinds:
                continue
            t = r.get("total_s") if total and r.get("total_s") is not None else (
                (r.get("verify_s") or 0) + r["restore_s"] if r.get("restore_s") is not None else None)
            if t is not None:
                pts.append((r.get("at") or "", size, float(t)))
    pts.sort(key=lambda p: p[0], reverse=True)
    return [(s, t) for _, s, t in pts]


def revision_durations(history: list[dict], pending: list[str]) -> dict[str, dict]:
    """revision -> {duration_s, source: rehearsal|deploy, run_id} from the journal (newest
    first): a rehearsal's measurement is preferred, being on a copy of this env's data."""
    out: dict[str, dict] = {}
    live: dict[str, dict] = {}
    for row in history:
        for s in row.get("steps") or []:
            for r in ((s.get("detail") or {}).get("revisions") or []) if s.get("step") == "rehearse" else []:
                if r.get("revision") in pending and r["revision"] not in out and r.get("duration_s") is not None:
                    out[r["revision"]] = {"duration_s": r["duration_s"], "source": "rehearsal", "run_id": row.get("run_id")}
        for r in row.get("revisions") or []:
            if (r.get("upgrade", True) and r.get("revision") in pending and r["revision"] not in live
                    and r.get("duration_s") is not None):
                live[r["revision"]] = {"duration_s": r["duration_s"], "source": "deploy", "run_id": row.get("run_id")}
    for rev, d in live.items():
        out.setdefault(rev, d)
    return out


def estimates(manifests: list, history: list[dict], pending: list[str], size_now: int | None,
              rehearsal: dict | None = None) -> tuple[dict[str, Any], dict[str, dict | None]]:
    """(``{backup_s, rehearsal_s, migrate_s, rollback_s}``, None where there is no history;
    per pending revision its measured duration and where from). With ``rehearsal`` (this
    run's, passed) its measurements win."""
    by_rev = revision_durations(history, pending)
    if rehearsal:
        for r in rehearsal.get("revisions") or []:
            by_rev[r["revision"]] = {"duration_s": r["duration_s"], "source": "this rehearsal"}
    migrate = (round(sum(by_rev[r]["duration_s"] for r in pending), 2)
               if pending and all(r in by_rev for r in pending) else (0.0 if not pending else None))
    restore = _scaled(restore_samples(manifests), size_now)
    rollback = _scaled(restore_samples(manifests, ("rollback", "recovery"), total=True), size_now)
    if rollback is None:  # never rolled back here: the restores (verify, rehearsal) say how long one takes
        rollback = restore
    if rehearsal and rehearsal.get("total_s") is not None:
        rehearsal_s = rehearsal["total_s"]
    else:
        past = _scaled(restore_samples(manifests, ("rehearsal",)), size_now)
        base = past if past is not None else restore
        rehearsal_s = None if base is None else round(base + (migrate or 0.0), 2)
    return ({"backup_s": _scaled(backup_samples(manifests), size_now), "rehearsal_s": rehearsal_s,
             "migrate_s": migrate, "rollback_s": rollback},
            {r: by_rev.get(r) for r in pending})
