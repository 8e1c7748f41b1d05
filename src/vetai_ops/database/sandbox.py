"""The embedded PostgreSQL of ``--env=local``: started by the tool in a project folder.

Run as root, the server runs as an unprivileged user (PostgreSQL refuses root), and that
user must be able to reach the data directory. When the project lives where it cannot
(a 0700 ``mktemp -d``, ``/root``), the cluster goes to ``/var/tmp/vetai-ops/<id>`` and the
project folder keeps a ``LOCATION`` file pointing there, rather than loosening the
permissions of the operator's folders.

That shared place is hostile ground: another local user can create
``/var/tmp/vetai-ops`` or a ``<id>`` folder first, and the cluster folder's ``engine`` file
names binaries the tool runs (as root). So every folder and file whose content the tool
acts on (the relocation base, the cluster folder, ``engine``, ``LOCATION``) must be a real
folder / file (not a symlink), owned by the user running the tool and writable by no one
else; a new ``<id>`` folder is created exclusively. Anything else is refused, naming the
path and its owner. The server user owns only ``data/``, ``run/`` and the log.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
from pathlib import Path

from ..config import Environment
from ..errors import OpsError, short_error
from ..paths import project_root
from .cluster import Cluster, _server_user, resolve_bindir, server_can_reach

RELOCATED_BASE = Path("/var/tmp/vetai-ops")


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _refuse(path: Path, why: str) -> OpsError:
    return OpsError(
        f"sandbox path {path} {why}: it is not trusted (the sandbox runs binaries it names as "
        f"{_owner(os.geteuid())})",
        f"if you did not create it, someone else may have: inspect and remove it (`rm -rf {path}`), then retry",
    )


def _check_ours(path: Path, *, folder: bool, server_owned_ok: bool = False) -> None:
    """``path`` is a real folder/file (no symlink), ours, writable by nobody else. With
    ``server_owned_ok``, a folder the sandbox's server user owns (the layout of older
    versions) is taken back (chown to us) instead of refused."""
    st = os.lstat(path)
    kind_ok = stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        raise _refuse(path, "is a symlink or not a plain " + ("folder" if folder else "file"))
    if st.st_uid != os.geteuid():
        server = _server_user()
        if folder and server_owned_ok and server and st.st_uid == pwd.getpwnam(server).pw_uid:
            os.chown(path, os.geteuid(), os.getegid())
        else:
            raise _refuse(path, f"belongs to {_owner(st.st_uid)}")
    if st.st_mode & 0o022:
        raise _refuse(path, f"is writable by other users (mode {stat.S_IMODE(st.st_mode):o})")


def _relocated(configured: Path) -> Path:
    """``/var/tmp/vetai-ops/<id>`` for a project the server user cannot reach (we are root)."""
    alt = RELOCATED_BASE / hashlib.sha256(str(configured).encode()).hexdigest()[:16]
    try:
        os.mkdir(RELOCATED_BASE, 0o755)  # traversable by the server user; nobody else writes in it
    except FileExistsError:
        pass
    _check_ours(RELOCATED_BASE, folder=True)
    try:
        os.mkdir(alt, 0o700)  # exclusively: a folder someone made first is never "ours"
        os.chmod(alt, 0o755)  # the server user traverses it to data/ and run/
    except FileExistsError:
        # made by an earlier run of ours (older versions chowned it to the server user)
        _check_ours(alt, folder=True, server_owned_ok=True)
    return alt


def _cluster_root(configured: Path) -> Path:
    pointer = configured / "LOCATION"
    if os.path.lexists(pointer):
        _check_ours(pointer, folder=False)
        root = Path(pointer.read_text().strip())
        if root.parent == RELOCATED_BASE:
            _check_ours(RELOCATED_BASE, folder=True)
        if os.path.lexists(root):
            _check_ours(root, folder=True, server_owned_ok=True)
        return root
    if os.geteuid() != 0 or server_can_reach(configured):
        if os.path.lexists(configured):
            _check_ours(configured, folder=True, server_owned_ok=True)
        return configured
    alt = _relocated(configured)
    configured.mkdir(parents=True, exist_ok=True)
    _write_ours(pointer, f"{alt}\n")
    return alt


def _write_ours(path: Path, text: str) -> None:
    """A file only we can write (0644 whatever the umask), replacing any old one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _configured_root(env: Environment) -> Path:
    assert env.sandbox is not None
    root = Path(env.sandbox.dir)
    return root if root.is_absolute() else project_root() / root


def sandbox_cluster(env: Environment) -> Cluster:
    sb = env.sandbox
    root = _cluster_root(_configured_root(env))
    marker = root / "engine"
    # keep the engine a sandbox was created with (a v16 data dir needs v16 binaries); the file
    # names binaries we run: only when nobody else could have written it
    if os.path.lexists(marker):
        _check_ours(marker, folder=False)
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
        _write_ours(c.root / "engine", str(c.bindir) + "\n")
    _ensure_database(c, env.database.name)
    return c


def _ensure_database(c: Cluster, name: str) -> None:
    """The app database exists. Asked over one connection (a `psql` process per run cost more
    than the question); created with `psql` the first time."""
    import psycopg

    try:
        with psycopg.connect(host=str(c.socket_dir), port=c.port, user=c.superuser, dbname="postgres",
                             connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    except psycopg.Error as e:
        raise OpsError(f"the sandbox at {c.root} does not answer: {short_error(e)}", f"see {c.log}") from None
    if not exists:
        c.psql(f'CREATE DATABASE "{name}"')


def stop_sandbox(env: Environment, destroy: bool = False) -> Cluster:
    c = sandbox_cluster(env)
    if destroy:
        c.destroy()
        (_configured_root(env) / "LOCATION").unlink(missing_ok=True)
    else:
        c.stop()
    return c
