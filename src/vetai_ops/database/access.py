"""How the operator and the pg tools reach an environment's database.

- Operator side: psycopg 3 connections (:meth:`DbAccess.connect`, :meth:`DbAccess.admin`)
  for every operational query (locks, backup, restore, swap, fence, checks, journal), and a
  SQLAlchemy engine (:meth:`DbAccess.engine`, imported on first use) only where Alembic
  needs one: migrate, downgrade, stamp, autogenerate, building a reference schema. Why:
  importing SQLAlchemy costs ~0.3 s per run (measured: +300 ms over invoke, psycopg,
  pydantic, rich and yaml together; Alembic's RevisionMap imports all of it), more than a
  backup of a small database takes; a backup and a rollback import neither
  (tests/test_fixed_cost.py). Local sandbox: the Unix socket. Otherwise the DB host's
  target reaches the server (``Target.reach``): the address itself on this machine, a TCP
  tunnel through an SSH host's connection, because ``database.host/port`` are as seen FROM
  the DB host. Both kinds of connection get the same options: a 10 s connect timeout,
  ``application_name``, and ``default_transaction_read_only=off`` (never fenced).
- DB-host side (pg_dump / pg_restore run there): ``pg_args()`` plus a 0600 passfile
  written through the target (never a password in argv or env).

The password is read from the operator's environment variable named by
``database.password_env``; it is registered with :mod:`vetai_ops.secrets` so any
text that might carry it is redacted.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import logging

import psycopg

from .. import secrets
from ..config import Environment
from ..errors import ConfigError, OpsError, short_error

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# psycopg logs "error ignored in rollback on <connection>" (Python's last-resort handler prints it on
# stderr, outside the run's rendering) when a `with` block leaves a connection that already died,
# e.g. ended by a failed swap: the run reports the error that matters itself
logging.getLogger("psycopg").addHandler(logging.NullHandler())

# the tool's own sessions are never fenced: a connection option overrides the database-level
# default a read_only write fence sets (database/fence.py)
CONNECT_ARGS = {"connect_timeout": 10, "application_name": "vetai-ops",
                "options": "-c default_transaction_read_only=off"}


def password_for(env: Environment) -> str | None:
    var = env.database.password_env
    if not var:
        return None
    secrets.register_env_var(var)  # never inherited by local child processes
    pw = os.environ.get(var)
    if pw is None:
        raise ConfigError(
            f"environment variable {var} is not set (the password of database user "
            f"{env.database.user!r} for env {env.name!r})",
            f"export {var}=... in the shell that runs vetai-ops (it is never read from the inventory)",
        )
    secrets.register(pw)
    return pw


def _passfile_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace(":", "\\:")


class DbAccess:
    """Connections to one environment's database server, from the operator and on the DB host."""

    def __init__(self, env: Environment, db_target, *, cluster=None):
        self.env = env
        self.db = env.database
        self.target = db_target
        self.cluster = cluster  # the embedded sandbox Cluster, when env.sandbox
        self._stack = contextlib.ExitStack()
        self._reached: tuple[str, int] | None = None
        self._engines: dict[str, Engine] = {}  # Alembic's, made on first use
        self.password = password_for(env)

    # ------------------------------------------------------------ operator side
    def _server(self) -> tuple[str | None, int]:
        """The server as seen from the DB host: the sandbox's socket, or the inventory's
        host (None: the pg tools' default socket) and port."""
        if self.cluster is not None:
            return str(self.cluster.socket_dir), self.cluster.port
        return self.db.host, self.db.port

    def _endpoint(self) -> tuple[str, int]:
        """The server's address as the operator reaches it (the DB host's target decides: the
        same address on this machine, a tunnel through an SSH host), opened once per run."""
        if self._reached is None:
            host, port = self._server()
            self._reached = self._stack.enter_context(self.target.reach(host or "127.0.0.1", port))
        return self._reached

    def url(self, dbname: str | None = None, *, driver: bool = True) -> str:
        """Connection URL without the password (safe to print)."""
        host, port = self._endpoint()
        scheme = "postgresql+psycopg" if driver else "postgresql"
        name = dbname or self.db.name
        if host.startswith("/"):
            return f"{scheme}://{self.db.user}@/{name}?host={host}&port={port}"
        return f"{scheme}://{self.db.user}@{host}:{port}/{name}"

    def display_url(self, dbname: str | None = None) -> str:
        """URL for humans and psql; for a tunnelled DB it is as seen from the DB host."""
        name = dbname or self.db.name
        if self.cluster is not None:
            return self.url(name, driver=False)
        pw = ":***" if self.password else ""
        return f"postgresql://{self.db.user}{pw}@{self.db.host or '127.0.0.1'}:{self.db.port}/{name}"

    def connect(self, dbname: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
        """A new psycopg connection to ``dbname`` (default: the env's database). Used as
        ``with access.connect() as c:`` it COMMITS on a clean exit (rolls back on an
        exception) and closes. The password goes as a keyword, never in a URL or a message."""
        host, port = self._endpoint()
        kw = dict(CONNECT_ARGS)
        if self.password:
            kw["password"] = self.password
        return psycopg.connect(host=host, port=port, user=self.db.user, dbname=dbname or self.db.name,
                               autocommit=autocommit, **kw)

    def admin(self) -> psycopg.Connection:
        """The maintenance DB in autocommit: CREATE/DROP/ALTER DATABASE, the locks, the swap.
        Functions that open several of these take this bound method as their ``maint``."""
        return self.connect(self.db.maintenance_db, autocommit=True)

    def engine(self, dbname: str | None = None) -> Engine:
        """A SQLAlchemy engine, for Alembic only (SQLAlchemy is imported here, on first use)."""
        from sqlalchemy import create_engine, pool

        name = dbname or self.db.name
        if name not in self._engines:
            connect_args = dict(CONNECT_ARGS)
            if self.password:
                connect_args["password"] = self.password
            self._engines[name] = create_engine(self.url(name), poolclass=pool.NullPool, connect_args=connect_args)
        return self._engines[name]

    def dispose(self) -> None:
        for e in self._engines.values():
            e.dispose()
        self._engines.clear()

    def close(self) -> None:
        self.dispose()
        self._stack.close()
        self._reached = None

    # ------------------------------------------------------------ DB-host side
    def bin(self, tool: str) -> str:
        if self.db.bin_dir:
            return str(Path(self.db.bin_dir).expanduser() / tool)
        if self.cluster is not None:
            return self.cluster.bin(tool)
        return tool

    def pg_args(self, dbname: str | None = None) -> list[str]:
        """-h/-p/-U/-d for a pg tool running ON the DB host (no password)."""
        host, port = self._server()
        args = ["-p", str(port), "-U", self.db.user]
        if host:
            args = ["-h", host] + args
        return args + ["-d", dbname or self.db.name]

    @contextlib.contextmanager
    def pg_env(self) -> Iterator[dict[str, str]]:
        """Environment for pg tools on the DB host: a 0600 PGPASSFILE when a password is set."""
        if not self.password:
            yield {}
            return
        path = self.target.mktemp(".pgpass")
        line = "*:*:*:" + _passfile_escape(self.db.user) + ":" + _passfile_escape(self.password) + "\n"
        self.target.put_file(line.encode(), path, 0o600)
        try:
            yield {"PGPASSFILE": path}
        finally:
            self.target.remove(path)


def check_reachable(access: DbAccess) -> str:
    """Connect once; return the server version string or raise a clear OpsError."""
    try:
        with access.connect() as c:
            return c.execute("show server_version").fetchone()[0]
    except OpsError:
        raise
    except Exception as e:  # psycopg/sqlalchemy errors: the server's first line, redacted
        msg = secrets.redact(short_error(e))
        raise OpsError(
            f"database {access.db.name!r} of env {access.env.name!r} is not reachable: {msg}",
            "check that PostgreSQL runs and the inventory's database section (name, user, host, port, password_env)",
        ) from None
