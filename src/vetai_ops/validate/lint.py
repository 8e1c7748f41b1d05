"""Render revisions to SQL (Alembic offline mode) and lint that SQL with squawk.

Rendering imports the revisions through the project's env.py, so it is used only for
histories that load (this project's own). Every failure there means "no SQL", never an
error: the AST checks in :mod:`.rules` still run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..database.migrations import alembic_config
from ..paths import find_tool
from .model import Finding

SQUAWK_TIMEOUT = 120  # seconds, for one squawk run over all files
_RUNNING = re.compile(r"^-- Running upgrade (.*?) -> (\S+)\s*$", re.MULTILINE)
# Alembic's per-revision transaction boundaries; squawk is told each file runs in a transaction
_TX_HEAD = re.compile(r"\A(?:\s*BEGIN;)+\s*")
_TX_TAIL = re.compile(r"\s*(?:(?:COMMIT|BEGIN);\s*)+\Z")


@contextlib.contextmanager
def _logging_preserved() -> Iterator[None]:
    """env.py usually calls ``logging.config.fileConfig``; undo that for our caller."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    disabled = {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items()
                if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lg in logging.Logger.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.disabled = disabled.get(name, False)


def render_sql(alembic_ini: Path, from_rev: str | None, to_rev: str) -> dict[str, str]:
    """SQL of each revision between ``from_rev`` (exclusive; None = base) and ``to_rev``.

    Runs ``alembic upgrade from:to --sql`` (offline mode) once and splits the output on
    Alembic's ``-- Running upgrade a -> b`` comments. Returns ``{}`` on any failure.
    """
    try:
        from alembic import command

        cfg = alembic_config(ini=Path(alembic_ini))
        cfg.output_buffer = buffer = io.StringIO()
        with _logging_preserved(), contextlib.redirect_stdout(io.StringIO()):
            command.upgrade(cfg, f"{from_rev}:{to_rev}" if from_rev else to_rev, sql=True)
    except (Exception, SystemExit):  # a history that does not render is not a gate error
        return {}
    return split_rendered(buffer.getvalue())


def split_rendered(text: str) -> dict[str, str]:
    """Cut Alembic's offline output into ``{revision: sql}`` on its ``Running upgrade`` comments.

    The BEGIN/COMMIT around each revision are dropped (Alembic adds them at run time).
    """
    marks = list(_RUNNING.finditer(text))
    out = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out[mark.group(2)] = _TX_TAIL.sub("", _TX_HEAD.sub("", text[mark.end():end].strip())) + "\n"
    return out


def lint_sql(sql_by_rev: dict[str, str], files: dict[str, str]) -> list[Finding]:
    """Lint each revision's SQL with squawk (one run); violations become warning Findings.

    Rule ids are ``squawk:<squawk rule>``; ``line`` is the 1-based line in the rendered SQL
    and ``operation`` the start of the offending statement. ``files`` maps revision ->
    revision file for the findings. squawk is looked up next to the running interpreter (the
    ``squawk-cli`` this package installs), then on PATH; without it: one ``squawk-missing``
    finding (a refusal on protected envs, see the validate step).
    """
    sql_by_rev = {rid: sql for rid, sql in sql_by_rev.items() if sql.strip()}
    if not sql_by_rev:
        return []
    squawk = find_tool("squawk")
    if squawk is None:
        return [Finding("", None, "squawk-missing", "squawk is not installed (pip install squawk-cli); "
                        "rendered SQL was not linted", operation="squawk")]
    with tempfile.TemporaryDirectory(prefix="vetai-squawk-") as tmp:
        by_name: dict[str, str] = {}
        for i, (rid, sql) in enumerate(sql_by_rev.items()):
            name = f"{i:04d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', rid)}.sql"
            Path(tmp, name).write_text(sql, encoding="utf-8")
            by_name[name] = rid
        violations = _run_squawk(squawk, list(by_name), tmp)
    if isinstance(violations, str):
        return [Finding("", None, "squawk-failed", f"squawk could not lint the rendered SQL: {violations}",
                        operation="squawk")]
    return [_to_finding(v, by_name, sql_by_rev, files) for v in violations]


def _run_squawk(squawk: str, names: list[str], cwd: str) -> list[dict] | str:
    """squawk's JSON violations, or a short reason why there are none."""
    try:
        # Alembic runs each PostgreSQL revision in a transaction: tell squawk so
        proc = subprocess.run([squawk, "--reporter", "json", "--assume-in-transaction", *names], cwd=cwd,
                              capture_output=True, text=True, timeout=SQUAWK_TIMEOUT)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return type(exc).__name__
    if proc.returncode not in (0, 1):  # 1 = "found something"
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return tail[0][:200]
    try:
        violations = json.loads(proc.stdout or "[]")
    except ValueError:
        return "unreadable JSON output"
    return violations if isinstance(violations, list) else "unexpected JSON output"


def _to_finding(v: dict, by_name: dict[str, str], sql_by_rev: dict[str, str], files: dict[str, str]) -> Finding:
    rid = by_name.get(Path(str(v.get("file", ""))).name)
    line = int(v.get("line", 0)) + 1  # squawk counts lines from 0
    lines = sql_by_rev.get(rid, "").splitlines()
    statement = lines[line - 1].strip()[:160] if 0 < line <= len(lines) else ""
    help_ = f" ({v['help']})" if v.get("help") else ""
    return Finding(files.get(rid, ""), rid, f"squawk:{v.get('rule_name', 'unknown')}",
                   f"{v.get('message', '')}{help_} — rendered SQL line {line}", line, operation=statement)
