"""Throwaway PostgreSQL clusters for the suite (initdb + pg_ctl, own port and socket dir)."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

from vetai_ops.database.cluster import Cluster, resolve_bindir

_ports = itertools.count(56000 + (os.getpid() % 500) * 4)


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


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory):
    """A Unix-socket cluster (trust auth on the socket), superuser ``vetai``."""
    c = Cluster(tmp_path_factory.mktemp("pg"), free_port(), resolve_bindir(), superuser="vetai")
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
