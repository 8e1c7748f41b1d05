"""A PostgreSQL cluster the tool (or the test suite) runs itself: initdb + pg_ctl.

Used by the embedded ``--env=local`` sandbox and by tests. Binaries come from the
machine's PostgreSQL server install (``/usr/lib/postgresql/<v>/bin``, ``pg_config
--bindir``) or, when there is none, from the ``pgserver`` wheel (PostgreSQL 16).

PostgreSQL refuses to run as root: when we are root, the server runs as an
unprivileged OS user (``postgres`` if it exists, else ``pgserver``/created) via runuser;
clients (pg_dump, psql, psycopg) run as us and connect over the Unix socket.

Who may connect: the socket folder is 0700 (owned by the server's OS user), the socket
itself 0700 (``unix_socket_permissions``), and socket auth is ``peer`` with an ident map
that lets only the OS user running the tool (and root) in, as the cluster's superuser.
TCP (when ``listen`` is set) always asks for a scram-sha-256 password. Every start
rewrites pg_hba.conf / pg_ident.conf, so clusters made by older versions (``trust``) are
tightened too. The cluster folder itself stays ours (0755, traversable): the server user
owns only ``data/``, ``run/`` and the log, never a file whose content we act on.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import tempfile
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OpsError


def _version_of(bindir: Path) -> tuple[int, ...]:
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True).stdout
        return tuple(int(x) for x in out.split()[-1].split(".")[:2] if x.isdigit())
    except Exception:
        return (0,)


def find_system_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine, if any."""
    env = os.environ.get("VETAI_OPS_PG_BINDIR")
    if env:
        return Path(env)
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates += [Path(p) for p in glob.glob("/usr/pgsql-*/bin")]
    for name in ("pg_ctl", "initdb"):
        w = shutil.which(name)
        if w:
            candidates.append(Path(w).resolve().parent)
    good = [c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file() and (c / "postgres").is_file()]
    if not good:
        return None
    return max(good, key=_version_of)


def pgserver_bindir() -> Path | None:
    import warnings

    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            import pgserver  # type: ignore
    except Exception:
        return None
    d = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return d if (d / "initdb").is_file() else None


def resolve_bindir(engine: str = "auto") -> Path:
    if engine in ("auto", "system"):
        d = find_system_bindir()
        if d:
            return d
        if engine == "system":
            raise OpsError("no PostgreSQL server binaries found on this machine", "install postgresql or use engine: pgserver")
    d = pgserver_bindir()
    if d:
        return d
    raise OpsError(
        "no PostgreSQL server binaries found and the pgserver wheel is not installed",
        "run `pip install -e .` (it installs pgserver) or install the postgresql package",
    )


def _server_user() -> str | None:
    """The OS user the server runs as when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pgserver"], check=True)
    return "pgserver"


def _others_can_run(path: Path) -> bool:
    """``path`` and every folder above it are open to everyone (o+x; the file o+rx): any user,
    the server's too, can run it. False means "ask the server user" (``runuser test -x``)."""
    try:
        p = path.resolve()
        if (p.stat().st_mode & 0o005) != 0o005:
            return False
        return all(d.stat().st_mode & 0o001 for d in p.parents)
    except OSError:
        return False


def server_can_reach(path: Path) -> bool:
    """Can the server user (when we are root) traverse to ``path`` (or its nearest existing ancestor)?"""
    user = _server_user()
    if not user:
        return True
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    try:
        if all(d.stat().st_mode & 0o001 for d in (p, *p.parents)):  # open to everyone: no `runuser` to ask
            return True
    except OSError:
        pass
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(p)], capture_output=True).returncode == 0


@dataclass
class Cluster:
    """One PostgreSQL cluster in ``root`` (data in root/data, socket in root/run)."""

    root: Path
    port: int
    bindir: Path
    superuser: str = "postgres"
    listen: str = ""  # "" = Unix socket only; "127.0.0.1" to also listen on TCP
    password: str | None = field(default=None, repr=False)  # superuser password (scram over TCP); never in repr
    auth: str = "peer"  # local socket auth (peer + ident map, see module doc); TCP always scram-sha-256

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def bin(self, name: str) -> str:
        return str(self.bindir / name)

    @property
    def version(self) -> tuple[int, ...]:
        return _version_of(self.bindir)

    def _as_server(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        user = _server_user()
        if user:
            argv = ["runuser", "-u", user, "--"] + argv
        return subprocess.run(argv, capture_output=True, text=True, **kw)

    def _chown(self, *paths: Path) -> None:
        user = _server_user()
        if not user:
            return
        pw = pwd.getpwnam(user)
        for p in paths:
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def _ensure_bindir_reachable(self) -> None:
        """Under root, the server user may not reach binaries under /root (pip's site-packages);
        copy that install (pgserver: ~35 MB) next to the cluster rather than chmod'ing /root."""
        user = _server_user()
        if not user:
            return
        if _others_can_run(self.bindir / "postgres"):  # no `runuser test -x` for a public install
            return
        probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(self.bindir / "postgres")])
        if probe.returncode == 0:
            return
        install = self.bindir.parent  # .../pgserver/pginstall
        local = self.root / "pg" / install.parent.name / install.name
        if not (local / "bin" / "postgres").is_file():
            shutil.copytree(install, local, symlinks=True, dirs_exist_ok=True)
            # the wheel's binaries find their libraries through RPATH $ORIGIN/../../../pgserver.libs
            libs = install.parent.parent / f"{install.parent.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, local.parent.parent / libs.name, symlinks=True, dirs_exist_ok=True)
        self.bindir = local / "bin"

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def _server_paths(self) -> None:
        """root/ stays ours (0755: the server user must traverse it, it may live under /root
        or /tmp); the server user gets run/ (0700), data/ (0700) and the log (0600)."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for d in (self.socket_dir, self.data):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
        if not self.log.exists():
            fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        self._chown(self.socket_dir, self.data, self.log)

    def _write_server_file(self, path: Path, text: str) -> bool:
        """Replace a config file of the data dir (0600, the server user's); True if it changed."""
        if path.is_file() and path.read_text() == text:
            return False
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            self._chown(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    def _secure_config(self) -> bool:
        """Socket auth: peer, mapped to the superuser for the OS user running the tool and
        root; TCP: scram. Returns True when a file changed (a running server must reload)."""
        try:
            users = sorted({pwd.getpwuid(os.geteuid()).pw_name, "root"})
        except KeyError:  # a uid without a passwd entry (some containers): peer cannot name it
            users = ["root"]
        hba = ("# written by vetai-ops: only the OS user running it (and root) may use the socket, as the\n"
               "# cluster's superuser; TCP always needs a password\n"
               f"local all all {self.auth}" + (" map=vetai-ops" if self.auth == "peer" else "") + "\n"
               "host all all 127.0.0.1/32 scram-sha-256\n"
               "host all all ::1/128 scram-sha-256\n")
        ident = "# written by vetai-ops\n" + "".join(f"vetai-ops {u} {self.superuser}\n" for u in users)
        changed = self._write_server_file(self.data / "pg_hba.conf", hba)
        changed |= self._write_server_file(self.data / "pg_ident.conf", ident)
        conf = self.data / "postgresql.conf"
        text = conf.read_text()
        if "unix_socket_permissions = 0700" not in text:
            self._write_server_file(conf, text + "unix_socket_permissions = 0700  # vetai-ops: the server user (and root) only\n")
            changed = True
        return changed

    def _postmaster_alive(self) -> bool:
        """The data dir's postmaster.pid names a live process and its socket is there: the server
        runs (what ``pg_ctl status`` concludes from the same file), without two subprocesses.
        False means "not sure": the caller asks pg_ctl."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return (self.socket_dir / f".s.PGSQL.{self.port}").exists()

    def init(self) -> None:
        self._server_paths()
        self._ensure_bindir_reachable()
        pwfile = None
        argv = [self.bin("initdb"), "-D", str(self.data), "-U", self.superuser, "-E", "UTF8",
                "--locale=C.UTF-8" if self.version >= (16,) else "--no-locale",
                f"--auth-local={self.auth}", "--auth-host=scram-sha-256"]
        if self.password:
            # initdb reads the password from a file: never on a command line
            pwfile = self.root / ".pwfile"
            pwfile.write_text(self.password + "\n")
            os.chmod(pwfile, 0o600)
            self._chown(pwfile)
            argv.append(f"--pwfile={pwfile}")
        try:
            r = self._as_server(argv)
        finally:
            if pwfile:
                pwfile.unlink(missing_ok=True)
        if r.returncode != 0:
            raise OpsError(f"initdb failed in {self.data}: {r.stderr.strip()[-800:]}")
        conf = self.data / "postgresql.conf"
        with open(conf, "a") as f:
            f.write(
                "\n# vetai-ops sandbox\n"
                f"listen_addresses = '{self.listen}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 50\nshared_buffers = 64MB\n"
            )

    def running(self) -> bool:
        if self._postmaster_alive():
            return True
        r = self._as_server([self.bin("pg_ctl"), "status", "-D", str(self.data)])
        return r.returncode == 0

    def start(self) -> None:
        if not self.initialized():
            self.init()
        else:
            self._ensure_bindir_reachable()
        self._server_paths()
        changed = self._secure_config()
        if self.running():
            if changed:  # an older cluster that trusted every local user: tighten it now
                self._as_server([self.bin("pg_ctl"), "reload", "-D", str(self.data)])
            return
        r = self._as_server([self.bin("pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log)])
        if r.returncode != 0:
            tail = self.log.read_text()[-1500:] if self.log.exists() else r.stderr
            raise OpsError(f"PostgreSQL did not start in {self.data}: {tail.strip()}", f"see {self.log}")
        # wait for the socket to accept connections
        deadline = time.time() + 30
        while time.time() < deadline:
            rr = subprocess.run([self.bin("pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port)],
                                capture_output=True)
            if rr.returncode == 0:
                return
            time.sleep(0.1)
        raise OpsError(f"PostgreSQL in {self.data} is not accepting connections", f"see {self.log}")

    def stop(self, mode: str = "fast") -> None:
        if self.initialized() and self.running():
            self._as_server([self.bin("pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data)])

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, db: str = "postgres", user: str | None = None) -> str:
        r = subprocess.run(
            [self.bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", user or self.superuser, "-d", db, "-c", sql],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            raise OpsError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def url(self, db: str, user: str | None = None) -> str:
        """SQLAlchemy URL over the Unix socket (no password in it)."""
        return f"postgresql+psycopg://{user or self.superuser}@/{db}?host={self.socket_dir}&port={self.port}"
