"""Test bed: real PostgreSQL clusters, real sshd on loopback, a real S3 endpoint.

Fixtures live in fixtures_*.py beside this file and are re-exported here. The skip
policy (``VETAI_OPS_REQUIRE_BED``) lives in bed.py; the hooks below enforce it for
every skip, including ones that do not go through ``require_or_skip``.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("VETAI_OPS_HOME", str(ROOT))

from bed import SWITCH, bed_required  # noqa: E402
from fixtures_pg import *  # noqa: E402,F401,F403
from fixtures_remote import *  # noqa: E402,F401,F403
from fixtures_http import *  # noqa: E402,F401,F403


def pytest_report_header(config):
    if bed_required():
        return f"{SWITCH}=1: a skipped test is a failure (the whole bed must be present)"
    return f"{SWITCH} unset: tests whose part of the bed is missing are skipped (CI sets it)"


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _as_failure(rep, what: str) -> None:
    reason = _skip_reason(rep.longrepr).removeprefix("Skipped: ")
    rep.outcome = "failed"
    rep.longrepr = f"{what} skipped, and {SWITCH}=1 makes every skip a failure: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if bed_required() and rep.skipped and not hasattr(rep, "wasxfail"):
        _as_failure(rep, item.nodeid)
    return rep


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    rep = yield
    if bed_required() and rep.skipped:
        _as_failure(rep, collector.nodeid or "collection")
    return rep
