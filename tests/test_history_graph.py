"""One revision graph (issue 13.4): the history is Alembic's RevisionMap over the revision
files read with ``ast``; a revision file is imported only when Alembic must run its code
(migrate, render the pending SQL, downgrade). Real parts only: the sandbox cluster, the
CLI in a subprocess, revision files that say when they are imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vetai_ops.database import migrations as mig
from vetai_ops.database.applied import file_hashes
from vetai_ops.errors import GateRefused
from vetai_ops.validate import validate_history

ROOT = Path(__file__).resolve().parents[1]
MARKER_VAR = "VETAI_OPS_TEST_IMPORT_MARKER"
# appended to every revision file: importing it (Alembic's loader, or anyone) leaves its name
TELLTALE = f"""

import os as _os
if _os.environ.get({MARKER_VAR!r}):
    with open(_os.environ[{MARKER_VAR!r}], "a") as _f:
        _f.write(__file__ + "\\n")
"""


def cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


def telltale(versions: Path) -> None:
    for f in sorted(versions.glob("*.py")):
        f.write_text(f.read_text() + TELLTALE)


def imported(marker: Path) -> list[str]:
    return sorted({Path(p).name for p in marker.read_text().split()}) if marker.exists() else []


def test_nothing_pending_imports_no_revision_file(local_env, migrations_copy, tmp_path):
    versions = migrations_copy.path / "versions"
    telltale(versions)
    local_env.run("deploy", yes=True)  # the first deploy migrates: Alembic runs every revision
    marker = tmp_path / "imported.txt"
    env = {MARKER_VAR: str(marker)}

    r = cli("deploy", "--env=local", "--yes", "--json", env_extra=env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["outcome"] == "success" and rep["to_rev"] == mig.head() and not rep.get("revisions")
    for args in (("plan", "--env=local", "--json"), ("validate", "--env=local", "--json"),
                 ("status", "--env=local", "--json"), ("migrations.history", "--env=local", "--json")):
        r = cli(*args, env_extra=env)
        assert r.returncode == 0, (args, r.stderr)
    assert imported(marker) == []

    # the telltale works: a pending revision is imported, to render its SQL and to run it
    added = migrations_copy.add("9001", mig.head(), 'op.create_table("promo_codes", sa.Column("code", sa.Text))',
                                'op.drop_table("promo_codes")')
    added.write_text(added.read_text() + TELLTALE)
    r = cli("deploy", "--env=local", "--yes", "--json", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert [x["revision"] for x in json.loads(r.stdout)["report"]["revisions"]] == ["9001"]
    assert "9001_planted.py" in imported(marker)
    assert local_env.psql("select sha256 from vetai_ops_applied where revision = '9001'") == \
        file_hashes()["9001"][1]


def _rev(d: Path, rid: str, down, extra: str = "") -> Path:
    p = d / f"{rid}_rev.py"
    p.write_text(f'"""revision {rid}"""\nfrom alembic import op\n\nrevision = {rid!r}\ndown_revision = {down!r}\n'
                 f"{extra}\n\ndef upgrade():\n    op.execute('select 1')\n\n\ndef downgrade():\n    pass\n"
                 + TELLTALE)
    return p


@pytest.mark.parametrize("shape", ["cycle", "two heads", "dependency cycle"])
def test_a_broken_graph_names_file_and_line_without_importing(tmp_path, monkeypatch, shape):
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    monkeypatch.setenv("VETAI_OPS_MIGRATIONS", str(versions.parent))
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv(MARKER_VAR, str(marker))
    _rev(versions, "a1", None)
    if shape == "cycle":  # the cycle's first member (sorted) is named at its down_revision line
        offender, _, _ = _rev(versions, "b2", "c3"), _rev(versions, "c3", "b2"), _rev(versions, "d4", "a1")
        code, line, placed = "cycle", 5, ["a1", "d4"]
    elif shape == "two heads":  # each head at its `revision` line
        _, offender = _rev(versions, "b2", "a1"), _rev(versions, "c3", "a1")
        code, line, placed = "multiple-heads", 4, ["a1", "b2", "c3"]
    else:  # a cycle through depends_on: named at the depends_on line
        offender, _ = _rev(versions, "b2", "a1", "depends_on = 'c3'"), _rev(versions, "c3", "a1", "depends_on = 'b2'")
        code, line, placed = "cycle", 6, ["a1"]

    report = validate_history(versions)
    issue = next(e for e in report.errors if e.code == code and e.file == str(offender))
    assert issue.line == line, report.errors
    assert offender.read_text().splitlines()[line - 1].startswith(("down_revision", "revision", "depends_on"))
    assert sorted(report.order()) == placed
    if code == "cycle":
        assert "b2 -> c3 -> b2" in issue.message and "b2_rev.py, c3_rev.py" in issue.message

    # the engine's view of the same history: refused (exit 2) naming the file and line
    with pytest.raises(GateRefused) as ei:
        mig.head()
    assert f"{offender}:{line}" in ei.value.message and ei.value.exit_code == 2
    assert file_hashes()["a1"][0] == "a1_rev.py"  # the bookkeeping still reads the files
    assert imported(marker) == []


def test_the_memo_follows_the_bytes(tmp_path, monkeypatch):
    """Parsed once per content: an unchanged history is the same graph, an edited file
    (same name, same size) a new one; what migrate compares is the bytes now on disk."""
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    monkeypatch.setenv("VETAI_OPS_MIGRATIONS", str(versions.parent))
    _rev(versions, "a1", None)
    b2 = _rev(versions, "b2", "a1")
    first = mig.history()
    assert mig.history() is first and mig.chain(None, "b2") == ["a1", "b2"] and mig.known("b2")
    sha = file_hashes()["b2"][1]
    st = b2.stat()
    b2.write_text(b2.read_text().replace("select 1", "select 2"))
    os.utime(b2, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only the bytes differ
    assert mig.history() is not first and file_hashes()["b2"][1] != sha
    assert mig.head() == "b2" and not mig.known("zz99") and mig.is_ancestor("a1", "b2")
