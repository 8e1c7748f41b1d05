"""``invoke check``: the guide's ``npm run migration:check`` and its post-deploy verification,
as one read-only verb. It never writes to the target database and takes no lock.

- revision: current vs head, pending revisions (an unknown or diverged current fails);
- drift: the live schema against the reference the history builds at the current revision
  (:mod:`vetai_ops.database.reference`; building it, the first time, uses a scratch database
  on the same server, dropped again), each difference marked accepted or not;
- models: the live schema against the SQLAlchemy models (Alembic ``compare_metadata``), when
  the database is at head; objects of accepted drift are left out;
- orphans: for every existing foreign key, the guide's LEFT JOIN diagnostic (rows whose
  parent is missing: possible with NOT VALID keys, disabled triggers, replication-role loads);
- health: each health URL on each app host.

``ok`` is true only when all hold: at head, no unaccepted drift, models equal, no orphans,
every health check passing.
"""

from __future__ import annotations

import time

from ..database import migrations as mig
from ..database.access import check_reachable
from ..database.drift import drift_at
from ..database.orphans import orphan_report
from ..errors import OpsError
from ..pipeline import run_context


def _subject(d) -> tuple[str, str] | None:
    """(kind, name) of an Alembic compare_metadata item, in the drift's naming."""
    op = d[0]
    if op in ("add_table", "remove_table"):
        return "table", d[1].name
    if op in ("add_column", "remove_column"):
        return "column", f"{d[2]}.{d[3].name}"
    if op.startswith("modify_"):
        return "column", f"{d[2]}.{d[3]}"
    if op in ("add_index", "remove_index"):
        return "index", f"{d[1].table.name}.{d[1].name}"
    if op in ("add_constraint", "remove_constraint"):
        return "constraint", f"{d[1].table.name}.{d[1].name}"
    if op in ("add_fk", "remove_fk"):
        return "constraint", f"{d[1].parent.name}.{d[1].name}"
    return None


def models_diff(conn, accepted_names: set[str]) -> list[str]:
    """Live schema vs the models, leaving out the objects whose drift is accepted."""
    out = []
    for d in mig.schema_diff(conn):
        items = d if isinstance(d, list) else [d]
        subj = _subject(items[0])
        if subj and (subj[1] in accepted_names or subj[1].split(".")[0] in accepted_names):
            continue
        out += mig.describe_diff(items)
    return out


def collect_check(env_name: str | None, *, http: bool = True, sink=None) -> dict:
    """Everything ``invoke check`` reports, as JSON-ready data (``ok``: all hold)."""
    from ..steps.checks import health_results

    with run_context(env_name, "check", journaled=False, sink=sink) as ctx:
        t0 = time.monotonic()
        check_reachable(ctx.access)
        res: dict = {"env": ctx.env.name, "database": ctx.access.db.name, "ok": False, "problems": []}
        problems = res["problems"]
        with ctx.access.engine().connect() as conn:
            current = mig.current(conn)
            head = mig.head()
            known = current is None or mig.known(current)
            diverged = known and not mig.is_ancestor(current, head)
            pending = mig.chain(current, head) if known and not diverged else []
            res.update(current=current, head=head, pending=pending)
            if not known:
                problems.append(f"revision {current} is not in this checkout's history")
            elif diverged:
                problems.append(f"revision {current} is not an ancestor of head {head}")
            if pending:
                problems.append(f"{len(pending)} pending revision(s): {', '.join(pending)}")

            drift: list[dict] = []
            if known:
                try:
                    diffs, info = drift_at(ctx.access, conn, current, emit=ctx.emit)
                    drift = [d.to_dict() for d in diffs]
                    res["reference"] = {"revision": current, "cached": info["cached"], "seconds": info["seconds"]}
                except OpsError as e:
                    problems.append(f"drift not checked: {e.message}")
            res["drift"] = drift
            new = [d for d in drift if not d["accepted"]]
            if new:
                problems.append(f"{len(new)} unaccepted schema difference(s): "
                                + "; ".join(f"{d['kind']} {d['name']}: {d['detail']}" for d in new[:10]))

            if current is not None and current == head:
                accepted = {d["name"] for d in drift if d["accepted"]}
                md = models_diff(conn, accepted)
                res["models"] = {"checked": True, "differences": md}
                if md:
                    problems.append("live schema differs from the models (src/vetai_ops/schema/models.py): "
                                    + "; ".join(md[:10]))
            else:
                res["models"] = {"checked": False, "differences": [],
                                 "reason": "the models describe head; the database is not at head"}

            orphans = orphan_report(conn)
            conn.rollback()
        res["orphans"] = [o for o in orphans if o["orphans"]]
        res["foreign_keys_checked"] = len(orphans)
        for o in res["orphans"]:
            problems.append(f"{o['orphans']} orphan row(s) in {o['table']}({', '.join(o['columns'])}) "
                            f"without {o['ref_table']} (constraint {o['constraint']})")
        res["health"] = health_results(ctx) if http else []
        for h in res["health"]:
            if not h["ok"]:
                problems.append(f"health {h['url']} on {h['host']}: {h['detail']}")
        res["ok"] = not problems
        res["duration_s"] = round(time.monotonic() - t0, 3)
        res["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return res
