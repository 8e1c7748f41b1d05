"""One SSH connection to a host: host keys checked, keepalive, one reconnect after a cut.

Host keys: Fabric's default is "load nothing, auto-add anything". Here the client
loads ONLY the environment's known_hosts file and rejects unknown keys
(:class:`paramiko.RejectPolicy`); a changed key is always refused. Both end in a
:class:`~vetai_ops.errors.HostKeyError` that says "host key", names host:port, and
tells the operator how to fix it.

Liveness: the transport sends a keepalive every :data:`KEEPALIVE_S` seconds
(``Transport.set_keepalive``), so a connection cut in the network is noticed
(``Transport.is_active()`` turns false) and the next session opens a new connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import warnings

import paramiko
from fabric import Config, Connection

from ...config import SSHConfig
from ...errors import ConfigError, HostKeyError, TargetError

KEEPALIVE_S = 30


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
        warnings.warn(f"unknown SSH host key for {hostname} ({_fingerprint(key)}) accepted for this run only")


class Link:
    """The (lazy) Fabric connection to one host, and the sessions opened over it."""

    def __init__(self, host: str, ssh: SSHConfig, *, protected: bool):
        self.host = host
        self.ssh = ssh
        self.protected = protected
        self.port = int(ssh.port)
        self.known_hosts = os.path.expanduser(ssh.known_hosts)
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

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

    def _open(self, conn: Connection) -> None:
        """``conn.open()``, every failure turned into an error that says what to do."""
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

    def connect(self) -> Connection:
        with self._lock:
            if self._conn is not None and self._conn.is_connected:
                return self._conn
            conn = self._new_connection()
            self._open(conn)
            conn.transport.set_keepalive(KEEPALIVE_S)
            self._conn = conn
            return conn

    def transport(self) -> paramiko.Transport:
        t = self.connect().transport
        if t is None or not t.is_active():
            raise TargetError(f"SSH connection to {self.address} was lost", "check the host and the network, then retry")
        return t

    def open_session(self) -> paramiko.Channel:
        try:
            return self.transport().open_session(timeout=self.ssh.connect_timeout)
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
            self.drop()
            try:
                return self.transport().open_session(timeout=self.ssh.connect_timeout)
            except TargetError:
                raise
            except (paramiko.SSHException, OSError, EOFError):
                raise TargetError(
                    f"cannot open an SSH session on {self.address}: {e}", "check the host and sshd's MaxSessions"
                ) from None

    def live_transport(self, dead: paramiko.Transport | None = None) -> paramiko.Transport:
        """The current transport, reconnecting when it (or ``dead``, one a caller saw fail) is
        gone: a tunnel opened before an SSH reconnect keeps working over the new connection."""
        with self._lock:
            if self._conn is not None and (dead is not None and self._conn.transport is dead
                                           or not self._conn.is_connected):
                self._drop()
        return self.transport()

    def sftp(self) -> paramiko.SFTPClient:
        conn = self.connect()
        try:
            return conn.sftp()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TargetError(f"SFTP is not available on {self.address}: {e}",
                              "enable `Subsystem sftp` in the host's sshd_config") from None

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def drop(self) -> None:
        """Close the connection (the next use opens a new one)."""
        with self._lock:
            self._drop()
