"""The embedded PostgreSQL of ``--env=local``: started by the tool in a project folder."""

from __future__ import annotations

from pathlib import Path

from ..config import Environment
from ..paths import project_root
from .cluster import Cluster, resolve_bindir


def sandbox_cluster(env: Environment) -> Cluster:
    sb = env.sandbox
    assert sb is not None
    root = Path(sb.dir)
    if not root.is_absolute():
        root = project_root() / root
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
    else:
        c.stop()
    return c
