"""The test bed's skip policy, shared by every fixture and test.

A missing part of the bed (sshd, moto, a tmpfs mount, a tool) may skip a test on a
developer's machine, but never on CI: with ``VETAI_OPS_REQUIRE_BED=1`` (set by
``.ci/run`` and, by default, by ``scripts/test.sh``) every skip is a failure, so a
suite cannot pass by skipping what the machine happens to lack.

Use :func:`require_or_skip` instead of ``pytest.skip`` in fixtures and tests; the
conftest hook also turns any other skip (``importorskip``, ``skipif``, a plain
``pytest.skip``) into a failure under the switch, so a skip added later cannot slip by.
"""

from __future__ import annotations

import os

import pytest

SWITCH = "VETAI_OPS_REQUIRE_BED"


def bed_required() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() not in ("", "0", "false", "no", "off")


def require_or_skip(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail under ``VETAI_OPS_REQUIRE_BED=1``."""
    if bed_required():
        pytest.fail(f"the test bed is incomplete ({SWITCH}=1 turns this skip into a failure): {reason}",
                    pytrace=False)
    pytest.skip(reason)


def import_or_skip(module: str, reason: str):
    """``pytest.importorskip`` under the same policy."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        require_or_skip(f"{reason} ({e})")


# ---------------------------------------------------------------- the hooks (re-exported by conftest.py)


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
