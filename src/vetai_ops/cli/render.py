"""Rendering for people (rich, colour only on a terminal) and for scripts (--json)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..events import Event
from ..plan import DeployPlan, Plan, RollbackPlan, RunPlan
from ..units import human_bytes

def _width(stream) -> int | None:
    """Off a terminal (CI logs, `| tee`), rich assumes 80 columns and truncates table cells
    such as backup ids; give tables room unless COLUMNS says otherwise."""
    return None if stream.isatty() or os.environ.get("COLUMNS") else 160


out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))

def esc(v: Any) -> str:
    """Dynamic text (names, messages, an app's HTTP reason phrase) inside a markup string:
    rich must print it as it is, never read "[/]" or "[bold]" in it as markup."""
    return escape("" if v is None else str(v))


ICONS = {"step_finished": "[green]✔[/]", "step_failed": "[red]✘[/]", "step_skipped": "[dim]–[/]"}


class ConsoleSink:
    """Ticks steps as they run (with durations) and shows transfer progress."""

    def __init__(self, console: Console = err, verbose: bool = False):
        self.c = console
        self.verbose = verbose
        self._progress: Progress | None = None
        self._task = None
        self._last_plain = 0.0

    def _stop_progress(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def emit(self, e: Event) -> None:
        k = e.kind
        if k == "progress":
            self._on_progress(e)
            return
        self._stop_progress()
        if k == "run_started":
            self.c.print(f"[bold]{esc(e.message)}[/]  [dim]run {esc(e.data.get('run_id'))}[/]")
        elif k == "step_started":
            if self.verbose:
                self.c.print(f"  [dim]… {esc(e.step)}[/]")
        elif k in ICONS:
            dur = e.data.get("duration_s")
            d = f" [dim]{dur:.2f}s[/]" if isinstance(dur, (int, float)) else ""
            msg = f"  {esc(e.message)}" if e.message else ""
            self.c.print(f"{ICONS[k]} {esc(e.step)}{d}{msg}")
        elif k == "warning":
            self.c.print(f"[yellow]! {esc(e.message)}[/]")
        elif k == "info":
            self.c.print(f"  [dim]{esc(e.message)}[/]")
        elif k == "revision_applied":
            self.c.print(f"    [cyan]↑ {esc(e.message)}[/]")
        elif k == "plan":
            render_plan(Plan.from_json(e.data), self.c)
        elif k == "rehearsal":
            self.c.print(f"  [green]rehearsed[/] {len(e.data.get('revisions') or [])} revision(s) on a copy of "
                         f"{esc(e.data.get('backup_id'))} in {e.data.get('total_s') or 0:.1f}s; the copy was dropped")
        elif k == "run_finished":
            colour = "green" if e.data.get("outcome") in ("success", "stopped") else "red"
            self.c.print(f"[{colour}]{esc(e.message)}[/] in {e.data.get('duration_s', 0):.1f}s")

    def _on_progress(self, e: Event) -> None:
        done, total = e.data.get("done", 0), e.data.get("total")
        if not self.c.is_terminal:
            now = time.monotonic()
            if now - self._last_plain > 5:
                self._last_plain = now
                self.c.print(f"  {e.step}: {human_bytes(done)}" + (f" of {human_bytes(total)}" if total else ""),
                             markup=False)
            return
        if self._progress is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

            self._progress = Progress(
                TextColumn("  {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn(), console=self.c, transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(esc(e.step or "transfer"), total=total)
        self._progress.update(self._task, completed=done, total=total)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=Text(title), title_justify="left", show_header=any(columns))
    for c in columns:
        t.add_column(Text(c))
    for r in rows:  # Text cells: a value is shown as it is, never read as markup
        t.add_row(*[Text("" if v is None else str(v)) for v in r])
    out.print(t)


def plan_sql(pending: list[str], sql: dict[str, str], c: Console = out) -> None:
    """The SQL each pending revision will run (Alembic offline rendering), in order."""
    for rev in pending:
        c.print(f"[bold]-- {esc(rev)}[/]")
        text = (sql.get(rev) or "").strip()
        if text:
            from rich.syntax import Syntax  # lazy: pygments, only for `invoke plan`

            # Syntax, never print(text): rich would read "[a-z0-9]" in a CHECK as markup; off a
            # terminal it renders the same text without colours
            c.print(Syntax(text, "sql", theme="ansi_dark", word_wrap=True))
        else:
            c.print("-- (no SQL rendered for this revision; `invoke validate --json` says why)")
    if not pending:
        c.print("-- nothing pending")


def impact_line(imp: dict) -> str:
    """'ALTER TABLE pets ... — ACCESS EXCLUSIVE, rewrites 1.2 MiB' from an impact's JSON."""
    from ..validate.locks import Impact

    fields = {k: imp.get(k) for k in ("revision", "statement", "table", "schema", "lock", "effect", "reason",
                                      "size_bytes", "acknowledged")}
    line = Impact(**fields).line()
    return line + (" (acknowledged)" if imp.get("acknowledged") else "")


def _secs(v) -> str:
    if v is None:
        return "unknown (no history)"
    return f"{v:.1f}s" if v < 120 else f"{v / 60:.1f} min"


def estimate_lines(p: DeployPlan, c: Console = out) -> None:
    """Expected times (store/estimates.py): from this env's history, scaled to the size now."""
    est = p.estimates
    if not est:
        return
    c.print(f"  estimates: backup {_secs(est.get('backup_s'))}, "
            + (f"rehearsal {_secs(est.get('rehearsal_s'))}, " if p.rehearsal.get("will") else "")
            + f"migrate {_secs(est.get('migrate_s'))}, rollback if it fails {_secs(est.get('rollback_s'))}"
            + (f" (max_rollback_s {p.max_rollback_s:g}s)" if p.max_rollback_s else ""), markup=False)


def rehearsal_lines(p: DeployPlan, c: Console = out) -> None:
    """What the rehearsal measured: shown before a protected env's confirmation."""
    res = p.rehearsal.get("result") or {}
    c.print(f"  rehearsed on a copy of backup {res.get('backup_id')} in {_secs(res.get('total_s'))} "
            f"(restore {_secs(res.get('restore_s'))}, migrate {_secs(res.get('migrate_s'))}):", markup=False)
    for r in res.get("revisions") or []:
        c.print(f"    {r.get('revision')}  {r.get('duration_s', 0):.2f}s", markup=False)
    estimate_lines(p, c)


def render_plan(p: Plan, c: Console = out) -> None:
    """A plan (a step's, through its ``plan`` event): where, what, and what it sets aside."""
    if not isinstance(p, RunPlan):
        return
    c.print(f"[bold]plan[/] env [bold]{esc(p.env)}[/]{' (protected)' if p.protected else ''}: "
            f"db host {esc(p.db_host)}, app hosts {esc(', '.join(p.app_hosts) or '-')}, "
            f"database {esc(p.database)}")
    if isinstance(p, RollbackPlan):
        _rollback_lines(p, c)
        return
    if not isinstance(p, DeployPlan):
        c.print(f"  revision {p.from_rev or 'base'} -> {p.to_rev or 'base'}; backup to {p.backup_store}", markup=False)
        return
    c.print(f"  revision {p.from_rev or 'base'} -> {p.to_rev or 'base'}; backup to {p.backup_store}"
            + (f"; estimated restore {p.estimated_restore_s}s if it fails" if p.estimated_restore_s else ""),
            markup=False)
    if p.rehearsal and p.pending:
        c.print(("  rehearsal on a copy of the backup first: " if p.rehearsal.get("will") else "  no rehearsal: ")
                + str(p.rehearsal.get("why")), markup=False)
    estimate_lines(p, c)
    for rev in p.pending:
        _revision_lines(p, rev, c)
    accepting = set(p.accepting_drift)
    for d in p.drift:
        ident = f"{d['kind']}:{d['name']}"
        tag = "accepting now" if ident in accepting else ("accepted" if d.get("accepted") else "drift")
        c.print(f"  [yellow]{tag}[/] ", end="")
        c.print(f"{d['kind']} {d['name']}: {d['detail']}", markup=False)  # catalog text is not markup
    if p.first_deploy_seeds:
        c.print("  first deploy: demo data will be seeded")


def _rollback_lines(p: RollbackPlan, c: Console) -> None:
    c.print(f"  [bold]restore backup {esc(p.restore)}[/] ({human_bytes(p.restore_size)}) from {esc(p.backup_store)}"
            + (" [yellow bold]NOT SIGNED (--trust-unsigned)[/]" if p.restore_signed is False else ""))
    sel = p.selection
    if sel.get("text"):
        c.print("  --to=" + esc(sel.get("asked")) + ": " + esc(sel["text"]))
    for ev in sel.get("undid") or []:
        c.print("  [bold]undoes " + esc(ev.get("text")) + "[/]")
    c.print(f"  revision {p.from_rev or 'base'} -> {p.to_rev or 'base'}; the live database is kept as {p.kept_as}",
            markup=False)
    from ..database.writestats import describe

    w = p.writes_since_backup
    line = ("no writes since that backup (PostgreSQL statistics)" if w == {} else
            f"WRITES SINCE THAT BACKUP, discarded by this rollback: {describe(w)}"
            " (inserted +, updated ~, deleted -; PostgreSQL statistics, may lag a few seconds)")
    notes = "; ".join(p.writes_notes)
    c.print(f"  [{'dim' if w == {} else 'yellow bold'}]{esc(line + (f'; {notes}' if notes else ''))}[/]")


def _revision_lines(p: DeployPlan, rev: str, c: Console) -> None:
    """One pending revision: its findings, the locks it takes, what its probes found."""
    mine = [f for f in p.findings if f.get("revision") == rev]
    by_rule: dict[str, int] = {}
    for f in mine:
        by_rule[f.get("rule")] = by_rule.get(f.get("rule"), 0) + 1
    summary = ", ".join(f"{r} x{n}" if n > 1 else r for r, n in sorted(by_rule.items()))
    took = (p.migrate_by_revision or {}).get(rev)
    when = f"  [dim]~{took['duration_s']:.2f}s ({esc(took.get('source'))})[/]" if took else ""
    c.print(f"  [cyan]+ {esc(rev)}[/]" + (f"  [dim]{esc(summary)}[/]" if summary else "") + when)
    for f in mine:
        if f.get("acknowledged") or f.get("severity") == "error":
            tag = "acknowledged" if f.get("acknowledged") else "blocking"
            c.print(f"      [yellow]{tag}[/] {esc(f.get('operation') or f.get('rule'))} "
                    f"({esc(f.get('file'))}:{esc(f.get('line'))})")
    for imp in p.impacts:
        if imp.get("revision") == rev:
            c.print(f"      [dim]lock[/] {esc(impact_line(imp))}")
    for pr in p.probes:
        if pr.get("revision") == rev:
            from ..database.probes import probe_notes  # lazy: pglast, only when a plan has probes

            for note in probe_notes(pr):
                c.print(f"      [dim]probe[/] {esc(note)}")
