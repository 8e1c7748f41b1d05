"""This machine as a target (the embedded local environment, tests, the operator side)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import Iterator, Sequence

from ..errors import CommandFailed, TargetError
from ..secrets import child_environ, redact
from .base import Result, keep_tail


class LocalProcess:
    def __init__(self, popen: subprocess.Popen):
        self._p = popen
        self.stdin = popen.stdin
        self.stdout = popen.stdout
        self._err = bytearray()
        # drain stderr in the background so a chatty command never blocks on a full pipe
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        assert self._p.stderr is not None
        for chunk in iter(lambda: self._p.stderr.read(65536), b""):
            keep_tail(self._err, chunk)

    @property
    def pid(self) -> int:
        return self._p.pid

    def wait(self, timeout: float | None = None) -> int:
        if self.stdin is not None and not self.stdin.closed:
            try:
                self.stdin.close()
            except BrokenPipeError:
                pass
        rc = self._p.wait(timeout)
        self._t.join(5)
        return rc

    def stderr_text(self) -> str:
        return redact(bytes(self._err).decode("utf-8", "replace"))

    def kill(self) -> None:
        """Kill the command and its whole pipeline (it leads its own process group)."""
        if self._p.poll() is None:
            try:
                os.killpg(self._p.pid, signal.SIGKILL)
            except OSError:
                self._p.kill()


class LocalTarget:
    def __init__(self, name: str = "local"):
        self.name = name

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        # never the password variables: a pg tool that needs the password gets a PGPASSFILE
        full = child_environ(dict(os.environ))
        if env:
            full.update(env)
        return full

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> Result:
        try:
            cp = subprocess.run(
                [str(a) for a in argv], input=input, env=self._env(env), capture_output=True, timeout=timeout
            )
        except FileNotFoundError as e:
            raise TargetError(f"{argv[0]}: command not found on {self.name}", "install it or fix PATH") from e
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"{argv[0]} timed out after {timeout}s on {self.name}") from e
        res = Result(cp.returncode, cp.stdout, redact(cp.stderr.decode("utf-8", "replace")))
        if check and cp.returncode != 0:
            raise CommandFailed(
                f"{argv[0]} failed on {self.name} (exit {cp.returncode}): {res.stderr.strip()[-500:]}",
                returncode=cp.returncode,
                stderr=res.stderr,
            )
        return res

    def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None, stdin: bool = False) -> LocalProcess:
        try:
            p = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env(env),
                bufsize=0,
                # its own process group: kill() reaches every stage of a pipeline, and the
                # terminal's Ctrl-C reaches only vetai-ops, which then stops it in order
                process_group=0,
            )
        except FileNotFoundError as e:
            raise TargetError(f"{argv[0]}: command not found on {self.name}", "install it or fix PATH") from e
        return LocalProcess(p)

    def put_file(self, data: bytes, path: str, mode: int = 0o600) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
        finally:
            os.close(fd)

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def mktemp(self, suffix: str = "") -> str:
        fd, path = tempfile.mkstemp(prefix="vetai-ops-", suffix=suffix)
        os.close(fd)
        return path

    def free_bytes(self, path: str) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def cpu_count(self) -> int:
        return os.cpu_count() or 1

    def host_path(self, operator_path: str | None) -> str | None:
        return operator_path  # this machine is the operator's

    def has_command(self, tool: str) -> bool:
        return shutil.which(tool) is not None  # this machine: looked up without a subprocess

    @contextlib.contextmanager
    def reach(self, host: str, port: int) -> Iterator[tuple[str, int]]:
        yield host, port  # this machine is the operator's: no tunnel

    def close(self) -> None:
        pass
