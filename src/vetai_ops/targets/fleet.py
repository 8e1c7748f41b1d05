"""Work on many hosts at once, the way Ansible's ``forks`` does.

:func:`each_host` runs one function per target on a bounded thread pool and hands the
outcomes back IN THE CALLER'S THREAD, in the order they finish: the caller reports them
(events, journal) from one thread, so sinks never see concurrent writes.

Why threads are safe here: each target is used by one worker at a time; an SSH target
opens its own connection (one per host, cached for the run) and every command runs on its
own paramiko channel, which paramiko multiplexes over the transport's own thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from .base import Target

DEFAULT_FORKS = 16  # Ansible's default is 5; health checks mostly wait on the network


@dataclass
class HostOutcome:
    target: Target
    value: Any = None
    error: Exception | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def host(self) -> str:
        return self.target.name


def _timed(fn: Callable[[Target], Any], t: Target) -> HostOutcome:
    t0 = time.monotonic()
    try:
        v = fn(t)
    except Exception as e:  # noqa: BLE001 - reported per host by the caller
        return HostOutcome(t, None, e, time.monotonic() - t0)
    return HostOutcome(t, v, None, time.monotonic() - t0)


def each_host(targets: Sequence[Target], fn: Callable[[Target], Any], *, forks: int = DEFAULT_FORKS) -> Iterator[HostOutcome]:
    """Run ``fn(target)`` on every target, at most ``forks`` at a time; yield each
    :class:`HostOutcome` as it finishes. An exception of ``fn`` is the outcome's ``error``
    (never raised here); KeyboardInterrupt in the caller cancels what has not started."""
    targets = list(targets)
    if len(targets) <= 1 or forks <= 1:
        for t in targets:
            yield _timed(fn, t)
        return
    pool = ThreadPoolExecutor(max_workers=min(forks, len(targets)), thread_name_prefix="host")
    try:
        pending = {pool.submit(_timed, fn, t) for t in targets}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            # several finished together: report them in inventory order
            for f in sorted(done, key=lambda f: targets.index(f.result().target)):
                yield f.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def summary(what: str, outcomes: Sequence[HostOutcome], failed: set[str] | None = None) -> str:
    """``restart: 15 ok, 1 failed; slowest app7 (1.04s)`` (``failed``: hosts that failed for
    another reason, e.g. their health gate after an ok restart)."""
    bad = {o.host for o in outcomes if not o.ok} | (failed or set())
    n_ok = sum(1 for o in outcomes if o.host not in bad)
    line = f"{what}: {n_ok} ok, {len(bad)} failed"
    if outcomes:
        slow = max(outcomes, key=lambda o: o.duration_s)
        line += f"; slowest {slow.host} ({slow.duration_s:.2f}s)"
    return line
