"""Where the project lives (alembic.ini, migrations/, playbooks/, backups/, logs/)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import sysconfig
from pathlib import Path


def project_root() -> Path:
    """VETAI_OPS_HOME, else the nearest parent of cwd holding playbooks/inventory.yml and
    alembic.ini, else the checkout this package was installed from (editable install)."""
    env = os.environ.get("VETAI_OPS_HOME")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "alembic.ini").is_file() and (d / "playbooks").is_dir():
            return d
    pkg = Path(__file__).resolve().parents[2]
    if (pkg / "alembic.ini").is_file():
        return pkg
    return here


def migrations_dir() -> Path:
    return Path(os.environ.get("VETAI_OPS_MIGRATIONS") or project_root() / "migrations")


def versions_dir() -> Path:
    return migrations_dir() / "versions"


def logs_dir() -> Path:
    return Path(os.environ.get("VETAI_OPS_LOGS") or project_root() / "logs")


def find_tool(name: str) -> str | None:
    """A command-line tool, looked up where this package's own install put it first (the
    scripts folder of the running interpreter's environment, e.g. ``.venv/bin/squawk`` of
    ``pip install -e .``), then on PATH: a venv need not be activated for its tools to count."""
    dirs = []
    with contextlib.suppress(KeyError, OSError):
        scripts = sysconfig.get_path("scripts")
        if scripts:
            dirs.append(Path(scripts))
    dirs.append(Path(sys.executable).parent)  # a venv's python is a symlink: do not resolve it
    for d in dirs:
        cand = d / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which(name)


def cache_dir() -> Path:
    """Operator-side caches (the reference schemas); ``VETAI_OPS_CACHE`` or ``.vetai/cache``."""
    return Path(os.environ.get("VETAI_OPS_CACHE") or project_root() / ".vetai" / "cache")
