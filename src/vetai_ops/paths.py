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


def git_head(root: Path | None = None, length: int = 12) -> str | None:
    """The commit checked out at ``root`` (default: the project), abbreviated like
    ``git rev-parse --short=12 HEAD`` but read from the repository's files instead of a
    subprocess: ``.git`` (a folder, or a worktree's ``gitdir:`` file), ``HEAD``, the branch's
    loose ref, else ``packed-refs`` in the common dir. None when it is not a checkout (or
    anything is unreadable: the manifest then records no commit, as before)."""
    root = root or project_root()
    try:
        dot = next((d / ".git" for d in (root, *root.parents) if (d / ".git").exists()), None)
        if dot is None:
            return None
        gitdir = dot
        if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot.read_text().strip()
            if not text.startswith("gitdir:"):
                return None
            gitdir = (dot.parent / text[len("gitdir:"):].strip()).resolve()
        common = gitdir
        if (gitdir / "commondir").is_file():
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
        head = (gitdir / "HEAD").read_text().strip()
        sha = head
        if head.startswith("ref:"):
            ref = head[4:].strip()
            sha = None
            for base in (gitdir, common):
                if (base / ref).is_file():
                    sha = (base / ref).read_text().strip()
                    break
            if sha is None and (common / "packed-refs").is_file():
                for line in (common / "packed-refs").read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref and not line.startswith(("#", "^")):
                        sha = parts[0]
                        break
        if not sha or len(sha) not in (40, 64) or any(ch not in "0123456789abcdef" for ch in sha):
            return None
        return sha[:length]
    except (OSError, UnicodeDecodeError):
        return None
