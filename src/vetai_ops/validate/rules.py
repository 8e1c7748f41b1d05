"""Risky operations in a revision's ``upgrade()``, found by walking its syntax tree.

Rules (ids as reported): ``drop-table``, ``drop-column`` (also ``batch_op.drop_column``
inside ``with op.batch_alter_table(...) as batch_op``), ``change-column-type``,
``rename-column``, ``rename-table``, ``set-not-null`` and ``add-not-nullable-column`` and
``non-concurrent-index`` (only on tables not created in the same revision),
``concurrently-in-transaction`` (a concurrent index, in ``op.create_index`` or raw SQL,
outside ``with op.get_context().autocommit_block():``; PostgreSQL refuses it), ``raw-sql``
and ``destructive-sql`` (``op.execute``; string literals are parsed with pglast) and
``missing-downgrade``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from .model import Finding
from .parse import RevisionFile
from .sqlcheck import ParseError, analyse_sql

# positional parameters of the alembic.op functions we inspect (batch_op drops table_name)
_SIGNATURES = {
    "drop_table": ("table_name",),
    "drop_column": ("table_name", "column_name"),
    "alter_column": ("table_name", "column_name"),
    "rename_table": ("old_table_name", "new_table_name"),
    "add_column": ("table_name", "column"),
    "create_index": ("index_name", "table_name", "columns"),
    "drop_index": ("index_name", "table_name"),
    "create_table": ("table_name",),
    "batch_alter_table": ("table_name",),
    "execute": ("sqltext",),
}


def scan_revision(rf: RevisionFile) -> tuple[list[Finding], bool]:
    """Findings of one parsed revision file, and whether it has a real downgrade."""
    if rf.tree is None:
        return [], False
    funcs = {n.name: n for n in rf.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    findings: list[Finding] = []
    upgrades = [f for name, f in funcs.items() if name == "upgrade" or name.startswith("upgrade_")]
    for fn in upgrades:
        visitor = _UpgradeVisitor(rf, _op_names(rf.tree))
        visitor.created = visitor.created_tables(fn)
        for stmt in fn.body:
            visitor.visit(stmt)
        findings.extend(visitor.findings)
    downgrades = [f for name, f in funcs.items() if name == "downgrade" or name.startswith("downgrade_")]
    has_downgrade = bool(downgrades) and not any(_is_empty(f) for f in downgrades)
    if not has_downgrade and any(not _is_empty(f) for f in upgrades):
        findings.append(_missing_downgrade(rf, downgrades[0] if downgrades else None))
    return findings, has_downgrade


def downgrade_risks(rf: RevisionFile) -> list[str]:
    """Why reverting this revision could lose data (empty: its downgrade() is non-destructive).

    The downgrade functions are read with the same rules as upgrades: a drop of a table or
    column, a type change, a rename, destructive SQL, SQL that cannot be analysed, or no real
    downgrade at all each make a reason. (A downgrade that drops what the upgrade added loses
    what the app wrote there since: destructive too.)"""
    from .model import DESTRUCTIVE_RULES

    if rf.tree is None:
        return [f"{rf.path.name} does not parse"]
    funcs = [n for n in rf.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and (n.name == "downgrade" or n.name.startswith("downgrade_"))]
    if not funcs or any(_is_empty(f) for f in funcs):
        return [f"{rf.revision or rf.path.name} has no downgrade()"]
    reasons = []
    for fn in funcs:
        visitor = _UpgradeVisitor(rf, _op_names(rf.tree))
        visitor.created = visitor.created_tables(fn)
        for stmt in fn.body:
            visitor.visit(stmt)
        for f in visitor.findings:
            if f.rule in DESTRUCTIVE_RULES or (f.rule == "raw-sql" and f.operation == "execute"):
                reasons.append(f"{rf.revision}: downgrade {f.operation or f.rule} ({f.rule})")
    return reasons


def _op_names(tree: ast.Module) -> set[str]:
    """Names the module binds to ``alembic.op`` (``from alembic import op [as x]``)."""
    names = {"op"}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "alembic":
            names.update(a.asname or a.name for a in node.names if a.name == "op")
        elif isinstance(node, ast.Import):
            names.update(a.asname for a in node.names if a.name == "alembic.op" and a.asname)
    return names


def _is_empty(fn: ast.FunctionDef) -> bool:
    """Body is only pass / ``...`` / a docstring, or it raises unconditionally."""
    body = fn.body
    if any(isinstance(s, ast.Raise) for s in body):
        return True
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in body)


def _missing_downgrade(rf: RevisionFile, fn: ast.FunctionDef | None) -> Finding:
    if fn is None:
        why = "has no downgrade()"
    elif any(isinstance(s, ast.Raise) for s in fn.body):
        why = "has a downgrade() that raises (irreversible)"
    else:
        why = "has an empty downgrade()"
    return Finding(str(rf.path), rf.revision, "missing-downgrade",
                   f"revision {rf.revision} {why}; a failed deploy can only be undone by restoring a backup",
                   fn.lineno if fn else None, operation="downgrade")


def _text(node: ast.expr | None) -> str:
    """A literal string argument, unwrapping ``op.f("x")`` / ``sa.text("x")``; else its source."""
    if node is None:
        return "?"
    if (isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords
            and _func_name(node) in {"f", "text", "quoted_name"}):
        node = node.args[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ast.unparse(node)


def _func_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _bind(call: ast.Call, params: tuple[str, ...]) -> dict[str, ast.expr]:
    args = dict(zip(params, call.args))
    args.update({kw.arg: kw.value for kw in call.keywords if kw.arg})
    return args


def _is_const(node: ast.expr | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


class _UpgradeVisitor(ast.NodeVisitor):
    """Visits upgrade() in source order, tracking ``batch_alter_table`` aliases by scope."""

    def __init__(self, rf: RevisionFile, op_names: set[str]):
        self.rf = rf
        self.op_names = op_names
        self.batch: list[tuple[str, str]] = []  # (alias, table) stack
        self.created: set[str] = set()
        self.autocommit = 0  # depth of ``with ...autocommit_block():`` around the current node
        self.findings: list[Finding] = []
        self.handlers: dict[str, Callable[[ast.Call, dict, str], None]] = {
            "drop_table": self._drop_table, "drop_column": self._drop_column, "alter_column": self._alter_column,
            "rename_table": self._rename_table, "add_column": self._add_column,
            "create_index": self._create_index, "drop_index": self._drop_index, "execute": self._execute,
        }

    # -- plumbing ---------------------------------------------------------------------------
    def _op_call(self, call: ast.expr) -> tuple[str, dict[str, ast.expr], str | None] | None:
        """(op name, bound args, table) for ``op.X(...)`` / ``batch_op.X(...)``, else None."""
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.attr in _SIGNATURES):
            return None
        owner, name = call.func.value.id, call.func.attr
        if owner in self.op_names:
            args = _bind(call, _SIGNATURES[name])
            return name, args, self._table(args.get("table_name") or args.get("old_table_name"), args)
        for alias, table in reversed(self.batch):
            if alias == owner:
                params = tuple(p for p in _SIGNATURES[name] if p != "table_name")
                return name, _bind(call, params), table
        return None

    @staticmethod
    def _table(node: ast.expr | None, args: dict[str, ast.expr]) -> str | None:
        if node is None:
            return None
        schema = args.get("schema")
        name = _text(node)
        return f"{_text(schema)}.{name}" if schema is not None and not _is_const(schema, None) else name

    def created_tables(self, fn: ast.FunctionDef) -> set[str]:
        """Tables created by ``op.create_table`` anywhere in ``fn``."""
        tables = set()
        for node in ast.walk(fn):
            hit = self._op_call(node)
            if hit and hit[0] == "create_table" and hit[2]:
                tables.add(hit[2])
        return tables

    def add(self, node: ast.AST, rule: str, operation: str, message: str) -> None:
        """Record one finding at ``node``'s line."""
        self.findings.append(Finding(str(self.rf.path), self.rf.revision, rule, message,
                                     getattr(node, "lineno", None), operation=operation))

    def visit_With(self, node: ast.With) -> None:  # noqa: N802 (ast API)
        pushed = 0
        autocommit = any(isinstance(i.context_expr, ast.Call) and _func_name(i.context_expr) == "autocommit_block"
                         for i in node.items)
        for item in node.items:
            hit = self._op_call(item.context_expr)
            if hit and hit[0] == "batch_alter_table" and isinstance(item.optional_vars, ast.Name):
                self.batch.append((item.optional_vars.id, hit[2] or "?"))
                pushed += 1
        self.autocommit += autocommit
        self.generic_visit(node)
        self.autocommit -= autocommit
        del self.batch[len(self.batch) - pushed:]

    def _outside_autocommit(self, node: ast.AST, what: str, operation: str) -> None:
        if not self.autocommit:
            self.add(node, "concurrently-in-transaction", operation,
                     f"{what} cannot run inside a transaction block, and env.py runs each revision in one: "
                     "PostgreSQL will refuse it after the backup; put it inside "
                     "`with op.get_context().autocommit_block():`")

    def visit_Call(self, node: ast.Call) -> None:  # noqa: N802 (ast API)
        hit = self._op_call(node)
        if hit and hit[0] in self.handlers:
            name, args, table = hit
            self.handlers[name](node, args, table or "?")
        self.generic_visit(node)

    # -- rules ------------------------------------------------------------------------------
    def _drop_table(self, node, args, table):
        self.add(node, "drop-table", f"drop_table {table}", f"drops table {table} and all its rows")

    def _drop_column(self, node, args, table):
        col = f"{table}.{_text(args.get('column_name'))}"
        self.add(node, "drop-column", f"drop_column {col}",
                 f"drops column {col} (its data is lost; running code that reads it breaks)")

    def _alter_column(self, node, args, table):
        col = f"{table}.{_text(args.get('column_name'))}"
        if args.get("type_") is not None and not _is_const(args["type_"], None):
            self.add(node, "change-column-type", f"change_column_type {col}",
                     f"changes the type of {col} to {ast.unparse(args['type_'])} "
                     "(table rewrite under an ACCESS EXCLUSIVE lock; may break clients)")
        if args.get("new_column_name") is not None and not _is_const(args["new_column_name"], None):
            self.add(node, "rename-column", f"rename_column {col}",
                     f"renames column {col} to {_text(args['new_column_name'])} (breaks code using the old name)")
        if _is_const(args.get("nullable"), False) and table not in self.created:
            self.add(node, "set-not-null", f"set_not_null {col}",
                     f"sets {col} NOT NULL on an existing table (full scan under lock; fails on NULL rows)")

    def _rename_table(self, node, args, table):
        self.add(node, "rename-table", f"rename_table {table}",
                 f"renames table {table} to {_text(args.get('new_table_name'))} (breaks code using the old name)")

    def _add_column(self, node, args, table):
        column = args.get("column")
        if table in self.created or not (isinstance(column, ast.Call) and _func_name(column) == "Column"):
            return
        kw = {k.arg: k.value for k in column.keywords if k.arg}
        not_null = _is_const(kw.get("nullable"), False) or _is_const(kw.get("primary_key"), True)
        if not_null and (kw.get("server_default") is None or _is_const(kw["server_default"], None)):
            col = f"{table}.{_text(column.args[0]) if column.args else '?'}"
            self.add(node, "add-not-nullable-column", f"add_not_nullable_column {col}",
                     f"adds NOT NULL column {col} without server_default to an existing table "
                     "(fails when the table has rows)")

    def _create_index(self, node, args, table):
        if _is_const(args.get("postgresql_concurrently"), True):
            index = _text(args.get("index_name"))
            self._outside_autocommit(node, f"concurrent index {index} on {table}",
                                     f"create_index_concurrently {table}.{index}")
            return
        if table in self.created:
            return
        index = _text(args.get("index_name"))
        self.add(node, "non-concurrent-index", f"create_index {table}.{index}",
                 f"creates index {index} on existing table {table} without postgresql_concurrently=True "
                 "(blocks writes while it builds); env.py runs each revision in a transaction, so put a "
                 "concurrent index inside `with op.get_context().autocommit_block():`")

    def _drop_index(self, node, args, table):
        if _is_const(args.get("postgresql_concurrently"), True):
            index = _text(args.get("index_name"))
            self._outside_autocommit(node, f"DROP INDEX CONCURRENTLY {index}", f"drop_index_concurrently {index}")

    def _execute(self, node, args, table):
        sql = args.get("sqltext")
        if isinstance(sql, ast.Call) and _func_name(sql) == "text" and sql.args:
            sql = sql.args[0]
        if not (isinstance(sql, ast.Constant) and isinstance(sql.value, str)):
            self.add(node, "raw-sql", "execute",
                     f"op.execute with SQL built at run time ({ast.unparse(sql) if sql else '?'}); review it by hand")
            return
        try:
            statements = analyse_sql(sql.value)
        except ParseError as exc:
            self.add(node, "raw-sql", "execute", f"op.execute SQL does not parse as PostgreSQL: {exc}")
            return
        for stmt in statements:
            if stmt.no_transaction:
                self._outside_autocommit(node, f"{stmt.no_transaction} ({stmt.text[:120]})",
                                         f"execute {stmt.no_transaction.lower()}")
        destructive = [(s, op) for s in statements for op in s.destructive]
        for stmt, op in destructive:
            self.findings.append(Finding(str(self.rf.path), self.rf.revision, "destructive-sql",
                                         f"op.execute runs destructive SQL: {stmt.text[:200]}",
                                         sql.lineno + stmt.line_offset, operation=op))
        if not destructive:
            kinds = ", ".join(dict.fromkeys(s.text.split(" ", 1)[0].upper() for s in statements)) or "nothing"
            self.add(node, "raw-sql", f"execute {kinds}",
                     f"raw SQL in op.execute ({kinds}); not checked by Alembic, review it")
