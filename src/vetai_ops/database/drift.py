"""Schema drift: the live schema against the reference at its revision, and the record of
the differences an operator accepted (``vetai_ops_accepted_drift`` in the target database).

A difference is accepted when a row with its exact ``kind``, ``name`` and ``detail`` is
recorded: the same object drifting further (another type, one more column on an extra
table) is a new difference and is refused again. Rows say who (``user@host``), when,
at which revision and by which action (deploy, adopt, migrations.upgrade).

Tokens (``--accept-drift=``) name differences by ``kind:name`` (``index:pets.ix_pets_name``),
by bare ``name`` (``pets.ix_pets_name``), by kind (``index``: every index difference), or
``all``. Matching ignores case.
"""

from __future__ import annotations

from collections.abc import Iterable

from .catalog import Difference, compare, driver_connection, snapshot
from .pg import dicts, scalar

TABLE = "vetai_ops_accepted_drift"
ALL = "all"

ACCEPTED_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    name text NOT NULL,
    detail text NOT NULL,
    accepted_by text NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    revision text,
    action text,
    run_id text,
    UNIQUE (kind, name, detail)
)
"""


def accepted_records(conn) -> list[dict]:
    """Every recorded acceptance, oldest first (empty when the table does not exist).
    ``conn``: psycopg's, or a SQLAlchemy one (its driver connection, in its transaction)."""
    if not scalar(conn, f"select to_regclass('public.{TABLE}')"):
        return []
    rows = dicts(conn, f"select kind, name, detail, accepted_by, accepted_at, revision, action from {TABLE} order by id")
    return [{**r, "accepted_at": r["accepted_at"].isoformat(timespec="seconds")} for r in rows]


def mark_accepted(diffs: list[Difference], records: list[dict]) -> list[Difference]:
    keys = {(r["kind"], r["name"], r["detail"]) for r in records}
    return [Difference(d.kind, d.name, d.detail, d.key in keys) for d in diffs]


def live_drift(conn, expected: dict, ignore: set[str] | frozenset[str] = frozenset()) -> list[Difference]:
    """Differences of ``conn``'s database from ``expected``, each marked accepted or not."""
    return mark_accepted(compare(expected, snapshot(conn, ignore=ignore)), accepted_records(conn))


def parse_tokens(values: Iterable[str] | str | bool | None) -> list[str]:
    """``--accept-drift`` values (repeatable, comma-separated) as normalized tokens; a bare
    flag (True) means all."""
    if values is True:
        return [ALL]
    if not values:
        return []
    if isinstance(values, str):
        values = [values]
    return [t.strip().lower() for v in values for t in str(v).split(",") if t.strip()]


def select(diffs: list[Difference], tokens: list[str]) -> tuple[list[Difference], list[str]]:
    """(differences the tokens name, tokens that name none of them)."""
    chosen: list[Difference] = []
    unused = []
    for t in tokens:
        hit = [d for d in diffs if t in (ALL, d.id.lower(), d.name.lower(), d.kind)]
        if not hit:
            unused.append(t)
        chosen += [d for d in hit if d not in chosen]
    return [d for d in diffs if d in chosen], unused


def record(conn, diffs: list[Difference], *, by: str, revision: str | None, action: str, run_id: str) -> int:
    """Record ``diffs`` as accepted (in the caller's transaction); returns how many were new."""
    pg = driver_connection(conn)
    pg.execute(ACCEPTED_DDL)
    n = 0
    for d in diffs:
        n += pg.execute(
            f"INSERT INTO {TABLE} (kind, name, detail, accepted_by, revision, action, run_id) "
            "VALUES (%(k)s, %(n)s, %(d)s, %(by)s, %(rev)s, %(a)s, %(run)s) ON CONFLICT (kind, name, detail) DO NOTHING",
            {"k": d.kind, "n": d.name, "d": d.detail, "by": by, "rev": revision, "a": action, "run": run_id}).rowcount
    return n


def describe(diffs: list[Difference], limit: int = 30) -> str:
    shown = "\n  - ".join(str(d) for d in diffs[:limit])
    more = f"\n  - ... and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return f"\n  - {shown}{more}"


def accept_hint(diffs: list[Difference]) -> str:
    return ("if these changes are intended, accept them by name: --accept-drift=" + ",".join(d.id for d in diffs)
            + " (or --accept-drift=all); otherwise bring the schema back in line with the history")


def drift_at(access, conn, rev: str | None, *, emit=None) -> tuple[list[Difference], dict]:
    """(differences of the live database from the reference at ``rev``, reference info)."""
    from .reference import reference

    expected, info = reference(access, rev, conn=conn, emit=emit)
    return live_drift(conn, expected), info
