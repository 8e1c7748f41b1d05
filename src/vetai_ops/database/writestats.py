"""Writes since a backup began, counted from PostgreSQL's own statistics.

A backup records :func:`snapshot` (``pg_stat_user_tables`` ``n_tup_ins / n_tup_upd / n_tup_del``
per table, the database's OID and its ``stats_reset``) just before ``pg_dump`` starts. A
restore reads the same counters on the database it retires, after the swap ended every
session there (a PostgreSQL 15 backend flushes its pending counters when it exits, so
nothing written before the swap is missing), and :func:`since` reports the difference per
table: the writes the restore discards, which the retired database still holds.

What the numbers are (PostgreSQL's statistics, not a row diff):
- attempts, not committed rows: an insert rolled back is counted too, so they are an upper
  bound of what was really written;
- writes made up to a few seconds before the backup began by sessions that had not yet
  reported them (a busy session reports at most every second, an idle one within ~10 s)
  are counted as "since" although the dump holds them: again an upper bound;
- the tool's own writes are not app writes: its journal tables are left out, and the rows
  a migration itself wrote (read in its own transaction from ``pg_stat_xact_user_tables``)
  are subtracted;
- after ``pg_stat_reset()`` or a crash restart the counters start again from zero: the
  counts are then since the reset (a lower bound) and the report says so;
- a database that is not the one backed up (a restore replaced it since) has counters of
  its own: nothing can be counted, and the report says that instead of a number.
"""

from __future__ import annotations

from .pg import dicts

# the tool's own bookkeeping: never "the app's writes"
TOOL_TABLES = frozenset({"alembic_version", "vetai_ops_applied", "deploy_history"})

_STATS_SQL = ("SELECT CASE WHEN schemaname = 'public' THEN relname ELSE schemaname || '.' || relname END AS name,"
              " n_tup_ins, n_tup_upd, n_tup_del FROM {view}")  # view: one of two constants below


def _rows(conn, view: str) -> dict[str, list[int]]:
    assert view in ("pg_stat_user_tables", "pg_stat_xact_user_tables")
    return {r["name"]: [int(r["n_tup_ins"]), int(r["n_tup_upd"]), int(r["n_tup_del"])]
            for r in dicts(conn, _STATS_SQL.format(view=view))}


def snapshot(conn) -> dict:
    """The counters of the connected database, now (a fresh transaction reads fresh values).
    ``conn``: psycopg's (or a SQLAlchemy one: its driver connection, in its transaction)."""
    row = dicts(conn, "SELECT d.oid::bigint AS oid, s.stats_reset FROM pg_database d"
                      " LEFT JOIN pg_stat_database s ON s.datid = d.oid WHERE d.datname = current_database()")[0]
    return {
        "db_oid": int(row["oid"]),
        "stats_reset": row["stats_reset"].isoformat() if row["stats_reset"] else None,
        "tables": _rows(conn, "pg_stat_user_tables"),
    }


def own_transaction_writes(conn) -> dict[str, list[int]]:
    """Rows written so far by this session's open transaction (e.g. a migration's own)."""
    return {k: v for k, v in _rows(conn, "pg_stat_xact_user_tables").items() if any(v)}


def add_into(total: dict[str, list[int]], more: dict[str, list[int]]) -> None:
    for k, v in more.items():
        t = total.setdefault(k, [0, 0, 0])
        for i in range(3):
            t[i] += v[i]


def since(before: dict | None, after: dict, own: dict[str, list[int]] | None = None) -> tuple[dict | None, list[str]]:
    """(``{table: {inserted, updated, deleted}}`` of tables with writes, notes), or (None, notes)
    when the counters of ``after`` cannot be compared with ``before``."""
    notes: list[str] = []
    if not before or "tables" not in before:
        return None, ["the backup recorded no write statistics (made by an older version): writes since it are unknown"]
    if before.get("db_oid") != after.get("db_oid"):
        return None, ["the database was replaced (restored) after this backup was taken, so its statistics "
                      "do not reach back to it: writes since the backup cannot be counted"]
    reset = after.get("stats_reset") != before.get("stats_reset")
    if reset:
        notes.append(f"PostgreSQL's statistics were reset since the backup (at {after.get('stats_reset')}): "
                     "the counts are since that reset, there may have been more")
    own = own or {}
    out: dict[str, dict[str, int]] = {}
    for name, now in sorted(after.get("tables", {}).items()):
        if name in TOOL_TABLES:
            continue
        base = [0, 0, 0] if reset else before["tables"].get(name, [0, 0, 0])
        delta = [now[i] - base[i] for i in range(3)]
        if any(d < 0 for d in delta):  # dropped and re-created since, or a reset not seen: its own count
            delta = list(now)
        mine = own.get(name, [0, 0, 0])
        delta = [max(0, delta[i] - mine[i]) for i in range(3)]
        if any(delta):
            out[name] = {"inserted": delta[0], "updated": delta[1], "deleted": delta[2]}
    return out, notes


def describe(writes: dict | None, limit: int = 8) -> str:
    """One line: ``pets +3 ~1 -2, visits +10`` (inserted, updated, deleted)."""
    if writes is None:
        return "unknown"
    if not writes:
        return "none"
    parts = []
    for name, w in sorted(writes.items(), key=lambda kv: -sum(kv[1].values()))[:limit]:
        bits = [f"+{w['inserted']}" if w["inserted"] else "", f"~{w['updated']}" if w["updated"] else "",
                f"-{w['deleted']}" if w["deleted"] else ""]
        parts.append(f"{name} {' '.join(b for b in bits if b)}")
    more = len(writes) - limit
    return ", ".join(parts) + (f" and {more} more table(s)" if more > 0 else "")
