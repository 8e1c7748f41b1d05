"""Static gate: every error and finding rule, acknowledgements, pending, JSON, rendering.

Histories are generated in tmp_path; revision files are never imported by the validator
(some of them could not be).
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from vetai_ops.validate import (
    Finding,
    Report,
    ValidationIssue,
    lint_sql,
    render_sql,
    validate_history,
)

REVISION = '''"""{message}"""
from alembic import op
import sqlalchemy as sa

{meta}


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


def rev(d: Path, rid: str, down=None, upgrade="op.create_table('t_{rid}', sa.Column('id', sa.Integer))",
        downgrade="op.drop_table('t_{rid}')", *, meta: str | None = None, name: str | None = None,
        extra: str = "", **more) -> Path:
    """Write one revision file; ``meta`` replaces the generated metadata block."""
    if meta is None:
        lines = [f"revision = {rid!r}", f"down_revision = {down!r}"]
        lines += [f"{k} = {v!r}" for k, v in more.items()]
        meta = "\n".join(lines)
    path = d / (name or f"{rid}_rev.py")
    body = REVISION.format(message=f"revision {rid}", meta=meta + extra,
                           upgrade=textwrap.indent(textwrap.dedent(upgrade).format(rid=rid), "    "),
                           downgrade=textwrap.indent(textwrap.dedent(downgrade).format(rid=rid), "    "))
    path.write_text(body)
    return path


def chain(d: Path, *ids: str) -> None:
    for parent, child in zip((None, *ids), ids):
        rev(d, child, parent)


def codes(report: Report) -> list[str]:
    return [e.code for e in report.errors]


def rules(report: Report) -> list[str]:
    return [f.rule for f in report.findings]


# --- structural errors: one failing and one passing history each ------------------------

def _syntax(d, bad):
    chain(d, "a1")
    if bad:
        (d / "b2_broken.py").write_text('revision = "b2"\ndown_revision = "a1"\n\ndef upgrade(:\n    pass\n')
    else:
        rev(d, "b2", "a1")


def _duplicate(d, bad):
    chain(d, "a1", "b2")
    rev(d, "b2" if bad else "c3", "a1" if bad else "b2", name="zz_copy.py")


def _missing_parent(d, bad):
    chain(d, "a1")
    rev(d, "b2", "nope" if bad else "a1")


def _missing_dependency(d, bad):
    chain(d, "a1", "b2")
    rev(d, "c3", "b2", depends_on="ghost" if bad else "a1")


def _cycle(d, bad):
    rev(d, "a1", None)
    rev(d, "b2", "c3" if bad else "a1")
    rev(d, "c3", "b2")
    if bad:  # keep one head so only the cycle is reported
        rev(d, "d4", "a1")


def _two_heads(d, bad):
    chain(d, "a1")
    rev(d, "b2", "a1")
    rev(d, "c3", "a1")
    if not bad:
        rev(d, "m4", ("b2", "c3"), upgrade="pass", downgrade="pass")


def _no_revision(d, bad):
    chain(d, "a1")
    rev(d, "b2", "a1", meta='down_revision = "a1"' if bad else 'revision = "b2"\ndown_revision = "a1"')


def _label_none(d, bad):
    chain(d, "a1")
    rev(d, "b2", "a1", branch_labels="None" if bad else None)


def _blank_id(d, bad):
    chain(d, "a1")
    rev(d, "b 2" if bad else "b2", "a1")


def _self_parent(d, bad):
    chain(d, "a1")
    rev(d, "b2", "b2" if bad else "a1")


def _non_literal(d, bad):
    chain(d, "a1")
    rev(d, "b2", meta='revision = "b2"\ndown_revision = ' + ('PARENT' if bad else '"a1"'))


def _label_reused(d, bad):  # Alembic refuses to build a map where two revisions share a label
    rev(d, "a1", None, branch_labels=("core",))
    rev(d, "b2", "a1", branch_labels=("core",) if bad else ("billing",))


def _alembic_illegal_id(d, bad):  # '@', '-', '+', ':' mean something in Alembic's revision syntax
    chain(d, "a1")
    rev(d, "b-2" if bad else "b2", "a1")


@pytest.mark.parametrize("build, code, offender", [
    (_syntax, "syntax-error", "b2"),
    (_duplicate, "duplicate-revision", "b2"),
    (_missing_parent, "missing-down-revision", "b2"),
    (_missing_dependency, "missing-depends-on", "c3"),
    (_cycle, "cycle", None),
    (_two_heads, "multiple-heads", None),
    (_no_revision, "missing-revision", None),
    (_label_none, "suspicious-metadata", "b2"),
    (_blank_id, "bad-revision-id", None),
    (_self_parent, "self-reference", "b2"),
    (_non_literal, "suspicious-metadata", "b2"),
    (_label_reused, "duplicate-branch-label", "b2"),
    (_alembic_illegal_id, "bad-revision-id", "b-2"),
])
@pytest.mark.parametrize("bad", [True, False], ids=["failing", "passing"])
def test_structural_errors(tmp_path, build, code, offender, bad):
    build(tmp_path, bad)
    report = validate_history(tmp_path)
    if not bad:
        assert report.ok, report.errors
        assert len(report.heads) == 1
        return
    assert code in codes(report), report.errors
    issue = next(e for e in report.errors if e.code == code)
    assert issue.file and Path(issue.file.split(", ")[0]).exists()
    if offender:
        assert issue.revision == offender
        assert offender in issue.message or offender in str(issue)
    assert not report.ok


def test_syntax_error_names_file_line_and_revision(tmp_path):
    _syntax(tmp_path, True)
    issue = validate_history(tmp_path).errors[0]
    assert (issue.code, issue.revision, issue.line) == ("syntax-error", "b2", 4)
    assert issue.file.endswith("b2_broken.py")


def test_duplicate_names_both_files(tmp_path):
    _duplicate(tmp_path, True)
    issue = next(e for e in validate_history(tmp_path).errors if e.code == "duplicate-revision")
    assert "b2_rev.py" in issue.message and "zz_copy.py" in issue.message


def test_missing_parent_points_at_the_line(tmp_path):
    _missing_parent(tmp_path, True)
    issue = validate_history(tmp_path).errors[0]
    assert (issue.code, issue.line) == ("missing-down-revision", 6)
    assert "nope" in issue.message


def test_cycle_names_its_members(tmp_path):
    _cycle(tmp_path, True)
    report = validate_history(tmp_path)
    issue = next(e for e in report.errors if e.code == "cycle")
    assert "b2" in issue.message and "c3" in issue.message
    assert set(report.order()) == {"a1", "d4"}


def test_missing_directory_and_empty_history(tmp_path):
    assert codes(validate_history(tmp_path / "nope")) == ["missing-directory"]
    assert codes(validate_history(tmp_path)) == ["no-revisions"]


# --- graph shapes ---------------------------------------------------------------------------

def test_merge_revision_is_valid_and_order_is_topological(tmp_path):
    chain(tmp_path, "a1")
    rev(tmp_path, "b2", "a1")
    rev(tmp_path, "c3", "a1")
    rev(tmp_path, "m4", ("b2", "c3"), upgrade="pass", downgrade="pass", name="00_merge.py")
    rev(tmp_path, "e5", "m4", depends_on="c3", name="000_first_file.py")
    report = validate_history(tmp_path)
    assert report.ok, report.errors
    assert report.heads == ["e5"] and report.bases == ["a1"]
    assert report.revisions["m4"].down_revisions == ("b2", "c3")
    order = report.order()
    assert sorted(order) == ["a1", "b2", "c3", "e5", "m4"]
    for rid, info in report.revisions.items():
        for parent in info.down_revisions + info.depends_on:
            assert order.index(parent) < order.index(rid)
    assert "missing-downgrade" not in rules(report)  # a merge has nothing to undo


def test_branch_labels_allow_two_heads(tmp_path):
    chain(tmp_path, "a1")
    rev(tmp_path, "b2", "a1", branch_labels=("billing",))
    rev(tmp_path, "c3", "a1", branch_labels=("clinic",))
    rev(tmp_path, "d4", "c3", depends_on="billing")  # depends_on may name a branch label
    report = validate_history(tmp_path)
    assert report.ok, report.errors
    assert sorted(report.heads) == ["b2", "d4"]
    assert report.order().index("b2") < report.order().index("d4")


def test_shared_branch_label_does_not_allow_two_heads(tmp_path):
    rev(tmp_path, "a1", None, branch_labels=("main",))
    rev(tmp_path, "b2", "a1")
    rev(tmp_path, "c3", "a1", branch_labels=("feature",))
    report = validate_history(tmp_path)
    assert [(e.code, e.revision) for e in report.errors] == [("multiple-heads", "b2")]


def test_annotated_metadata_and_revision_info(tmp_path):
    meta = 'revision: str = "a1"\ndown_revision: Union[str, None] = None\nbranch_labels: tuple = ("core",)'
    path = rev(tmp_path, "a1", meta="from typing import Union\n" + meta)
    report = validate_history(tmp_path)
    assert report.ok, report.errors
    info = report.revisions["a1"]
    assert (info.file, info.branch_labels, info.message, info.has_downgrade) == (path, ("core",), "revision a1", True)
    assert len(info.sha256) == 64


# --- findings: one failing and one passing upgrade() each -----------------------------------

NEW_TABLE = "op.create_table('visits', sa.Column('id', sa.Integer, primary_key=True))\n"

AUTOCOMMIT = "with op.get_context().autocommit_block():\n    "
FINDING_CASES = [
    ("drop-table", "op.drop_table('notifications')", NEW_TABLE),
    ("drop-column", "op.drop_column('pets', 'name')", "op.add_column('pets', sa.Column('nick', sa.String()))"),
    ("drop-column", "with op.batch_alter_table('pets') as batch_op:\n    batch_op.drop_column('name')",
     "with op.batch_alter_table('pets') as batch_op:\n    batch_op.add_column(sa.Column('nick', sa.String()))"),
    ("change-column-type", "op.alter_column('pets', 'weight', type_=sa.Numeric(6, 2))",
     "op.alter_column('pets', 'weight', comment='kg')"),
    ("rename-column", "op.alter_column('pets', 'nm', new_column_name='name')",
     "op.alter_column('pets', 'nm', server_default='x')"),
    ("set-not-null", "op.alter_column('pets', 'name', nullable=False)",
     NEW_TABLE + "op.alter_column('visits', 'id', nullable=False)"),
    ("rename-table", "op.rename_table('owners', 'clients')", NEW_TABLE),
    ("add-not-nullable-column", "op.add_column('pets', sa.Column('age', sa.Integer(), nullable=False))",
     "op.add_column('pets', sa.Column('age', sa.Integer(), nullable=False, server_default='0'))"),
    ("add-not-nullable-column",
     "with op.batch_alter_table('pets') as b:\n    b.add_column(sa.Column('age', sa.Integer(), nullable=False))",
     NEW_TABLE + "op.add_column('visits', sa.Column('age', sa.Integer(), nullable=False))"),
    ("non-concurrent-index", "op.create_index('ix_pets_owner', 'pets', ['owner_id'])",
     AUTOCOMMIT + "op.create_index('ix_pets_owner', 'pets', ['owner_id'], postgresql_concurrently=True)"),
    ("concurrently-in-transaction",
     "op.create_index('ix_pets_owner', 'pets', ['owner_id'], postgresql_concurrently=True)",
     AUTOCOMMIT + "op.create_index('ix_pets_owner', 'pets', ['owner_id'], postgresql_concurrently=True)"),
    ("concurrently-in-transaction", "op.drop_index('ix_pets_owner', postgresql_concurrently=True)",
     AUTOCOMMIT + "op.drop_index('ix_pets_owner', postgresql_concurrently=True)"),
    ("concurrently-in-transaction", "op.execute('CREATE INDEX CONCURRENTLY ix ON pets (owner_id)')",
     AUTOCOMMIT + "op.execute('CREATE INDEX CONCURRENTLY ix ON pets (owner_id)')"),
    ("concurrently-in-transaction", "op.execute('VACUUM pets')", "op.execute('ANALYZE pets')"),
    ("non-concurrent-index", "op.create_index(op.f('ix_pets_owner'), 'pets', ['owner_id'], unique=True)",
     NEW_TABLE + "op.create_index('ix_visits_id', 'visits', ['id'])"),
    ("raw-sql", "op.execute(\"UPDATE pets SET species = 'dog' WHERE species IS NULL\")", NEW_TABLE),
    ("raw-sql", "op.execute('UPDATE pets SET n = ' + str(1))", NEW_TABLE),
    ("destructive-sql", "op.execute('DROP TABLE notifications')", "op.execute('CREATE TABLE notes (id int)')"),
    ("destructive-sql", "op.execute(sa.text('TRUNCATE pets'))", "op.execute(sa.text('SELECT 1'))"),
    ("destructive-sql", "op.execute('DELETE FROM pets')", "op.execute('DELETE FROM pets WHERE id = 1')"),
    ("destructive-sql", "op.execute('ALTER TABLE pets ALTER COLUMN weight TYPE text')",
     "op.execute('ALTER TABLE pets ADD COLUMN note text')"),
]


@pytest.mark.parametrize("rule, bad, good", FINDING_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(FINDING_CASES)])
def test_finding_rules(tmp_path, rule, bad, good):
    rev(tmp_path, "a1", None, upgrade=bad, downgrade="op.drop_table('x')")
    found = [f for f in validate_history(tmp_path).findings if f.rule == rule]
    assert len(found) == 1, found
    f = found[0]
    line = 11 if bad.startswith("with") else 10  # upgrade() body starts on line 10
    assert (f.revision, f.file, f.line) == ("a1", str(tmp_path / "a1_rev.py"), line)
    assert f.message and f.operation and f.severity == "warning"
    (tmp_path / "a1_rev.py").unlink()
    rev(tmp_path, "a1", None, upgrade=good, downgrade="op.drop_table('x')")
    assert rule not in rules(validate_history(tmp_path))


def test_operation_strings_name_op_and_target(tmp_path):
    upgrade = """\
        op.drop_column('pets', 'name')
        op.drop_table('notifications')
        with op.batch_alter_table('appointments', schema='clinic') as batch_op:
            batch_op.drop_column('notes')
        op.execute('DROP TABLE IF EXISTS legacy; ALTER TABLE pets RENAME COLUMN nm TO name')
    """
    rev(tmp_path, "a1", None, upgrade=upgrade)
    ops = [f.operation for f in validate_history(tmp_path).findings]
    assert ops == ["drop_column pets.name", "drop_table notifications", "drop_column clinic.appointments.notes",
                   "drop_table legacy", "rename_column pets.nm"]


def test_destructive_sql_line_points_into_the_literal(tmp_path):
    upgrade = 'op.execute("""\n    UPDATE pets SET a = 1;\n    DELETE FROM pets;\n""")'
    rev(tmp_path, "a1", None, upgrade=upgrade)
    f = next(f for f in validate_history(tmp_path).findings if f.rule == "destructive-sql")
    assert (f.line, f.operation) == (12, "delete pets")


@pytest.mark.parametrize("downgrade, why", [
    ("pass", "empty"),
    ('"""nothing to do"""', "empty"),
    ("raise NotImplementedError()", "raises"),
    (None, "no downgrade"),
])
def test_missing_downgrade(tmp_path, downgrade, why):
    path = rev(tmp_path, "a1", None, downgrade=downgrade or "pass")
    if downgrade is None:
        path.write_text(path.read_text().split("def downgrade")[0])
    report = validate_history(tmp_path)
    f = next(f for f in report.findings if f.rule == "missing-downgrade")
    assert why in f.message and f.revision == "a1"
    assert report.revisions["a1"].has_downgrade is False


def test_real_downgrade_is_not_a_finding(tmp_path):
    chain(tmp_path, "a1")
    report = validate_history(tmp_path)
    assert "missing-downgrade" not in rules(report)
    assert report.revisions["a1"].has_downgrade


def test_revision_files_are_never_imported(tmp_path):
    rev(tmp_path, "a1", None, extra="\nimport app_that_does_not_exist\nraise SystemExit('imported!')")
    report = validate_history(tmp_path)
    assert report.ok and report.heads == ["a1"]


# --- pending and acknowledgements -----------------------------------------------------------

def _drop_history(d: Path, marker: str = "") -> None:
    chain(d, "a1")
    rev(d, "b2", "a1", upgrade="op.drop_column('pets', 'name')\nop.drop_table('notifications')",
        downgrade="op.create_table('notifications')", extra=f"\n{marker}\n" if marker else "")


def test_pending_destructive_findings_are_errors(tmp_path):
    _drop_history(tmp_path)
    report = validate_history(tmp_path, pending={"b2"})
    assert report.ok  # structural errors only
    assert [f.operation for f in report.blocking] == ["drop_column pets.name", "drop_table notifications"]
    assert {f.severity for f in report.blocking} == {"error"}
    assert not validate_history(tmp_path).blocking
    assert not validate_history(tmp_path, pending={"a1"}).blocking
    assert {f.severity for f in validate_history(tmp_path, pending=set()).findings} == {"warning"}


@pytest.mark.parametrize("marker, cli, still_blocking", [
    ("# vetai-ops: allow drop_column pets.name", (), ["drop_table notifications"]),
    ("#vetai-ops: allow   DROP_COLUMN  pets.name, drop_table notifications", (), []),
    ("# vetai-ops: allow drop_table", (), ["drop_column pets.name"]),
    ("# vetai-ops: allow drop-column", (), ["drop_table notifications"]),
    ("# vetai-ops: allow-destructive", (), []),
    ("# vetai-ops: allow drop_column pets.other", (), ["drop_column pets.name", "drop_table notifications"]),
    ("", ("drop_column pets.name",), ["drop_table notifications"]),
    ("", ("drop-table",), ["drop_column pets.name"]),
    ("", ("b2",), []),
    ("", ("a1",), ["drop_column pets.name", "drop_table notifications"]),
])
def test_acknowledgements(tmp_path, marker, cli, still_blocking):
    _drop_history(tmp_path, marker)
    report = validate_history(tmp_path, pending={"b2"}, acknowledged=set(cli))
    assert [f.operation for f in report.blocking] == still_blocking
    for f in report.findings:
        if f.destructive:
            assert f.acknowledged == (f.operation not in still_blocking)
            assert f.severity == ("error" if f.operation in still_blocking else "warning")


def test_marker_in_another_file_does_not_acknowledge(tmp_path):
    _drop_history(tmp_path)
    rev(tmp_path, "c3", "b2", extra="\n# vetai-ops: allow-destructive\n")
    assert len(validate_history(tmp_path, pending={"b2", "c3"}).blocking) == 2


# --- JSON shape ---------------------------------------------------------------------------

def test_to_json_shape(tmp_path):
    _drop_history(tmp_path)
    rev(tmp_path, "zz", "missing")
    data = validate_history(tmp_path, pending={"b2"}).to_json()
    json.dumps(data)
    assert data["revisions"] == 3 and isinstance(data["revisions"], int)
    assert sorted(data["heads"]) == ["b2", "zz"]
    assert {"code", "message", "revision", "file", "line"} <= set(data["errors"][0])
    keys = {"file", "revision", "rule", "message", "line", "operation", "severity", "acknowledged"}
    assert data["findings"] and all(keys <= set(f) for f in data["findings"])
    assert data["ok"] is False and len(data["blocking"]) == 2


def test_public_types():
    assert {"code", "message", "revision", "file", "line"} <= set(ValidationIssue.__dataclass_fields__)
    assert Finding("f.py", "a1", "drop-table", "m").destructive


# --- rendering + squawk on a synthetic Alembic project ----------------------------------

ENV_PY = '''
from alembic import context

config = context.config


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=None,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    raise RuntimeError("offline only")
'''

INI = """[alembic]
script_location = {location}
sqlalchemy.url = postgresql://

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)s %(message)s
"""


@pytest.fixture
def alembic_project(tmp_path):
    """alembic.ini + offline env.py + two revisions: create pets, then drop pets.name."""
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(ENV_PY)
    (tmp_path / "alembic.ini").write_text(INI.format(location="migrations"))  # relative on purpose
    rev(versions, "r1", None, upgrade="op.create_table('pets', sa.Column('id', sa.BigInteger(), primary_key=True),"
        " sa.Column('name', sa.Text()))")
    rev(versions, "r2", "r1", upgrade="op.drop_column('pets', 'name')",
        downgrade="op.add_column('pets', sa.Column('name', sa.Text()))")
    return tmp_path




def test_render_and_squawk_find_drop_column(alembic_project):
    ini = alembic_project / "alembic.ini"
    sql = render_sql(ini, None, "head")
    assert set(sql) == {"r1", "r2"}
    assert "DROP COLUMN name" in sql["r2"] and "CREATE TABLE pets" in sql["r1"]
    assert set(render_sql(ini, "r1", "r2")) == {"r2"}
    files = {"r2": "migrations/versions/r2_rev.py"}
    findings = lint_sql({"r2": sql["r2"]}, files)
    drop = [f for f in findings if f.rule == "squawk:ban-drop-column"]
    assert drop and drop[0].revision == "r2" and drop[0].file == files["r2"]
    assert drop[0].severity == "warning" and "DROP COLUMN" in drop[0].operation
    assert sql["r2"].splitlines()[drop[0].line - 1].strip() == drop[0].operation


def test_validate_history_render_lints_pending_only(alembic_project):
    versions = alembic_project / "migrations" / "versions"
    report = validate_history(versions, pending={"r2"}, render=True, alembic_ini=alembic_project / "alembic.ini",
                              acknowledged={"drop_column pets.name"})
    assert report.ok, report.errors
    assert set(report.sql) == {"r2"}
    squawk = [f for f in report.findings if f.rule.startswith("squawk:")]
    assert {f.revision for f in squawk} == {"r2"}
    assert "squawk:ban-drop-column" in {f.rule for f in squawk}
    assert not report.blocking


def test_render_failure_returns_nothing(alembic_project):
    (alembic_project / "migrations" / "env.py").write_text("raise ImportError('app not importable')\n")
    assert render_sql(alembic_project / "alembic.ini", None, "head") == {}
    versions = alembic_project / "migrations" / "versions"
    report = validate_history(versions, render=True, alembic_ini=alembic_project / "alembic.ini")
    assert report.ok and report.sql == {}


def test_lint_sql_without_squawk(monkeypatch, tmp_path):
    from vetai_ops.validate import lint

    # squawk neither next to the interpreter (where `pip install -e .` puts it) nor on PATH
    monkeypatch.setattr(lint, "find_tool", lambda name: None)
    findings = lint_sql({"r2": "ALTER TABLE pets DROP COLUMN name;"}, {"r2": "r2.py"})
    assert [(f.rule, f.severity) for f in findings] == [("squawk-missing", "warning")]
    assert lint_sql({}, {}) == []


# --- the benchmark's generated history is a valid realistic one ----------------------------

def test_bench_history_validates(tmp_path):
    path = Path(__file__).resolve().parents[1] / "bench" / "validate_bench.py"
    spec = importlib.util.spec_from_file_location("validate_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ids = bench.generate_history(tmp_path / "versions", 40)
    report = validate_history(tmp_path / "versions")
    assert report.ok and report.heads == [ids[-1]] and report.order() == ids
    assert len(report.revisions) == 40


def test_heads_and_order_agree_with_alembic(alembic_project):
    """The graph read with ast is the one Alembic's own loader (which imports the files) builds."""
    from alembic.script import ScriptDirectory

    from vetai_ops.database.migrations import alembic_config

    versions = alembic_project / "migrations" / "versions"
    rev(versions, "b3", "r1", branch_labels=("billing",))
    rev(versions, "c4", "r2", branch_labels=("clinic",), depends_on="billing")
    report = validate_history(versions, render=True, alembic_ini=alembic_project / "alembic.ini")
    assert report.ok, report.errors
    script = ScriptDirectory.from_config(alembic_config(ini=alembic_project / "alembic.ini"))
    assert sorted(script.get_heads()) == sorted(report.heads) == ["b3", "c4"]
    assert [sc.revision for sc in script.walk_revisions()][::-1] == report.order()
