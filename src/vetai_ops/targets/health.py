"""HTTP health checks fetched ON each host (so localhost-only endpoints work), on many hosts at once."""

from __future__ import annotations

import time

from ..errors import short_error
from .fleet import each_host, summary


def http_check(target, url: str, timeout: float) -> tuple[bool, str]:
    """GET url on the host itself (python3 there, else curl); returns (ok, detail)."""
    code = (
        "import sys,urllib.request\n"
        "try:\n"
        "    r=urllib.request.urlopen(sys.argv[1],timeout=float(sys.argv[2]))\n"
        "    print(r.status)\n"
        "except Exception as e:\n"
        "    print(getattr(e,'code',0) or 0, type(e).__name__, str(e)[:200]); sys.exit(1)\n"
    )
    res = target.run(["python3", "-c", code, url, str(timeout)], check=False, timeout=timeout + 10)
    if res.returncode == 127:  # no python3 on that host: curl
        # `--`: a URL is never read as a curl option
        res = target.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout), "--", url],
                         check=False, timeout=timeout + 10)
        out = (res.text.strip() or res.stderr.strip())
        return res.returncode == 0 and out.startswith("2"), out
    out = res.text.strip() or res.stderr.strip()
    return res.returncode == 0 and out.startswith("2"), out


def _host_health(t, checks) -> list[tuple[str, str]]:
    """Every health URL on one host (with its retries); (url, detail) of each failure."""
    fails = []
    for url in checks.http:
        ok, detail = False, ""
        for attempt in range(max(1, checks.retries)):
            ok, detail = http_check(t, url, checks.timeout)
            if ok:
                break
            if attempt + 1 < max(1, checks.retries):
                time.sleep(checks.retry_delay)
        if not ok:
            fails.append((url, detail))
    return fails


def check_hosts(targets, checks, *, forks: int, emit) -> dict[str, list[tuple[str, str]]]:
    """``checks.http`` on every target, all hosts at once (up to ``forks``). ``emit(kind,
    message, **data)`` reports one line per host as it answers, then a summary line.
    Returns host -> its failures as (url, detail) (empty list: healthy)."""
    out: dict[str, list[tuple[str, str]]] = {}
    if not checks.http or not targets:
        return out
    urls = ", ".join(checks.http)
    done = []
    for o in each_host(targets, lambda t: _host_health(t, checks), forks=forks):
        fails = o.value if o.ok else [(urls, short_error(o.error))]
        out[o.host] = fails
        done.append(o)
        if fails:
            emit("warning", f"health on {o.host}: FAILED ({o.duration_s:.2f}s) " + "; ".join(f"{u}: {d}" for u, d in fails),
                 host=o.host, ok=False, duration_s=round(o.duration_s, 3))
        else:
            emit("info", f"health {urls} on {o.host}: ok ({o.duration_s:.2f}s)",
                 host=o.host, ok=True, duration_s=round(o.duration_s, 3))
    if len(done) > 1:
        emit("info", summary("health", done, {h for h, f in out.items() if f}))
    return out
