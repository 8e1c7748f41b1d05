"""A host reached over SSH (Fabric ``Connection`` + the paramiko channel underneath).

Why not ``Connection.run()``: Fabric decodes output to text, which corrupts binary
streams (custom-format dumps). Every command here runs on its own paramiko session
channel (``transport.open_session()`` + ``exec_command``) and moves bytes untouched.

Host keys: Fabric's default is "load nothing, auto-add anything". Here the client
loads ONLY the environment's known_hosts file and rejects unknown keys
(:class:`paramiko.RejectPolicy`); a changed key is always refused. Both end in a
:class:`~vetai_ops.errors.HostKeyError` that says "host key", names host:port, and
tells the operator how to fix it.

Stopping a command: sshd ignores RFC 4254 "signal" requests for root logins, and a
closed channel only reaches a command when it next writes. So every command first
reports its PID (its shell is the session leader sshd made with setsid, hence also the
process group of a whole pipeline) on stderr, and :meth:`SSHProcess.kill` sends
``kill -KILL -<pid>`` over a second channel.

Secrets never travel as SSH environment variables (sshd usually has no AcceptEnv)
nor in argv: they reach the host as 0600 files via :meth:`SSHTarget.put_file`.
"""

from __future__ import annotations

import contextlib
import os
import secrets as _secrets
import select
import socket
import stat
import subprocess
import threading
from typing import Callable, Iterator, Sequence

import paramiko
from fabric import Config, Connection
from paramiko.sftp import CMD_HANDLE, CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_WRITE
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile

from ..config import SSHConfig
from ..errors import CommandFailed, ConfigError, HostKeyError, TargetError
from ..secrets import redact
from .base import keep_tail, Result, shell_join

KEEPALIVE_S = 30
_PID_MARK = b"vetai-ops-pid:"  # first stderr line of every command: the remote shell's PID


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(f"host key for {hostname} not in known_hosts")
        self.hostname = hostname
        self.key = key


class _Reject(paramiko.RejectPolicy):
    """RejectPolicy that keeps the offered key so the error can show its fingerprint."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname, key)


class _Warn(paramiko.MissingHostKeyPolicy):
    """host_key_policy: warn (unprotected envs only): accept for this run, never save."""

    def missing_host_key(self, client, hostname, key):
        import warnings

        warnings.warn(f"unknown SSH host key for {hostname} ({_fingerprint(key)}) accepted for this run only")


class SSHProcess:
    """A command started on a session channel; mirrors LocalProcess."""

    def __init__(self, channel: paramiko.Channel, *, stdin: bool, label: str, target: "SSHTarget | None" = None):
        self._ch = channel
        self._label = label
        self._target = target
        self.pid: int | None = None  # of the remote shell = its process group
        self._pid_seen = threading.Event()
        self.stdout = channel.makefile("rb")
        self.stdin = channel.makefile_stdin("wb") if stdin else None
        if not stdin:
            channel.shutdown_write()  # like stdin=DEVNULL: the command sees EOF at once
        self._err = bytearray()
        self._t = threading.Thread(target=self._drain, name=f"ssh-stderr-{label}", daemon=True)
        self._t.start()

    def _drain(self) -> None:
        head = b""  # stderr up to the end of the PID line
        try:
            while True:
                chunk = self._ch.recv_stderr(65536)
                if not chunk:
                    break
                if not self._pid_seen.is_set():
                    head += chunk
                    line, nl, rest = head.partition(b"\n")
                    if not nl and len(head) < 64:
                        continue
                    if line.startswith(_PID_MARK) and line[len(_PID_MARK):].isdigit():
                        self.pid = int(line[len(_PID_MARK):])
                        chunk = rest
                    else:
                        chunk = head
                    self._pid_seen.set()
                keep_tail(self._err, chunk)
        except Exception:
            pass
        finally:
            if not self._pid_seen.is_set() and head:  # ended before a full first line
                keep_tail(self._err, head)
            self._pid_seen.set()

    def wait(self, timeout: float | None = None) -> int:
        if self.stdin is not None and not self.stdin.closed:
            try:
                self.stdin.close()  # flushes, then channel.shutdown_write() -> EOF on the host
            except (OSError, EOFError, paramiko.SSHException):
                pass
        # status_event is set by exit-status or by the channel closing (then exit_status
        # stays -1: killed by a signal, or the connection dropped)
        if not self._ch.status_event.wait(timeout):
            raise subprocess.TimeoutExpired(self._label, timeout)
        self._t.join(5)
        return self._ch.exit_status

    def stderr_text(self) -> str:
        return redact(bytes(self._err).decode("utf-8", "replace"))

    def kill(self) -> None:
        """Stop the command and everything in its pipeline on the host, then drop the channel."""
        ch = self._ch
        if ch.closed or ch.status_event.is_set():
            with contextlib.suppress(Exception):
                ch.close()
            return
        self._pid_seen.wait(2.0)
        killed = False
        if self.pid and self._target is not None:
            with contextlib.suppress(Exception):  # a refused channel or a dead link: the fallback below
                killer = self._target.start(["kill", "-KILL", "--", f"-{self.pid}"])
                killed = killer.wait(10) == 0
        if killed:
            ch.status_event.wait(5)  # the command's end reaches us; its channel closes
        # else ask sshd to signal it (RFC 4254 6.9; honoured for non-root logins). Never on a
        # channel sshd already closed: a request for an unknown channel makes sshd drop the
        # whole connection (every other command, the SFTP session and the tunnel with it)
        if not killed and not ch.closed and not ch.status_event.is_set():
            with contextlib.suppress(Exception):
                m = paramiko.Message()
                m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
                m.add_int(ch.remote_chanid)
                m.add_string("signal")
                m.add_boolean(False)
                m.add_string("KILL")
                ch.transport._send_user_message(m)
        with contextlib.suppress(Exception):
            ch.close()

    @property
    def returncode(self) -> int | None:
        return self._ch.exit_status if self._ch.status_event.is_set() else None

    @property
    def connection_lost(self) -> bool:
        t = self._ch.get_transport()
        return t is None or not t.is_active()


class SSHTarget:
    """One host over SSH. Connects lazily on first use (or explicitly via :meth:`connect`)."""

    is_local = False

    def __init__(self, host: str, ssh: SSHConfig, *, protected: bool = True):
        self.name = host
        self.host = host
        self.ssh = ssh
        self.protected = protected
        self.port = int(ssh.port)
        self.known_hosts = os.path.expanduser(ssh.known_hosts)
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    # ------------------------------------------------------------ connection

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"SSHTarget({self.ssh.user + '@' if self.ssh.user else ''}{self.address})"

    def _known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _keyscan_hint(self) -> str:
        port = "" if self.port == 22 else f"-p {self.port} "
        return (
            f"verify the server's fingerprint out of band (on the host: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`),"
            f" then add it: `ssh-keyscan {port}{self.host} >> {self.ssh.known_hosts}`"
        )

    def _check_key_file(self, path: str) -> None:
        """Like ssh: a private key others can read (or replace) is refused, with the fix."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise ConfigError(f"SSH key file {path} (ssh.key_file) for {self.address} cannot be read: "
                              f"{e.strerror or e}", "fix ssh.key_file in the inventory") from None
        if st.st_uid not in (os.geteuid(), 0):
            raise ConfigError(f"SSH key file {path} belongs to another user (uid {st.st_uid}): refused",
                              f"use a key of your own (`chown {os.geteuid()} {path}`)")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"SSH key file {path} is accessible by other users (permissions {stat.S_IMODE(st.st_mode):04o}): "
                "a private key must be readable by its owner only; refused",
                f"chmod 600 {path}",
            )

    def _new_connection(self) -> Connection:
        ssh = self.ssh
        connect_kwargs: dict = {"banner_timeout": ssh.connect_timeout, "auth_timeout": ssh.connect_timeout}
        if ssh.key_file:
            key = os.path.expanduser(ssh.key_file)
            self._check_key_file(key)
            connect_kwargs.update(key_filename=key, look_for_keys=False, allow_agent=False)
        # an empty paramiko SSHConfig: no ~/.ssh/config surprises (ProxyJump, IdentityFile...)
        cfg = Config(ssh_config=paramiko.SSHConfig())
        conn = Connection(
            self.host,
            user=ssh.user,
            port=self.port,
            config=cfg,
            connect_timeout=max(1, int(round(ssh.connect_timeout))),
            connect_kwargs=connect_kwargs,
        )
        client: paramiko.SSHClient = conn.client
        # Fabric's client auto-adds unknown keys: replace its policy and load ONLY our file
        if self.protected or ssh.host_key_policy == "reject":
            client.set_missing_host_key_policy(_Reject())
        else:
            client.set_missing_host_key_policy(_Warn())
        if os.path.exists(self.known_hosts):
            try:
                client.load_system_host_keys(self.known_hosts)  # read-only: never written back
            except (OSError, paramiko.SSHException) as e:
                raise HostKeyError(
                    f"cannot read known_hosts file {self.known_hosts} for host key checks of {self.address}: {e}",
                    "fix the file (one `host keytype base64key` per line)",
                ) from None
        return conn

    def connect(self) -> Connection:
        with self._lock:
            if self._conn is not None and self._conn.is_connected:
                return self._conn
            conn = self._new_connection()
            try:
                conn.open()
            except _UnknownHostKey as e:
                conn.close()
                raise HostKeyError(
                    f"unknown SSH host key for {self.address}: {self._known_hosts_name()} is not in "
                    f"{self.known_hosts} (server offered {_fingerprint(e.key)}); connection refused",
                    self._keyscan_hint(),
                ) from None
            except paramiko.BadHostKeyException as e:
                conn.close()
                raise HostKeyError(
                    f"SSH host key CHANGED for {self.address}: known_hosts ({self.known_hosts}) has "
                    f"{_fingerprint(e.expected_key)} but the server offered {_fingerprint(e.key)}."
                    " This may be a man-in-the-middle attack or a reinstalled host; connection refused",
                    f"confirm the new fingerprint with the host's owner, then remove the old entry "
                    f"(`ssh-keygen -f {self.ssh.known_hosts} -R '{self._known_hosts_name()}'`) and add the new one "
                    f"(`ssh-keyscan {'-p %d ' % self.port if self.port != 22 else ''}{self.host} >> {self.ssh.known_hosts}`)",
                ) from None
            except paramiko.AuthenticationException as e:
                conn.close()
                who = f"{self.ssh.user or conn.user}@{self.address}"
                raise TargetError(
                    f"SSH authentication failed for {who}: {e}",
                    f"check ssh.key_file ({self.ssh.key_file or 'not set'}) and that its public key is in the "
                    f"host's authorized_keys for user {self.ssh.user or conn.user}",
                ) from None
            except (socket.timeout, TimeoutError) as e:
                conn.close()
                raise TargetError(
                    f"SSH connection to {self.address} timed out after {self.ssh.connect_timeout}s ({e or 'timeout'})",
                    f"check that the host is up and port {self.port} is reachable (firewall, VPN), or raise ssh.connect_timeout",
                ) from None
            except (paramiko.ssh_exception.NoValidConnectionsError, OSError) as e:
                conn.close()
                raise TargetError(
                    f"cannot connect to {self.address} over SSH: {getattr(e, 'strerror', None) or e}",
                    f"check the host name, that sshd runs there and listens on port {self.port} (ssh.port)",
                ) from None
            except paramiko.SSHException as e:
                conn.close()
                raise TargetError(
                    f"SSH handshake with {self.address} failed: {e}",
                    f"check that {self.address} runs an SSH server and try `ssh -p {self.port} {self.host}`",
                ) from None
            conn.transport.set_keepalive(KEEPALIVE_S)
            self._conn = conn
            return conn

    def _transport(self) -> paramiko.Transport:
        conn = self.connect()
        t = conn.transport
        if t is None or not t.is_active():
            raise TargetError(f"SSH connection to {self.address} was lost", "check the host and the network, then retry")
        return t

    def _open_session(self) -> paramiko.Channel:
        try:
            return self._transport().open_session(timeout=self.ssh.connect_timeout)
        except TargetError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as e:
            t = self._conn.transport if self._conn is not None else None
            if t is not None and t.is_active():
                # the server refused one more channel (MaxSessions): the connection and the
                # commands and tunnels running over it are fine; do not tear them down
                raise TargetError(f"{self.address} refused a new SSH session: {e}",
                                  "raise sshd's MaxSessions or run fewer commands at once") from None
            # the connection died (host rebooted, sshd killed): one reconnect attempt
            with self._lock:
                self._drop()
            try:
                return self._transport().open_session(timeout=self.ssh.connect_timeout)
            except TargetError:
                raise
            except (paramiko.SSHException, OSError, EOFError):
                raise TargetError(
                    f"cannot open an SSH session on {self.address}: {e}", "check the host and sshd's MaxSessions"
                ) from None

    def _live_transport(self, dead: paramiko.Transport | None = None) -> paramiko.Transport:
        """The current transport, reconnecting when it (or ``dead``, one a caller saw fail) is
        gone: a tunnel opened before an SSH reconnect keeps working over the new connection."""
        with self._lock:
            if self._conn is not None and (dead is not None and self._conn.transport is dead
                                           or not self._conn.is_connected):
                self._drop()
        return self._transport()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------ commands

    def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None, stdin: bool = False) -> SSHProcess:
        ch = self._open_session()
        try:
            ch.exec_command(f"echo {_PID_MARK.decode()}$$ >&2; exec {shell_join(argv, env)}")
        except (paramiko.SSHException, OSError, EOFError) as e:
            with contextlib.suppress(Exception):
                ch.close()
            raise TargetError(f"could not start {argv[0]} on {self.address}: {e}") from None
        return SSHProcess(ch, stdin=stdin, label=f"{argv[0]}@{self.name}", target=self)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> Result:
        proc = self.start(argv, env=env, stdin=input is not None)
        timed_out = threading.Event()
        timer = None
        if timeout is not None:

            def _expire():
                timed_out.set()
                proc.kill()

            timer = threading.Timer(timeout, _expire)
            timer.daemon = True
            timer.start()
        writer = None
        write_err: list[BaseException] = []
        if input is not None:

            def _write():
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(input)
                    proc.stdin.close()
                except BaseException as e:  # the command may exit without reading all input
                    write_err.append(e)
                    with contextlib.suppress(Exception):
                        proc._ch.shutdown_write()

            writer = threading.Thread(target=_write, daemon=True)
            writer.start()
        try:
            out = proc.stdout.read()
            if writer is not None:
                writer.join()
            rc = proc.wait()
        except (OSError, EOFError, paramiko.SSHException) as e:
            proc.kill()
            if timed_out.is_set():
                raise TargetError(f"{argv[0]} timed out after {timeout}s on {self.name}") from None
            raise TargetError(f"{argv[0]} on {self.address}: SSH connection lost ({e})",
                              "check the host and the network") from None
        finally:
            if timer is not None:
                timer.cancel()
        if timed_out.is_set():
            raise TargetError(f"{argv[0]} timed out after {timeout}s on {self.name}")
        err = proc.stderr_text()
        if rc == -1 and proc.connection_lost:
            with self._lock:
                self._drop()
            raise TargetError(f"{argv[0]} on {self.address}: SSH connection lost before the command finished",
                              "check the host and the network, then retry")
        if rc == 127 and ("not found" in err or "No such file" in err):
            raise CommandFailed(f"{argv[0]}: command not found on {self.name}", "install it or fix PATH",
                                returncode=rc, stderr=err)
        res = Result(rc, out, err)
        if check and rc != 0:
            raise CommandFailed(
                f"{argv[0]} failed on {self.name} (exit {rc}): {err.strip()[-500:]}",
                returncode=rc,
                stderr=err,
            )
        return res

    # ------------------------------------------------------------ files

    def _sftp(self) -> paramiko.SFTPClient:
        conn = self.connect()
        try:
            return conn.sftp()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TargetError(f"SFTP is not available on {self.address}: {e}",
                              "enable `Subsystem sftp` in the host's sshd_config") from None

    def put_file(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` so no other user can ever read it.

        The bytes go to a fresh sibling file CREATED with 0600 (O_EXCL, permissions in
        the SFTP open request, chmod'ed again before the first write in case of a
        server-side umask), then renamed over ``path`` (atomic; replaces e.g. an empty
        file from :meth:`mktemp`). ``mode`` is applied before the rename.
        """
        sftp = self._sftp()
        tmp = f"{path}.vetai-{_secrets.token_hex(6)}"
        attrs = SFTPAttributes()
        attrs.st_mode = 0o600
        handle = None
        try:
            t, msg = sftp._request(CMD_OPEN, tmp, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL, attrs)
            if t != CMD_HANDLE:
                raise OSError("SFTP open did not return a handle")
            handle = SFTPFile(sftp, msg.get_binary(), "wb", -1)
            sftp.chmod(tmp, 0o600)
            handle.write(data)
            handle.close()
            handle = None
            if mode != 0o600:
                sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, path)
        except (OSError, paramiko.SSHException, EOFError) as e:
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
            with contextlib.suppress(Exception):
                sftp.remove(tmp)
            raise TargetError(f"could not write {path} on {self.address}: {e}") from None

    def remove(self, path: str) -> None:
        try:
            self._sftp().remove(path)
        except FileNotFoundError:
            pass
        except (OSError, paramiko.SSHException) as e:
            raise TargetError(f"could not remove {path} on {self.address}: {e}") from None

    def mktemp(self, suffix: str = "") -> str:
        argv = ["mktemp", "--tmpdir", "vetai-ops-XXXXXXXXXX"]
        if suffix:
            argv.insert(1, f"--suffix={suffix}")
        return self.run(argv).text.strip()

    def free_bytes(self, path: str) -> int:
        out = self.run(["df", "-Pk", "--", path]).text.strip().splitlines()
        try:
            return int(out[-1].split()[3]) * 1024
        except (IndexError, ValueError):
            raise TargetError(f"could not parse `df -Pk {path}` output on {self.address}: {out!r}") from None

    def cpu_count(self) -> int:
        try:
            return max(1, int(self.run(["nproc"]).text.strip()))
        except ValueError:
            return 1

    def host_path(self, operator_path: str | None) -> str | None:
        return None  # another machine: the operator's files are not there

    # ------------------------------------------------------------ tunnels

    @contextlib.contextmanager
    def forward(self, remote_host: str, remote_port: int) -> Iterator[int]:
        """Yield a port on 127.0.0.1 whose connections are tunnelled (direct-tcpip)
        through this SSH connection to ``remote_host:remote_port`` as seen from the host."""
        self._transport()  # connect now: a bad host key or a refused login fails here, not per connection
        fwd = _Forwarder(self._live_transport, remote_host, int(remote_port))
        try:
            yield fwd.port
        finally:
            fwd.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Forwarder:
    """A tiny `ssh -L 127.0.0.1:0:host:port`: one accept thread, one pump thread per client."""

    def __init__(self, transport: Callable[..., paramiko.Transport], host: str, port: int):
        self._t = transport  # the target's live transport (reconnects after a drop)
        self._dest = (host, port)
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, paramiko.Channel]] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name=f"ssh-fwd-{self.port}", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                r, _, _ = select.select([self._srv], [], [], 0.2)
                if not r:
                    continue
                sock, peer = self._srv.accept()
            except OSError:
                return
            ch = None
            t = None
            for _ in range(2):  # a dead transport: once more over a new SSH connection
                try:
                    t = self._t(t)
                    ch = t.open_channel("direct-tcpip", self._dest, peer, timeout=10)
                    break
                except Exception:
                    if t is not None and t.is_active():
                        break  # the host refused this destination: no point reconnecting
            if ch is None:
                sock.close()  # the client sees a closed connection (like ssh -L when the target refuses)
                continue
            with self._lock:
                self._pairs.append((sock, ch))
            th = threading.Thread(target=self._pump, args=(sock, ch), daemon=True)
            th.start()
            self._threads.append(th)

    def _pump(self, sock: socket.socket, ch: paramiko.Channel) -> None:
        try:
            while not self._closing.is_set():
                r, _, _ = select.select([sock, ch], [], [], 0.2)
                if sock in r:
                    data = sock.recv(65536)
                    if not data:
                        break
                    ch.sendall(data)
                if ch in r:
                    data = ch.recv(65536)
                    if not data:
                        break
                    sock.sendall(data)
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception):
                ch.close()
            with contextlib.suppress(Exception):
                sock.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(Exception):
            self._srv.close()
        self._acceptor.join(2)
        with self._lock:
            pairs = list(self._pairs)
        for sock, ch in pairs:
            with contextlib.suppress(Exception):
                ch.close()
            with contextlib.suppress(Exception):
                sock.close()
        for th in self._threads:
            th.join(2)
