"""Destructive statements in raw SQL, found with pglast (PostgreSQL's own parser)."""

from __future__ import annotations

from dataclasses import dataclass

import pglast
from pglast import ast as pg
from pglast.enums import AlterTableType, ObjectType
from pglast.stream import RawStream

ParseError = pglast.parser.ParseError


@dataclass(frozen=True)
class SqlStatement:
    """One statement of a raw SQL string: its kind, and the destructive operation if any."""

    kind: str  # e.g. "DropStmt"
    text: str  # deparsed, one line
    line_offset: int  # 0-based line of the statement inside the SQL string
    destructive: tuple[str, ...] = ()  # operation strings, e.g. ("drop_table notifications",)
    no_transaction: str = ""  # what PostgreSQL refuses inside a transaction block, e.g. "CREATE INDEX CONCURRENTLY"


def analyse_sql(sql: str) -> list[SqlStatement]:
    """Parse ``sql`` and classify each statement. Raises ``ParseError`` when it does not parse.

    Destructive: DROP ..., ALTER TABLE ... DROP COLUMN / ALTER COLUMN ... TYPE, renames of
    tables and columns, TRUNCATE, DELETE without WHERE.
    """
    raw = sql.encode("utf-8")
    out = []
    for raw_stmt in pglast.parse_sql(sql):
        node = raw_stmt.stmt
        try:
            text = RawStream()(node)
        except Exception:  # deparse gaps for exotic nodes: fall back to the source bytes
            start = raw_stmt.stmt_location
            text = raw[start:start + (raw_stmt.stmt_len or len(raw))].decode("utf-8", "replace").strip()
        offset = raw[: raw_stmt.stmt_location].count(b"\n") + _leading_newlines(raw, raw_stmt.stmt_location)
        out.append(SqlStatement(type(node).__name__, " ".join(text.split()), offset, tuple(_destructive(node)),
                                _no_transaction(node)))
    return out


def _leading_newlines(raw: bytes, start: int) -> int:
    """pglast's location points at the whitespace before a statement; skip it."""
    chunk = raw[start:]
    return chunk[: len(chunk) - len(chunk.lstrip())].count(b"\n")


def _relname(rv: pg.RangeVar | None) -> str:
    if rv is None:
        return "?"
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def _object_name(obj) -> str:
    if isinstance(obj, pg.String):
        return obj.sval
    if isinstance(obj, tuple):
        return ".".join(_object_name(o) for o in obj)
    for attr in ("names", "objname"):
        if getattr(obj, attr, None):
            return _object_name(getattr(obj, attr))
    return "?"


def _no_transaction(node) -> str:
    """The statement's kind when PostgreSQL refuses to run it inside a transaction block."""
    if isinstance(node, pg.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, pg.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, pg.ReindexStmt) and any(
            isinstance(p, pg.DefElem) and p.defname == "concurrently" for p in node.params or ()):
        return "REINDEX CONCURRENTLY"
    if isinstance(node, pg.VacuumStmt) and node.is_vacuumcmd:  # ANALYZE alone is allowed
        return "VACUUM"
    if isinstance(node, (pg.CreatedbStmt, pg.DropdbStmt)):
        return "CREATE/DROP DATABASE"
    return ""


def _destructive(node) -> list[str]:
    if isinstance(node, pg.DropStmt):
        kind = "drop_" + ObjectType(node.removeType).name.removeprefix("OBJECT_").lower()
        return [f"{kind} {_object_name(obj)}" for obj in node.objects or ()]
    if isinstance(node, pg.DropdbStmt):
        return [f"drop_database {node.dbname}"]
    if isinstance(node, pg.TruncateStmt):
        return [f"truncate {_relname(rv)}" for rv in node.relations or ()]
    if isinstance(node, pg.DeleteStmt) and node.whereClause is None:
        return [f"delete {_relname(node.relation)}"]
    if isinstance(node, pg.RenameStmt):
        if node.renameType == ObjectType.OBJECT_COLUMN:
            return [f"rename_column {_relname(node.relation)}.{node.subname}"]
        if node.renameType == ObjectType.OBJECT_TABLE:
            return [f"rename_table {_relname(node.relation)}"]
    if isinstance(node, pg.AlterTableStmt):
        kinds = {AlterTableType.AT_DropColumn: "drop_column", AlterTableType.AT_AlterColumnType: "change_column_type"}
        return [f"{kinds[cmd.subtype]} {_relname(node.relation)}.{cmd.name}"
                for cmd in node.cmds or () if isinstance(cmd, pg.AlterTableCmd) and cmd.subtype in kinds]
    return []
