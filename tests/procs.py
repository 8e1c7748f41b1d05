"""Running the tool's CLI, and watching its processes without guessing at time.

The loopback "hosts" of the SSH bed and the local env both run their commands on this
machine, so a test can find the pg_dump / pg_restore a run started (by program and by this
test's database name: other xdist workers run their own), read its argv and environment
from /proc, and freeze it (SIGSTOP) to look at it or to act while the run is certainly
inside it. Waits are for an event a background CLI reaches, and end when the CLI exits.
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(env_extra: dict | None, without: tuple[str, ...]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in without}
    env.update(env_extra or {})
    return env


def cli(*args: str, env_extra: dict | None = None, input: str | None = None, timeout: float = 300,
        without: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The real CLI (``python -m invoke``) of this checkout, its output captured, with no terminal
    on stdin (like cron / CI) unless ``input`` is typed into it. ``env_extra`` adds to this
    process's environment, ``without`` takes variables out of it."""
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=_env(env_extra, without),
                          capture_output=True, text=True, timeout=timeout, **stdin)


def cli_bg(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    """:func:`cli` started in the background (to wait for a state it reaches, signal it, ...)."""
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=_env(env_extra, ()),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_until(pred, proc, limit: float = 240.0) -> bool:
    """Poll ``pred`` while the background CLI ``proc`` runs: the wait is for a state the run
    reaches, not a guess at the CLI's start-up time. False once the CLI has exited without it
    (``limit`` only bounds a hung run; pytest-timeout would too)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        if proc.poll() is not None:
            return pred()
        time.sleep(0.01)
    return False


def wait_for(pred, timeout: float = 60.0, step: float = 0.05, proc=None) -> bool:
    """Poll ``pred`` until it holds (False after ``timeout``). With ``proc`` (a CLI started in
    the background) the wait is for an event, not a guess at the CLI's start-up time: it lasts
    as long as that process runs (see :func:`wait_until`) and ends at once if it exits."""
    if proc is not None:
        return wait_until(pred, proc)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def pids(prog: str, *needles: str) -> list[int]:
    """PIDs of ``prog`` on this machine whose argv holds every needle."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == prog and all(any(n in a for a in argv) for n in needles):
            out.append(int(d))
    return out


def argv(pid: int) -> list[str]:
    return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(kv.decode(errors="replace").split("=", 1) for kv in raw.split(b"\0") if b"=" in kv)


@contextlib.contextmanager
def frozen(proc, prog: str, *needles: str):
    """Wait until the CLI ``proc`` runs ``prog`` (with ``needles`` in its argv), freeze it with
    SIGSTOP for the body, thaw it after. Yields the frozen PIDs."""
    assert wait_until(lambda: bool(pids(prog, *needles)), proc), f"{prog} {' '.join(needles)} never started"
    found = pids(prog, *needles)
    for pid in found:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield found
    finally:
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


class PtyCli:
    """The CLI running on a real pseudo-terminal (see :func:`pty_cli`): ``seen`` is all it has
    written to that terminal so far, filled by a drain thread."""

    def __init__(self, pid: int, fd: int):
        self.pid, self.fd, self.seen, self.status = pid, fd, bytearray(), None

    def _drain(self) -> None:
        while self.fd is not None:  # None once hung up (a number the OS may give to another file)
            try:
                b = os.read(self.fd, 65536)
            except (OSError, TypeError):
                return
            if not b:
                return
            self.seen.extend(b)

    def write(self, data: bytes) -> None:
        """Type on the terminal."""
        os.write(self.fd, data)

    def hangup(self) -> None:
        """Close the terminal: the kernel sends SIGHUP to its session, later writes fail."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def wait(self) -> int:
        """The CLI's exit code, once it ends."""
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(self.status)


@contextlib.contextmanager
def pty_cli(env: dict, *args: str):
    """Run ``python -m invoke *args`` in this checkout on a new pseudo-terminal (the operator's
    shell on a terminal) with ``env``; yields a :class:`PtyCli`. On the way out a CLI that has
    not ended (the body failed) is killed and reaped, and the terminal is closed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing of pytest's may run here, whatever happens
        try:
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "invoke", *args], env)
        finally:
            os._exit(127)
    run = PtyCli(pid, fd)
    threading.Thread(target=run._drain, daemon=True).start()
    try:
        yield run
    finally:
        if run.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            run.wait()
        run.hangup()
