"""The embedded PostgreSQL of ``--env=local``: started by the tool in a project folder.

Run as root, the server runs as an unprivileged user (PostgreSQL refuses root), and that
user must be able to reach the data directory. When the project lives where it cannot
(a 0700 ``mktemp -d``, ``/root``), the cluster goes to ``/var/tmp/vetai-ops/<id>`` and the
project folder keeps a ``LOCATION`` file pointing there, rather than loosening the
permissions of the operator's folders.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..config import Environment
from ..paths import project_root
from .cluster import Cluster, resolve_bindir, server_can_reach

RELOCATED_BASE = Path("/var/tmp/vetai-ops")


def _cluster_root(configured: Path) -> Path:
    pointer = configured / "LOCATION"
    if pointer.is_file():
        return Path(pointer.read_text().strip())
    if os.geteuid() != 0 or server_can_reach(configured):
        return configured
    alt = RELOCATED_BASE / hashlib.sha256(str(configured).encode()).hexdigest()[:16]
    RELOCATED_BASE.mkdir(parents=True, exist_ok=True)
    RELOCATED_BASE.chmod(0o755)  # traversable by the server user; each cluster dir is its own
    configured.mkdir(parents=True, exist_ok=True)
    pointer.write_text(f"{alt}\n")
    return alt


def _configured_root(env: Environment) -> Path:
    assert env.sandbox is not None
    root = Path(env.sandbox.dir)
    return root if root.is_absolute() else project_root() / root


def sandbox_cluster(env: Environment) -> Cluster:
    sb = env.sandbox
    root = _cluster_root(_configured_root(env))
    marker = root / "engine"
    # keep the engine a sandbox was created with (a v16 data dir needs v16 binaries)
    if marker.is_file():
        bindir = Path(marker.read_text().strip())
        if not (bindir / "postgres").is_file():
            bindir = resolve_bindir(sb.engine)
    else:
        bindir = resolve_bindir(sb.engine)
    c = Cluster(root, sb.port, bindir, superuser=env.database.user)
    return c


def ensure_sandbox(env: Environment) -> Cluster:
    """Start (initialising on first use) the sandbox cluster and create the app database."""
    c = sandbox_cluster(env)
    fresh = not c.initialized()
    c.start()
    if fresh:
        (c.root / "engine").write_text(str(c.bindir) + "\n")
    name = env.database.name
    exists = c.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    if not exists:
        c.psql(f'CREATE DATABASE "{name}"')
    return c


def stop_sandbox(env: Environment, destroy: bool = False) -> Cluster:
    c = sandbox_cluster(env)
    if destroy:
        c.destroy()
        (_configured_root(env) / "LOCATION").unlink(missing_ok=True)
    else:
        c.stop()
    return c
