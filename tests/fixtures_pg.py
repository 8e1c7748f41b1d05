"""Throwaway PostgreSQL clusters for the suite (initdb + pg_ctl, own port and socket dir)."""

from __future__ import annotations

import itertools
from pathlib import Path
import os
import subprocess
import uuid

import pytest

from bed import require_or_skip
from vetai_ops.database.cluster import Cluster, resolve_bindir

# Each test process (an xdist worker, another worktree's run) starts from its own block of
# 64 ports: workers have adjacent PIDs, and a process takes ~25 ports (clusters, moto, the
# sshd candidates), so 4-port blocks overlapped and two workers could pick the same free port
# before either bound it. Ports are still checked free before use.
_ports = itertools.count(40000 + (os.getpid() % 300) * 64)


def free_port() -> int:
    import socket

    while True:
        p = next(_ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue


def server_dir(prefix: str):
    """A directory the unprivileged server user can reach (pytest's tmp tree is 0700 under root)."""
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix=f"vetai-{prefix}-"))
    d.chmod(0o755)  # mkdtemp makes it 0700: the server user could not reach it (the sandbox would relocate)
    return d


@pytest.fixture(scope="session")
def pg_cluster():
    """A Unix-socket cluster (trust auth on the socket), superuser ``vetai``."""
    c = Cluster(server_dir("pg"), free_port(), resolve_bindir(), superuser="vetai")
    c.start()
    yield c
    c.destroy()


@pytest.fixture
def pg_url(pg_cluster):
    """SQLAlchemy URL of a fresh, empty database (dropped after the test)."""
    name = "t_" + uuid.uuid4().hex[:10]
    pg_cluster.psql(f"CREATE DATABASE {name}")
    yield pg_cluster.url(name)
    pg_cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------- the embedded local env


@pytest.fixture(scope="session")
def sandbox_dir():
    import shutil

    d = server_dir("sandbox")
    yield d
    pointer = d / "LOCATION"  # never expected here, but a relocated cluster must not outlive the suite
    for root in ([Path(pointer.read_text().strip())] if pointer.exists() else []) + [d]:
        if (root / "data").exists():
            Cluster(root, 0, resolve_bindir()).stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_port():
    return free_port()


class LocalEnv:
    """An isolated ``local`` env: the session's sandbox cluster, a fresh database name,
    its own backups folder and log, selected through VETAI_OPS_INVENTORY."""

    def __init__(self, root, sandbox_dir, port, dbname):
        self.root = root
        self.dbname = dbname
        self.backups = root / "backups"
        self.inventory = root / "inventory.yml"
        self._sandbox = (sandbox_dir, port)
        self.configure()

    def configure(self, **extra) -> None:
        """(Re)write the inventory; ``extra``: more keys of the env, as YAML flow text. The
        rehearsal is off unless a test sets ``deploy=``: these tests put faults in the live
        migration and its recovery, which a rehearsal would stop first (tests/test_rehearsal.py
        covers the rehearsal)."""
        extra = {"deploy": "{rehearsal: off}", **extra}
        sandbox_dir, port = self._sandbox
        self.inventory.write_text(
            "default_env: local\n"
            "environments:\n"
            "  local:\n"
            f"    sandbox: {{dir: '{sandbox_dir}', port: {port}}}\n"
            f"    database: {{name: {self.dbname}, user: vetai}}\n"
            f"    storage: {{type: local, path: '{self.backups}'}}\n"
            + "".join(f"    {k}: {v}\n" for k, v in extra.items())
        )

    def env(self):
        from vetai_ops.config import load_inventory

        return load_inventory(self.inventory).env("local")

    def cluster(self):
        from vetai_ops.database.sandbox import ensure_sandbox

        return ensure_sandbox(self.env())

    def psql(self, sql: str) -> str:
        return self.cluster().psql(sql, db=self.dbname)

    def run(self, playbook: str, **options):
        from vetai_ops.pipeline import run_playbook

        return run_playbook(playbook, "local", options=options)


def snapshot(le) -> dict:
    """Revision + a checksum of every app table's rows (of a :class:`LocalEnv`): what a
    fault must leave exactly as it was."""
    tables = le.psql(
        "select string_agg(relname, ' ' order by relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and relkind = 'r' and relname not in ('deploy_history', 'vetai_ops_applied')"
    ).split()
    out = {"revision": le.psql("select coalesce((select version_num from alembic_version), 'base')"), "tables": {}}
    for t in tables:
        out["tables"][t] = le.psql(f"select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) from public.\"{t}\" x")
    return out


@pytest.fixture
def local_env(tmp_path, sandbox_dir, sandbox_port, monkeypatch):
    name = "vc_" + uuid.uuid4().hex[:8]
    le = LocalEnv(tmp_path, sandbox_dir, sandbox_port, name)
    monkeypatch.setenv("VETAI_OPS_INVENTORY", str(le.inventory))
    monkeypatch.setenv("VETAI_OPS_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("VETAI_OPS_KEYS", str(tmp_path / "keys"))  # this test's own manifest key
    for v in ("RUN_MIGRATIONS", "RUN_SEEDS", "IS_FIRST_DEPLOY"):
        monkeypatch.delenv(v, raising=False)
    yield le
    try:
        c = le.cluster()
        for db in c.psql(f"select datname from pg_database where datname like '{name}%'").split():
            c.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    except Exception:
        pass


@pytest.fixture
def migrations_copy(tmp_path, monkeypatch):
    """A copy of the project's migrations/ selected via VETAI_OPS_MIGRATIONS, to plant revisions in."""
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "migrations"
    dst = tmp_path / "migrations"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("VETAI_OPS_MIGRATIONS", str(dst))

    class M:
        path = dst

        @staticmethod
        def add(rev: str, down: str, upgrade: str, downgrade: str = "pass", header: str = "") -> Path:
            body = (
                f'"""planted revision {rev}"""\n{header}\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
                f'revision = "{rev}"\ndown_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n\n\n'
                f"def upgrade() -> None:\n" + "".join(f"    {line}\n" for line in upgrade.strip().splitlines())
                + "\n\ndef downgrade() -> None:\n" + "".join(f"    {line}\n" for line in downgrade.strip().splitlines())
            )
            f = dst / "versions" / f"{rev}_planted.py"
            f.write_text(body)
            return f

    return M


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a store or spool that fills up for real."""
    d = tmp_path / "tiny"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        require_or_skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)])
