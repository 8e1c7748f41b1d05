"""Which pending revisions depend on the data they meet, and whether a deploy rehearses them.

A revision is data-dependent when what it does can fail (or do harm) on some rows and not
on others: raw SQL (``op.execute``), a type change (a cast some values refuse), NOT NULL,
a UNIQUE constraint or unique index, a CHECK, a FOREIGN KEY (validated), a data backfill
(UPDATE / INSERT ... SELECT / DELETE), a ``DO`` block. It is read from two places the gate
already has: the static findings of the revision files (:mod:`.rules`: ``raw-sql``,
``destructive-sql``, ``change-column-type``, ``set-not-null``, ``add-not-nullable-column``)
and the SQL Alembic renders for them, parsed with pglast (what the revision does whichever
way it is written: ``op.alter_column``, ``op.create_unique_constraint``, ``op.execute`` ...).
A revision whose SQL could not be rendered counts as data-dependent: what it does is unknown.

:func:`decide` turns that, the env's ``deploy.rehearsal`` and ``--no-rehearsal`` into the
decision the plan shows and the ``rehearse`` step follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pglast
from pglast import ast as pg
from pglast.enums import AlterTableType as AT, ConstrType

#: static finding rules (validate/rules.py) that are data-dependent by nature
DATA_RULES = {
    "raw-sql": "raw SQL",
    "destructive-sql": "raw SQL",
    "change-column-type": "type change",
    "set-not-null": "NOT NULL",
    "add-not-nullable-column": "NOT NULL column",
}

_CONSTRAINTS = {ConstrType.CONSTR_UNIQUE: "UNIQUE", ConstrType.CONSTR_PRIMARY: "PRIMARY KEY",
                ConstrType.CONSTR_CHECK: "CHECK", ConstrType.CONSTR_FOREIGN: "FOREIGN KEY",
                ConstrType.CONSTR_EXCLUSION: "EXCLUDE", ConstrType.CONSTR_NOTNULL: "NOT NULL"}


def _constraint(c) -> str | None:
    if not isinstance(c, pg.Constraint):
        return None
    kind = _CONSTRAINTS.get(c.contype)
    if kind in ("CHECK", "FOREIGN KEY") and c.skip_validation:  # NOT VALID: existing rows are not read
        return None
    return kind


def _sql_reasons(sql: str) -> list[str]:
    """What in ``sql`` depends on the rows it meets (empty: schema only)."""
    out: list[str] = []
    created: set[str] = set()
    for raw in pglast.parse_sql(sql):
        st = raw.stmt
        if isinstance(st, pg.CreateStmt) and st.relation is not None:
            created.add(st.relation.relname)  # a table made in the same revision has no rows yet
        elif isinstance(st, pg.AlterTableStmt) and st.relation is not None and st.relation.relname not in created:
            for cmd in st.cmds or ():
                if not isinstance(cmd, pg.AlterTableCmd):
                    continue
                if cmd.subtype == AT.AT_AlterColumnType:
                    out.append(f"type change {st.relation.relname}.{cmd.name}")
                elif cmd.subtype == AT.AT_SetNotNull:
                    out.append(f"NOT NULL {st.relation.relname}.{cmd.name}")
                elif cmd.subtype in (AT.AT_AddConstraint, AT.AT_ValidateConstraint):
                    kind = "validate constraint" if cmd.subtype == AT.AT_ValidateConstraint else _constraint(cmd.def_)
                    if kind:
                        out.append(f"{kind} on {st.relation.relname}")
                elif cmd.subtype == AT.AT_AddColumn and isinstance(cmd.def_, pg.ColumnDef):
                    kinds = [k for k in map(_constraint, cmd.def_.constraints or ()) if k]
                    if kinds:
                        out.append(f"{'/'.join(kinds)} column {st.relation.relname}.{cmd.def_.colname}")
        elif isinstance(st, pg.IndexStmt) and st.unique and st.relation is not None \
                and st.relation.relname not in created:
            out.append(f"unique index on {st.relation.relname}")
        elif isinstance(st, (pg.UpdateStmt, pg.DeleteStmt)):
            out.append(f"backfill ({type(st).__name__.removesuffix('Stmt').upper()} {st.relation.relname})")
        elif isinstance(st, pg.InsertStmt) and isinstance(st.selectStmt, pg.SelectStmt) \
                and st.selectStmt.valuesLists is None:
            out.append(f"backfill (INSERT ... SELECT into {st.relation.relname})")
        elif isinstance(st, pg.DoStmt):
            out.append("DO block")
    return out


def data_dependent(pending: list[str], findings: list, sql_by_rev: dict[str, str]) -> dict[str, list[str]]:
    """revision -> why it depends on the data (revisions that do not are left out)."""
    out: dict[str, list[str]] = {}
    for f in findings:
        f = f if isinstance(f, dict) else asdict(f)
        rev, rule = f.get("revision"), f.get("rule")
        if rev in pending and rule in DATA_RULES:
            out.setdefault(rev, []).append(f"{DATA_RULES[rule]} ({f.get('operation') or rule})")
    for rev in pending:
        sql = (sql_by_rev or {}).get(rev)
        if not sql or not sql.strip():
            out.setdefault(rev, []).append("its SQL could not be rendered: what it does is unknown")
            continue
        try:
            out.setdefault(rev, []).extend(_sql_reasons(sql))
        except pglast.parser.ParseError:
            out.setdefault(rev, []).append("its rendered SQL does not parse")
    return {r: list(dict.fromkeys(why)) for r, why in out.items() if why}


@dataclass
class Decision:
    """Whether this deploy rehearses, and why (shown in the plan and the journal)."""

    will: bool
    why: str
    mode: str
    reasons: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def decide(mode: str, *, protected: bool, pending: list[str], first_deploy: bool, no_flag: bool,
           skip_backup: bool, reasons: dict[str, list[str]]) -> Decision:
    """The rehearsal decision. Refusals (``--no-rehearsal`` on a protected env, ``always``
    without a backup) are the caller's: this only says what and why."""
    if not pending:
        return Decision(False, "nothing pending", mode, reasons)
    if no_flag:
        return Decision(False, "--no-rehearsal", mode, reasons)
    if mode == "off":
        return Decision(False, "deploy.rehearsal is off for this env", mode, reasons)
    if skip_backup:
        return Decision(False, "--skip-backup: no backup of this run to rehearse on", mode, reasons)
    if mode == "always":
        return Decision(True, "deploy.rehearsal is always", mode, reasons)
    if protected:
        return Decision(True, "protected env (auto rehearses every deploy there)", mode, reasons)
    if first_deploy:
        return Decision(False, "first deploy: the database has no data of this schema yet", mode, reasons)
    if reasons:
        first = next(iter(reasons.items()))
        return Decision(True, f"data-dependent: {first[0]} {first[1][0]}"
                        + (f" (+{sum(map(len, reasons.values())) - 1} more)" if sum(map(len, reasons.values())) > 1 else ""),
                        mode, reasons)
    return Decision(False, "no data-dependent operation pending", mode, reasons)
