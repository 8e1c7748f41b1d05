"""Scratch databases a run makes and drops again, and the dropping of those a killed run left.

Two kinds outlive a run killed half-way (SIGKILL, a lost machine):

- the drift reference ``<db>_ref_<key>_<random>`` (:mod:`.reference`). Its build may run
  beside another run (``invoke check`` takes no lock), so the lock says nothing about it.
  It is *claimed* instead: :func:`claimed` holds a session-level advisory lock
  (``SCRATCH_CLASS``, the key of its name) on the maintenance database from before the
  database is created until it is dropped. The claim dies with its session, like the deploy
  lock: a reference database nobody claims is provably a dead run's.
- a backup drill's ``<db>_verify_<backup id>`` (steps/verify.py). A verify runs only under
  the env's deploy lock (``backups.verify`` and a deploy's ``verify`` step both hold it),
  so one seen by a run that holds that lock is a dead run's.

:func:`drop_dead` drops both kinds, and never a live run's; the ``lock`` step calls it
under the lock, so every deploy, rollback, verify and ``backups.prune`` cleans up.
"""

from __future__ import annotations

import contextlib
import re

from typing import Callable

from psycopg import sql

from ..errors import short_error
from .advisory import LOCK_CLASS, lock_key
from .swap import verify_name

SCRATCH_CLASS = LOCK_CLASS + 1  # first int4 key of a scratch database's claim
_REF = re.compile(r"^[0-9a-f]{8}_[0-9a-f]{6}$")  # what follows <db>_ref_
_VERIFY = re.compile(r"^\d{8}t\d{6}z$")  # what follows <db>_verify_: a backup id, lowercased


def reference_prefix(live: str) -> str:
    return f"{live}_ref_".lower()


def verify_prefix(live: str) -> str:
    return verify_name(live, "")


def _key(name: str) -> dict:
    return {"c": SCRATCH_CLASS, "k": lock_key(name)}


@contextlib.contextmanager
def claimed(maint: Callable, name: str):
    """Hold the claim on scratch database ``name`` (taken before it exists) for the block.
    ``maint``: opens an autocommit maintenance connection (``access.admin``; closing it ends
    its session, and the claim with it)."""
    conn = maint()
    try:
        conn.execute("select set_config('application_name', %(a)s, false)", {"a": f"vetai-ops scratch {name}"[:63]})
        conn.execute("select pg_advisory_lock(%(c)s, %(k)s)", _key(name))
        yield name
    finally:
        conn.close()


def _leftovers(maint: Callable, live: str) -> tuple[list[str], list[str]]:
    """(reference databases, drill copies) named like this env's, one look at the catalog."""
    ref, ver = reference_prefix(live), verify_prefix(live)
    with maint() as c:
        names = [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %(r)s)"
                                         " OR starts_with(datname, %(v)s) ORDER BY 1", {"r": ref, "v": ver})]
    return ([n for n in names if n.startswith(ref) and _REF.match(n[len(ref):])],
            [n for n in names if n.startswith(ver) and _VERIFY.match(n[len(ver):])])


def _drop(maint: Callable, name: str, why: str, done: list[str]) -> None:
    try:
        with maint() as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        done.append(f"dropped {name}, {why}")
    except Exception as e:  # noqa: BLE001 - named, not fatal: the run goes on
        done.append(f"could not drop {name}, {why}: {short_error(e)}")


def drop_dead(maint: Callable, live: str) -> list[str]:
    """Drop the scratch databases of ``live`` that dead runs left; returns what was done.
    Call it only under the env's deploy lock (the verify copies' proof)."""
    done: list[str] = []
    refs, drills = _leftovers(maint, live)
    for name in refs:
        with maint() as c:  # its own session: the claim taken here ends with it
            if not c.execute("select pg_try_advisory_lock(%(c)s, %(k)s)", _key(name)).fetchone()[0]:
                continue  # a live build (this env's or a `check` beside it) holds it
            _drop(maint, name, "the drift reference a killed run was building", done)
    for name in drills:
        _drop(maint, name, "the scratch copy of a backup drill that died", done)
    return done
