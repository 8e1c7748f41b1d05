"""Test bed: real PostgreSQL clusters, real sshd on loopback, a real S3 endpoint.

Fixtures live in fixtures_*.py beside this file and are re-exported here. The skip
policy (``VETAI_OPS_REQUIRE_BED``) lives in bed.py; its hooks, imported below, enforce
it for every skip, including ones that do not go through ``require_or_skip``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("VETAI_OPS_HOME", str(ROOT))

# the skip policy: its hooks live in bed.py (a plugin a test can load on its own)
from bed import pytest_make_collect_report, pytest_report_header, pytest_runtest_makereport  # noqa: E402,F401
from fixtures_pg import *  # noqa: E402,F401,F403
from fixtures_remote import *  # noqa: E402,F401,F403
from fixtures_http import *  # noqa: E402,F401,F403

