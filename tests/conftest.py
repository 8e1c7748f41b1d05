"""Test bed: real PostgreSQL clusters, real sshd on loopback, a real S3 endpoint.

Fixtures live in fixtures_*.py beside this file and are re-exported here.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("VETAI_OPS_HOME", str(ROOT))

from fixtures_pg import *  # noqa: E402,F401,F403
from fixtures_remote import *  # noqa: E402,F401,F403
from fixtures_http import *  # noqa: E402,F401,F403
