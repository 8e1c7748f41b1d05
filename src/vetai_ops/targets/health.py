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


def _host_health(t, checks) -> list[tuple[str, bool, str]]:
    """Every health URL on one host (with its retries): (url, ok, detail) each."""
    out = []
    for url in checks.http:
        ok, detail = False, ""
        for attempt in range(max(1, checks.retries)):
            ok, detail = http_check(t, url, checks.timeout)
            if ok:
                break
            if attempt + 1 < max(1, checks.retries):
                time.sleep(checks.retry_delay)
        out.append((url, ok, detail))
    return out


def failures(results: list[tuple[str, bool, str]]) -> list[tuple[str, str]]:
    """(url, detail) of the failed checks of one host's results."""
    return [(u, d) for u, ok, d in results if not ok]


def check_hosts(targets, checks, *, forks: int, emit) -> dict[str, list[tuple[str, bool, str]]]:
    """``checks.http`` on every target, all hosts at once (up to ``forks``). ``emit(kind,
    message, **data)`` reports one line per host as it answers, then a summary line.
    Returns host -> [(url, ok, detail)] in inventory order (a host whose checks could not
    run at all, e.g. unreachable: one failed entry per URL)."""
    res: dict[str, list[tuple[str, bool, str]]] = {}
    if not checks.http or not targets:
        return res
    urls = ", ".join(checks.http)
    done = []
    for o in each_host(targets, lambda t: _host_health(t, checks), forks=forks):
        results = o.value if o.ok else [(u, False, short_error(o.error)) for u in checks.http]
        res[o.host] = results
        done.append(o)
        bad = failures(results)
        if bad:
            emit("warning", f"health on {o.host}: FAILED ({o.duration_s:.2f}s) " + "; ".join(f"{u}: {d}" for u, d in bad),
                 host=o.host, ok=False, duration_s=round(o.duration_s, 3))
        else:
            emit("info", f"health {urls} on {o.host}: ok ({o.duration_s:.2f}s)",
                 host=o.host, ok=True, duration_s=round(o.duration_s, 3))
    if len(done) > 1:
        emit("info", summary("health", done, {h for h, r in res.items() if failures(r)}))
    return {t.name: res[t.name] for t in targets if t.name in res}
