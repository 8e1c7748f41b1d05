"""The static pre-deploy gate over an Alembic versions directory (the validate step: README "How a deploy works", step 2).

Works on any project's history: revision files are parsed with ``ast`` and never imported.
Only ``render=True`` (this project's own history) goes through Alembic, in offline mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .ack import file_acknowledgements, is_acknowledged
from .graph import load
from .lint import lint_sql, render_sql
from .model import Finding, Report, ValidationIssue
from .parse import RevisionFile
from .rules import scan_revision
from .sqlcheck import ParseError, analyse_sql


def validate_history(
    versions_dir: Path,
    *,
    pending: set[str] | None = None,
    acknowledged: Iterable[str] = frozenset(),
    render: bool = False,
    alembic_ini: Path | None = None,
) -> Report:
    """Validate every revision file in ``versions_dir`` and return a :class:`Report`.

    ``pending``: revisions a deploy would apply; their destructive findings that are not
    acknowledged become severity "error" and appear in ``report.blocking``. ``None`` means
    "no deploy in view": every finding is a warning.
    ``acknowledged``: command-line acknowledgements (operation strings such as
    ``"drop_column pets.name"``, operation kinds, rule ids or revision ids; see
    :mod:`vetai_ops.validate.ack`).
    ``render`` with ``alembic_ini``: render the pending revisions (all when ``pending`` is
    None) to SQL in Alembic offline mode and lint it with squawk. This imports the
    revisions through the project's env.py, so use it only for histories that load.
    """
    versions_dir = Path(versions_dir)
    report = Report(versions_dir=versions_dir)
    if not versions_dir.is_dir():
        report.errors.append(ValidationIssue("missing-directory", f"versions directory {versions_dir} does not exist",
                                             None, str(versions_dir)))
        return report
    graph = load(versions_dir)  # Alembic's RevisionMap over the files read with ast, memoized
    files = graph.files
    report.errors.extend(graph.errors)
    if not files and not report.errors:
        report.errors.append(ValidationIssue("no-revisions", f"no revision files in {versions_dir}",
                                             None, str(versions_dir)))
    report.heads, report.bases, report._order = list(graph.heads), list(graph.bases), list(graph.order)
    placed = set(graph.order)
    for rid in graph.order + [r for r in files if r not in placed]:
        findings, has_downgrade = scan_revision(files[rid])
        report.revisions[rid] = files[rid].info(has_downgrade)
        report.findings.extend(findings)
    if render and alembic_ini is not None and report.ok:
        _render_and_lint(report, Path(alembic_ini), pending)
    _judge(report.findings, files, pending, acknowledged)
    return report


def _render_and_lint(report: Report, alembic_ini: Path, pending: set[str] | None) -> None:
    """Offline SQL for the wanted revisions, linted by squawk."""
    wanted = set(report.revisions) if pending is None else set(pending) & set(report.revisions)
    if not wanted:
        return
    # render only from just below the first wanted revision: an old revision that cannot be
    # rendered offline must not switch off the lint of the pending ones
    order = report.order()
    first = next(rid for rid in order if rid in wanted)
    parents = report.revisions[first].down_revisions
    start = parents[0] if pending is not None and len(parents) == 1 else None
    rendered = render_sql(alembic_ini, start, "heads")
    report.sql = {rid: rendered[rid] for rid in order if rid in wanted and rid in rendered}
    for rid in sorted(wanted - set(report.sql)):
        report.findings.append(Finding(
            str(report.revisions[rid].file), rid, "render-failed",
            "Alembic offline mode could not render this revision's SQL: squawk lint and the orphan-row "
            "check did not see it; review it by hand (`alembic upgrade <prev>:<rev> --sql`)"))
    report.findings.extend(lint_sql(report.sql, {rid: str(report.revisions[rid].file) for rid in report.sql}))
    report.findings.extend(_destructive_in_sql(report))


# data-losing kinds: what the AST rules would block had they seen the call (drop_index loses no data)
_SQL_DESTRUCTIVE_KINDS = ("drop_table", "drop_column", "change_column_type", "rename_column", "rename_table",
                          "truncate", "delete")


def _destructive_in_sql(report: Report) -> list[Finding]:
    """Destructive statements in the rendered SQL that the AST walk did not see (operations
    inside helper functions, loops, other modules): the SQL that will run is what counts."""
    seen = {(f.revision, f.operation) for f in report.findings if f.operation}
    out = []
    for rid, sql in report.sql.items():
        try:
            stmts = analyse_sql(sql)
        except ParseError:
            continue
        for st in stmts:
            for op in st.destructive:
                if op.startswith(_SQL_DESTRUCTIVE_KINDS) and (rid, op) not in seen:
                    seen.add((rid, op))
                    out.append(Finding(str(report.revisions[rid].file), rid, "destructive-sql",
                                       f"the rendered SQL does {op}: {st.text[:120]}", None, operation=op))
    return out


def _judge(findings: list[Finding], files: dict[str, RevisionFile], pending: set[str] | None,
           acknowledged: Iterable[str]) -> None:
    """Set ``acknowledged`` and ``severity`` on every finding."""
    cli = frozenset(acknowledged)
    marks = {rid: file_acknowledgements(rf.text) for rid, rf in files.items()}
    for f in findings:
        f.acknowledged = is_acknowledged(f, marks.get(f.revision or "", ())) or \
            is_acknowledged(f, cli, by_revision=True)
        blocks = pending is not None and f.revision in pending and f.blocks_when_pending and not f.acknowledged
        f.severity = "error" if blocks else "warning"
