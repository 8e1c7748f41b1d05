"""SSH + S3 test bed fixtures (sshd on 127.0.0.x, scram PostgreSQL on TCP, moto server).

All session-scoped and made of real parts:

- ``ssh_bed``   OpenSSH sshd processes, one per loopback "host" (127.0.0.2, .3, .4),
                generated ed25519 host keys + client key, a known_hosts file.
- ``pg_tcp``    a PostgreSQL cluster listening on 127.0.0.1 with scram password auth
                (superuser ``vetai``), i.e. the "production DB" as seen from the DB host.
                Set up like production (docs/architecture.md, invariants; README "Deploy role"): a NON-superuser
                deploy role ``vetai_deploy`` (CREATEDB, pg_signal_backend, pg_read_all_settings, member of the app
                role) that owns each env's database, and an app role ``vetai_app``;
                ``create_prod_db()`` gives a database with grants, settings, a comment, a
                collation of its own and objects owned by the app role.
- ``remote_env`` an SSH + S3 env on that bed (inventory, CLI runner, psql helpers).
- ``app_sessions`` the app's own connections to the live database (idle, writer).
- ``s3_server`` moto's S3 HTTP server (ThreadedMotoServer) on 127.0.0.1; AWS_* test
                credentials in os.environ for the session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bed import import_or_skip, require_or_skip
from fixtures_pg import free_port
from vetai_ops.config import SSHConfig, Storage
from vetai_ops.database.cluster import Cluster, resolve_bindir

SSHD = "/usr/sbin/sshd"
SSH_HOSTS = 3


# ---------------------------------------------------------------------------- ssh


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return Path(str(path) + ".pub").read_text().split()[1]  # base64 blob


def _hostkey_path(root: Path, host: str) -> Path:
    return root / ("host_key_" + host.replace(".", "_"))


def _port_free(addr: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((addr, port))
            return True
        except OSError:
            return False


def _listens(pid: int, addr: str, port: int) -> bool:
    """Does process ``pid`` itself hold the listening socket ``addr:port``? (Another
    worker's sshd may already listen there: a connect would succeed against it.)"""
    want = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(addr))[0], port)
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want and cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                return True
    return False


def _wait_listening(addr: str, port: int, proc: subprocess.Popen, timeout: float = 10) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        if _listens(proc.pid, addr, port):
            return True
        time.sleep(0.02)
    return False


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the sshd listener if pytest dies without teardown (timeout, kill -9)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


@dataclass
class SSHBed:
    root: Path
    hosts: list[str]
    port: int
    key_file: str
    known_hosts: str
    user: str = "root"
    host_pub: dict[str, str] = field(default_factory=dict)  # host -> base64 ed25519 public key
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    # -- config / targets
    def ssh_config(self, **overrides) -> SSHConfig:
        kw = dict(user=self.user, port=self.port, key_file=self.key_file, known_hosts=self.known_hosts,
                  connect_timeout=5.0)
        kw.update(overrides)
        return SSHConfig(**kw)

    def target(self, host: str | None = None, *, protected: bool = True, **overrides):
        from vetai_ops.targets.ssh import SSHTarget

        return SSHTarget(host or self.hosts[0], self.ssh_config(**overrides), protected=protected)

    def known_hosts_name(self, host: str) -> str:
        return host if self.port == 22 else f"[{host}]:{self.port}"

    def known_hosts_with_wrong_key(self, path: str | os.PathLike) -> str:
        """Write a known_hosts at ``path`` listing every host with a DIFFERENT ed25519 key."""
        wrong = self.root / "wrong_host_key"
        if not wrong.exists():
            _keygen(wrong, "wrong-host-key")
        blob = Path(str(wrong) + ".pub").read_text().split()[1]
        Path(path).write_text("".join(f"{self.known_hosts_name(h)} ssh-ed25519 {blob}\n" for h in self.hosts))
        return str(path)

    def known_hosts_without(self, path: str | os.PathLike, host: str) -> str:
        """A known_hosts at ``path`` with every host but ``host`` (to test unknown keys)."""
        Path(path).write_text("".join(
            f"{self.known_hosts_name(h)} ssh-ed25519 {self.host_pub[h]}\n" for h in self.hosts if h != host))
        return str(path)

    # -- processes
    def _config_path(self, host: str) -> Path:
        return self.root / f"sshd_{host}.conf"

    def _write_config(self, host: str) -> None:
        self._config_path(host).write_text(
            f"ListenAddress {host}:{self.port}\n"
            f"HostKey {_hostkey_path(self.root, host)}\n"
            f"PidFile {self.root / ('sshd_' + host + '.pid')}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
            "UseDNS no\nPrintMotd no\nMaxSessions 50\nMaxStartups 50:30:100\n"
            # bash sources ~/.bashrc for commands run by sshd when SHLVL < 2: on dev/CI images
            # root's .bashrc runs `pyenv init` (0.1 s per command, and a stale pyenv lock
            # stalls every command for a minute). Hosts of the bed run clean shells.
            "SetEnv SHLVL=1\n"
        )

    def _start(self, host: str) -> bool:
        self._write_config(host)
        log = open(self.root / f"sshd_{host}.log", "ab")
        p = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self._config_path(host))],
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=_die_with_parent)
        log.close()
        if _wait_listening(host, self.port, p):
            self.procs[host] = p
            return True
        with contextlib.suppress(Exception):
            p.kill()
            p.wait(5)
        return False

    def kill(self, host: str) -> None:
        """Kill that host's sshd: the listener AND every per-connection sshd it forked, so
        open connections drop mid-stream (the commands they ran lose their pipes and end)."""
        p = self.procs.pop(host, None)
        if p is None:
            return
        pids = [p.pid] + [d for d in _descendants(p.pid) if _comm(d).startswith("sshd")]  # OpenSSH >= 9.8 names them sshd-session
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        p.wait(5)

    def restart(self, host: str) -> None:
        self.kill(host)
        deadline = time.time() + 10
        while not self._start(host):
            if time.time() > deadline:
                raise RuntimeError(f"sshd for {host}:{self.port} did not come back; see {self.root}/sshd_{host}.log")
            time.sleep(0.1)

    def alive(self, host: str) -> bool:
        p = self.procs.get(host)
        return p is not None and p.poll() is None

    def stop_all(self) -> None:
        for h in list(self.procs):
            self.kill(h)


@pytest.fixture(scope="session")
def ssh_bed(tmp_path_factory):
    """Real OpenSSH sshd on 127.0.0.2..: ``.hosts .port .key_file .known_hosts .user
    .ssh_config() .target(host) .kill(host) .restart(host) .known_hosts_with_wrong_key(path)``."""
    if not os.path.exists(SSHD):
        require_or_skip(f"{SSHD} not found: install openssh-server (apt-get install -y openssh-server)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    root = tmp_path_factory.mktemp("sshbed")
    os.chmod(root, 0o755)
    hosts = [f"127.0.0.{i}" for i in range(2, 2 + SSH_HOSTS)]
    client_key = root / "client_key"
    _keygen(client_key, "vetai-ops-tests")
    shutil.copy(str(client_key) + ".pub", root / "authorized_keys")
    host_pub = {h: _keygen(_hostkey_path(root, h), f"host-{h}") for h in hosts}

    candidates = [2222] + [free_port() for _ in range(20)]
    bed = None
    for port in candidates:
        if not all(_port_free(h, port) for h in hosts):
            continue
        bed = SSHBed(root, hosts, port, str(client_key), str(root / "known_hosts"), host_pub=host_pub)
        if all(bed._start(h) for h in hosts):
            break
        bed.stop_all()  # lost a race for the port: try the next one
        bed = None
    if bed is None:
        pytest.fail(f"could not start sshd on {hosts}; see logs in {root}")
    Path(bed.known_hosts).write_text(
        "".join(f"{bed.known_hosts_name(h)} ssh-ed25519 {host_pub[h]}\n" for h in hosts))
    try:
        yield bed
    finally:
        bed.stop_all()


# ---------------------------------------------------------------------------- postgres over TCP


DEPLOY_ROLE = "vetai_deploy"
APP_ROLE = "vetai_app"
# what the bed's production database carries at the database level (restore must keep it)
PROD_DB_SETTINGS = {"work_mem": "8MB"}
PROD_APP_SETTINGS = {"statement_timeout": "30s"}
PROD_COMMENT = "VetAI Connect (test bed production)"
PROD_COLLATE = "C.utf8"  # the cluster's default is C: the database's own locale must survive a restore


@dataclass
class PgTCP:
    cluster: Cluster
    password: str  # the SUPERUSER's (the bed's admin, never the tool's)
    host: str = "127.0.0.1"
    user: str = "vetai"
    deploy_user: str = DEPLOY_ROLE
    deploy_password: str = ""
    app_user: str = APP_ROLE
    app_password: str = ""

    @property
    def port(self) -> int:
        return self.cluster.port

    def conninfo(self, db: str = "postgres", *, host: str | None = None, port: int | None = None,
                 user: str | None = None, password: str | None = None) -> dict:
        """psycopg.connect(**kwargs) arguments (password as a separate value, never in a URL)."""
        return dict(host=host or self.host, port=port or self.port, user=user or self.user,
                    password=password or self.password, dbname=db, connect_timeout=5)

    def app_conninfo(self, db: str) -> dict:
        return self.conninfo(db, user=self.app_user, password=self.app_password)

    def admin(self, *statements, db: str = "postgres") -> list:
        """Run statements (str or psycopg.sql.Composed) as the superuser, autocommit; rows of the last."""
        import psycopg

        rows: list = []
        with psycopg.connect(**self.conninfo(db), autocommit=True) as c:
            for st in statements:
                cur = c.execute(st)
                rows = cur.fetchall() if cur.description else []
        return rows

    def create_role(self, name: str, password: str | None = None, *attrs: str, member_of: tuple = ()) -> None:
        """A LOGIN role (dropped first if a previous test left it); no password on any command line."""
        from psycopg import sql

        opts = sql.SQL(" ").join(sql.SQL(a) for a in ("LOGIN", *attrs))
        st = [sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name))] if self._role_exists(name) else []
        if st:
            for db in [r[0] for r in self.admin("SELECT datname FROM pg_database WHERE datallowconn")]:
                with contextlib.suppress(Exception):
                    self.admin(*st, db=db)
            self.admin(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        create = sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(name), opts)
        if password:
            create = sql.SQL("{} PASSWORD {}").format(create, sql.Literal(password))
        self.admin(create, *[sql.SQL("GRANT {} TO {}").format(sql.Identifier(r), sql.Identifier(name))
                             for r in member_of])

    def _role_exists(self, name: str) -> bool:
        return bool(self.admin(sql_literal("SELECT 1 FROM pg_roles WHERE rolname = {}", name)))

    def create_prod_db(self, name: str, *, owner: str | None = None, app: str | None = None) -> None:
        """A database set up like production: owned by the deploy role (not a superuser), its
        own locale, CONNECT revoked from PUBLIC and granted to the app, per-database and
        per-role-in-database settings, a comment, default privileges that grant the app the
        tables migrations create, and a schema + table owned by the app role itself."""
        from psycopg import sql

        owner, app = owner or self.deploy_user, app or self.app_user
        db, o, a = sql.Identifier(name), sql.Identifier(owner), sql.Identifier(app)
        self.admin(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE {} LC_CTYPE {}").format(
                db, o, sql.Literal(PROD_COLLATE), sql.Literal(PROD_COLLATE)),
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, a),
            *[sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, sql.Identifier(k), sql.Literal(v))
              for k, v in PROD_DB_SETTINGS.items()],
            *[sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(a, db, sql.Identifier(k), sql.Literal(v))
              for k, v in PROD_APP_SETTINGS.items()],
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(PROD_COMMENT)),
        )
        self.admin(
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE"
                    " ON TABLES TO {}").format(o, a),
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}")
            .format(o, a),
            sql.SQL("CREATE SCHEMA app_cache AUTHORIZATION {}").format(a),
            sql.SQL("CREATE TABLE app_cache.sessions (id serial PRIMARY KEY, data text)"),
            sql.SQL("ALTER TABLE app_cache.sessions OWNER TO {}").format(a),
            sql.SQL("INSERT INTO app_cache.sessions (data) VALUES ('cached')"),
            db=name,
        )


def sql_literal(template: str, *values):
    from psycopg import sql

    return sql.SQL(template).format(*[sql.Literal(v) for v in values])


@pytest.fixture(scope="session")
def pg_tcp():
    """PostgreSQL on 127.0.0.1:<port>, scram auth over TCP: superuser ``vetai`` (the bed's admin),
    the deploy role ``vetai_deploy`` (NOT a superuser: CREATEDB, pg_signal_backend, pg_read_all_settings, member of
    the app role, as README's "Deploy role" grants) and the app role ``vetai_app``; random passwords."""
    password = "pw-" + secrets.token_urlsafe(18)
    # not under pytest's tmp tree: it is 0700 under root and the server runs unprivileged
    c = Cluster(Path(tempfile.mkdtemp(prefix="vetai-pgtcp-")), free_port(), resolve_bindir(), superuser="vetai",
                listen="127.0.0.1", password=password)
    c.start()
    try:
        pg = PgTCP(c, password, deploy_password="dpw-" + secrets.token_urlsafe(18),
                   app_password="apw-" + secrets.token_urlsafe(18))
        pg.create_role(pg.app_user, pg.app_password)
        pg.create_role(pg.deploy_user, pg.deploy_password, "CREATEDB", member_of=("pg_signal_backend", "pg_read_all_settings", pg.app_user))
        yield pg
    finally:
        c.destroy()


# ---------------------------------------------------------------------------- the app's own sessions


class AppSessions:
    """Connections of the app role to the live database, as a running app holds them: ``idle()``
    opens one that stays idle (a pooled connection); ``writer(table)`` a thread inserting a row
    every ``interval`` seconds, reconnecting when its session is ended (as an app's pool does).
    ``alive()`` says which idle sessions are still connected; ``close()`` ends everything."""

    def __init__(self, pg: PgTCP, dbname: str):
        self.pg, self.dbname = pg, dbname
        self.conns: list = []
        self.writers: list[tuple] = []

    def connect(self):
        import psycopg

        return psycopg.connect(**self.pg.app_conninfo(self.dbname), autocommit=True)

    def idle(self):
        c = self.connect()
        c.execute("SELECT 1")
        self.conns.append(c)
        return c

    def alive(self) -> list[bool]:
        out = []
        for c in self.conns:
            try:
                c.execute("SELECT 1")
                out.append(True)
            except Exception:  # noqa: BLE001 - ended by the swap
                out.append(False)
        return out

    def writer(self, table: str, interval: float = 0.05):
        """Insert ``(default values)`` into ``table`` until close(); returns a dict with counters."""
        import threading

        from psycopg import sql

        stats = {"ok": 0, "failed": 0, "reconnects": 0}
        stop = threading.Event()
        stmt = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(*table.split(".")))

        def run():
            conn = None
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = self.connect()
                        stats["reconnects"] += 1
                    conn.execute(stmt)
                    stats["ok"] += 1
                except Exception:  # noqa: BLE001 - session ended / database renamed: reconnect
                    stats["failed"] += 1
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                stop.wait(interval)
            with contextlib.suppress(Exception):
                conn.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.writers.append((t, stop))
        return stats

    def close(self) -> None:
        for t, stop in self.writers:
            stop.set()
            t.join(10)
        self.writers.clear()
        for c in self.conns:
            with contextlib.suppress(Exception):
                c.close()
        self.conns.clear()


# ---------------------------------------------------------------------------- an env on the bed

ROOT = Path(__file__).resolve().parents[1]
PW_VAR = "VETAI_TEST_DB_PASSWORD"
KEY_VAR = "VETAI_TEST_MANIFEST_KEY"  # storage.manifest_key_env: the key the bucket never holds


class RemoteEnv:
    """An SSH + S3 env: DB host and app host are sshd processes on loopback, the database a
    production-like one (``PgTCP.create_prod_db``) reached as the deploy role, backups in moto."""

    def __init__(self, tmp: Path, bed, pg: PgTCP, s3, known_hosts: str | None = None):
        self.bed, self.pg, self.s3 = bed, pg, s3
        self.dbname = "prod_" + uuid.uuid4().hex[:8]
        self.bucket = s3.create_bucket()
        self.inventory = tmp / "inventory.yml"
        self.tmp = tmp
        self.known_hosts = known_hosts or bed.known_hosts
        self.user, self.password = pg.deploy_user, pg.deploy_password
        self.manifest_key = "mk-" + uuid.uuid4().hex + uuid.uuid4().hex  # storage.manifest_key_env's value
        pg.create_prod_db(self.dbname)
        self.write()

    def write(self, **extra):
        app = self.bed.hosts[1] if len(self.bed.hosts) > 1 else self.bed.hosts[0]
        lines = [
            "default_env: prod",
            "environments:",
            "  prod:",
            "    protected: true",
            f"    ssh: {{user: {self.bed.user}, port: {self.bed.port}, key_file: '{self.bed.key_file}', known_hosts: '{self.known_hosts}'}}",
            f"    hosts: {{db: ['{self.bed.hosts[0]}'], app: ['{app}']}}",
            f"    database: {{name: {self.dbname}, user: {self.user}, host: 127.0.0.1, port: {self.pg.port}, password_env: {PW_VAR},"
            f" bin_dir: '{self.pg.cluster.bindir}'}}",
            f"    storage: {{type: s3, bucket: {self.bucket}, prefix: prod, region: us-east-1, endpoint_url: '{self.s3.endpoint_url}',"
            f" manifest_key_env: {KEY_VAR}}}",
        ]
        for k, v in extra.items():
            lines.append(f"    {k}: {v}")
        self.inventory.write_text("\n".join(lines) + "\n")

    def use_role(self, user: str, password: str) -> None:
        """Run the tool as another (e.g. less privileged) deploy role."""
        self.user, self.password = user, password
        self.write()

    def env_vars(self) -> dict:
        return {"VETAI_OPS_INVENTORY": str(self.inventory), PW_VAR: self.password, "VETAI_OPS_LOGS": str(self.tmp / "logs"),
                KEY_VAR: self.manifest_key}

    def cli(self, *args, timeout=300):
        env = dict(os.environ, **self.env_vars())
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *args) -> subprocess.Popen:
        env = dict(os.environ, **self.env_vars())
        return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def psql(self, sql: str, user: str | None = None) -> str:
        """psql on the live database as the deploy role (what owns the schema), or ``user``."""
        role = user or self.pg.deploy_user  # the socket admits the superuser only: it becomes the role
        return self.pg.cluster.psql(f'SET ROLE "{role}"; {sql}', db=self.dbname)

    def objects(self) -> list[str]:
        resp = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def uploads(self) -> list:
        return self.s3.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def revision(self) -> str:
        if not self.psql("select to_regclass('public.alembic_version')"):
            return "base"
        return self.psql("select coalesce((select version_num from alembic_version), 'base')")

    def databases(self) -> list[str]:
        """Every database of this env (live, restore copies, retired ones)."""
        rows = self.pg.admin(sql_literal("SELECT datname FROM pg_database WHERE starts_with(datname, {}) ORDER BY 1",
                                         self.dbname))
        return [r[0] for r in rows]


@pytest.fixture
def remote_env(tmp_path, ssh_bed, pg_tcp, s3_server, monkeypatch):
    if not s3_server.running:
        s3_server.start()
    re_ = RemoteEnv(tmp_path, ssh_bed, pg_tcp, s3_server)
    for k, v in re_.env_vars().items():
        monkeypatch.setenv(k, v)
    yield re_
    for h in ssh_bed.hosts:
        if not ssh_bed.alive(h):
            ssh_bed.restart(h)
    for db in re_.databases():
        pg_tcp.admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture
def app_sessions(remote_env):
    """The app role's own sessions on the env's live database (see AppSessions)."""
    s = AppSessions(remote_env.pg, remote_env.dbname)
    try:
        yield s
    finally:
        s.close()


# ---------------------------------------------------------------------------- S3 (moto server)

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",  # distinct values: a leak test can tell which one leaked
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never look for instance credentials (no traffic off loopback)
}
_AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class S3Server(str):
    """moto's S3 HTTP endpoint in this process; the object IS the endpoint URL string
    (``Storage(endpoint_url=s3_server)`` works) with helpers attached. ``stop()`` really
    closes the port (connections are refused, like a dead endpoint); ``start()`` brings it
    back with the same state (moto keeps buckets in memory across restarts)."""

    def __new__(cls, port: int):
        return super().__new__(cls, f"http://127.0.0.1:{port}")

    def __init__(self, port: int):
        self.port = port
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.region = "us-east-1"
        self._srv = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        if self._srv is not None:
            return
        srv = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        srv.start()
        self._srv = srv

    def stop(self) -> None:
        srv, self._srv = self._srv, None
        if srv is None:
            return
        srv.stop()  # shutdown() ends serve_forever but leaves the socket listening...
        with contextlib.suppress(Exception):
            srv._server.server_close()  # ...so close it: clients get "connection refused"

    @property
    def running(self) -> bool:
        return self._srv is not None

    def client(self):
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=self.region)

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"vetai-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage(self, bucket: str | None = None, **kw) -> Storage:
        """A Storage model (type s3) pointing at this endpoint; creates a fresh bucket if none given."""
        args = dict(type="s3", bucket=bucket or self.create_bucket(), region=self.region,
                    endpoint_url=self.endpoint_url)
        args.update(kw)
        return Storage(**args)


@pytest.fixture(scope="session")
def s3_server():
    """moto S3 at ``.endpoint_url``; ``.create_bucket() .storage(**kw) .client() .stop() .start()``."""
    import_or_skip("moto.server", "moto[s3,server] + flask + flask-cors are needed for the S3 tests")
    saved = {k: os.environ.get(k) for k in (*_AWS_ENV, *_AWS_UNSET)}
    os.environ.update(_AWS_ENV)
    for k in _AWS_UNSET:
        os.environ.pop(k, None)
    server = S3Server(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
