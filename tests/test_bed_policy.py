"""The skip policy itself (tests/bed.py): under VETAI_OPS_REQUIRE_BED=1 (.ci/run, and
scripts/test.sh by default) every kind of skip fails the run; without it they skip.
Runs a small suite in a child pytest with only the bed plugin loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PROBE = '''
import pytest
from bed import require_or_skip

def test_missing_sshd():
    require_or_skip("/usr/sbin/sshd not found")

def test_plain_skip():
    pytest.skip("no tmpfs")

@pytest.mark.skipif(True, reason="condition")
def test_skipif():
    pass

@pytest.fixture
def moto():
    pytest.importorskip("no_such_module_vetai")

def test_importorskip_in_a_fixture(moto):
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail_is_not_a_skip():
    assert False

def test_passes():
    pass
'''


def run_probe(tmp_path: Path, switch: str | None):
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "VETAI_OPS_REQUIRE_BED"}
    if switch is not None:
        env["VETAI_OPS_REQUIRE_BED"] = switch
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "bed", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-rA", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("switch", [None, "0"])
def test_without_the_switch_missing_parts_skip(tmp_path, switch):
    r = run_probe(tmp_path, switch)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 4 skipped, 1 xfailed" in r.stdout, r.stdout
    assert "VETAI_OPS_REQUIRE_BED unset" in r.stdout


def test_under_the_switch_every_skip_fails(tmp_path):
    r = run_probe(tmp_path, "1")
    assert r.returncode == 1, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert " skipped" not in out.split("short test summary info")[-1].replace(" skipped, and", "")
    for name in ("test_missing_sshd", "test_plain_skip", "test_skipif", "test_importorskip_in_a_fixture"):
        assert f"test_probe.py::{name}" in out and ("FAILED" in out or "ERROR" in out), out
    assert "/usr/sbin/sshd not found" in out and "no tmpfs" in out and "condition" in out
    assert "1 passed" in out and "1 xfailed" in out  # an expected failure is not a skip
    assert "a skipped test is a failure" in out  # the header says the run requires the bed


def test_ci_and_the_readme_command_set_the_switch():
    root = TESTS.parent
    ci = (root / ".ci" / "run").read_text()
    assert "export VETAI_OPS_REQUIRE_BED=1" in ci and "./scripts/test.sh" in ci
    script = (root / "scripts" / "test.sh").read_text()
    assert 'VETAI_OPS_REQUIRE_BED="${VETAI_OPS_REQUIRE_BED:-1}"' in script
    assert "--durations=25" in script and "-n " in script
