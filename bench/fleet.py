"""The app-host rows of the bench (issue 15): 1 / 4 / 16 app hosts.

Real OpenSSH sshd hosts on loopback (127.0.0.2 .. 127.0.0.17, the tests' SSH bed code),
one health endpoint on 127.0.0.1 that takes 1 s to answer (a threaded HTTP server: each
host's request is served on its own thread, as each real host would answer its own), and
the tool's own pipeline running its real steps over SSH:

- ``health`` phase: the health step over N app hosts over open connections (a deploy's
  preflight reaches every app host first; the post-check reuses those connections); the
  first, cold round (connections opened inside it) is reported too;
- ``restart`` with ``services.batch: 4``: a restart command that takes 1 s (``sleep 1``),
  then each batch's health gate (1 s) before the next batch;
- for reference, the rolling default ``batch: 1`` over 4 hosts;
- ``deploy``: the whole real CLI, ``invoke deploy --env=.. --yes`` (base -> head on a fresh
  database of a password-auth PostgreSQL on 127.0.0.1, DB host 127.0.0.2 over SSH, local
  store), restart ``batch: 4``, over 1 / 4 / 16 app hosts (``--no-deploy`` skips these rows).

Targets: health over 16 hosts <= 1.5x over 1 host; restart with batch 4 over 16 hosts
<= 5x over 1 host. Medians of ``--repeat`` runs, interleaved.

    .venv/bin/python bench/fleet.py            # ~5 min, results in bench/results/<date>-<host>-fleet.{json,md}
    .venv/bin/python bench/fleet.py --quick    # 1 repeat, into bench/work/results/
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

HEALTH_DELAY_S = 1.0
RESTART_S = 1.0
TARGETS = {"health_16_vs_1": 1.5, "restart_b4_16_vs_1": 5.0}


class SlowHealth:
    """GET -> 200 after ``delay`` s, one thread per request."""

    def __init__(self, delay: float):
        outer = self
        self.delay = delay
        self.hits = 0

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                time.sleep(outer.delay)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        class S(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # 16 hosts connect in the same instant
            daemon_threads = True

        self.srv = S(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/health"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def start_fleet(root: Path, n: int):
    """n sshd processes on 127.0.0.2.., the tests' bed (tests/fixtures_remote.py)."""
    from fixtures_pg import free_port
    from fixtures_remote import SSHBed, _hostkey_path, _keygen, _port_free

    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    os.chmod(root, 0o755)
    hosts = [f"127.0.0.{i}" for i in range(2, 2 + n)]
    client_key = root / "client_key"
    _keygen(client_key, "vetai-ops-bench")
    shutil.copy(str(client_key) + ".pub", root / "authorized_keys")
    host_pub = {h: _keygen(_hostkey_path(root, h), f"host-{h}") for h in hosts}
    for port in [free_port() for _ in range(20)]:
        if not all(_port_free(h, port) for h in hosts):
            continue
        bed = SSHBed(root, hosts, port, str(client_key), str(root / "known_hosts"), host_pub=host_pub)
        if all(bed._start(h) for h in hosts):
            Path(bed.known_hosts).write_text(
                "".join(f"{bed.known_hosts_name(h)} ssh-ed25519 {host_pub[h]}\n" for h in hosts))
            return bed
        bed.stop_all()
    raise SystemExit(f"could not start {n} sshd on loopback; see the logs in {root}")


def write_inventory(path: Path, bed, url: str, store: Path) -> list[tuple[str, str, int, int]]:
    """One env per row: (row name, playbook step, hosts, batch)."""
    rows = [("health", "health", n, 1) for n in (1, 4, 16)]
    rows += [("restart_b4", "restart", n, 4) for n in (1, 4, 16)]
    rows += [("restart_b1", "restart", 4, 1)]
    lines = ["default_env: health_1", "environments:"]
    for name, step, n, batch in rows:
        hosts = ", ".join(f"'{h}'" for h in bed.hosts[:n])
        lines += [
            f"  {name}_{n}:",
            f"    ssh: {{user: {bed.user}, port: {bed.port}, key_file: '{bed.key_file}', known_hosts: '{bed.known_hosts}'}}",
            f"    hosts: {{app: [{hosts}]}}",
            f"    storage: {{type: local, path: '{store}'}}",
            f"    checks: {{http: ['{url}'], timeout: 10, retries: 1}}",
            f"    services: {{restart: [sleep, '{RESTART_S:g}'], batch: {batch}, forks: 16}}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return rows


PW_VAR = "VETAI_BENCH_FLEET_DB_PASSWORD"


def start_db(work: Path):
    """A PostgreSQL cluster on 127.0.0.1 with password auth (as the DB host sees it), like the tests' pg_tcp."""
    import secrets

    from fixtures_pg import free_port

    from vetai_ops.database.cluster import Cluster, resolve_bindir

    pw = "pw-" + secrets.token_urlsafe(18)
    c = Cluster(Path(tempfile.mkdtemp(prefix="vetai-bench-fleetpg-")), free_port(), resolve_bindir(), superuser="vetai",
                listen="127.0.0.1", password=pw)
    c.start()
    os.environ[PW_VAR] = pw
    return c


def deploy_envs(bed, url: str, store: Path, cluster) -> tuple[list[str], list[tuple[str, str, int, int]]]:
    """Inventory lines for whole-deploy rows: `invoke deploy` (base -> head) over 1 / 4 / 16 app
    hosts, DB host 127.0.0.2 over SSH, restart batch 4, health 1 s."""
    rows = [("deploy", "deploy", n, 4) for n in (1, 4, 16)]
    lines = []
    for name, _step, n, batch in rows:
        hosts = ", ".join(f"'{h}'" for h in bed.hosts[:n])
        lines += [
            f"  {name}_{n}:",
            f"    ssh: {{user: {bed.user}, port: {bed.port}, key_file: '{bed.key_file}', known_hosts: '{bed.known_hosts}'}}",
            f"    hosts: {{db: ['{bed.hosts[0]}'], app: [{hosts}]}}",
            (f"    database: {{name: fleet_{n}, user: vetai, host: 127.0.0.1, port: {cluster.port}, "
             f"password_env: {PW_VAR}, bin_dir: '{cluster.bindir}'}}"),
            f"    storage: {{type: local, path: '{store}'}}",
            f"    checks: {{http: ['{url}'], timeout: 10, retries: 1}}",
            f"    services: {{restart: [sleep, '{RESTART_S:g}'], batch: {batch}, forks: 16}}",
        ]
    return lines, rows


def run_deploy(env: str, cluster, n: int) -> dict:
    """The real CLI, `invoke deploy --env=<env> --yes`, on a fresh database (base -> head)."""
    import subprocess

    db = f"fleet_{n}"
    cluster.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    cluster.psql(f"CREATE DATABASE {db}")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "invoke", "deploy", f"--env={env}", "--yes"], cwd=ROOT,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench: deploy --env={env} failed:\n{r.stderr[-3000:]}")
    return {"step_s": round(wall, 3), "cold_health_s": 0.0, "run_s": round(wall, 3)}


def run_row(env: str, step: str) -> dict:
    """One run of the pipeline: ``health`` (connections opened inside it, as the deploy's
    preflight does), then ``step`` over the same connections (as the deploy's restart and
    post-check do)."""
    from vetai_ops.config import Playbook, StepSpec
    from vetai_ops.pipeline import run_playbook

    pb = Playbook(name=f"fleet-{step}", steps=[StepSpec(step="health"), StepSpec(step=step)], on_failure_after=None)
    t0 = time.perf_counter()
    rep = run_playbook(pb.name, env, playbook=pb)
    wall = time.perf_counter() - t0
    if rep["outcome"] != "success" or any(s["status"] != "ok" for s in rep["steps"]):
        raise SystemExit(f"bench: {env} {step} did not succeed: {rep}")
    cold, warm = rep["steps"]
    return {"step_s": warm["duration_s"], "cold_health_s": cold["duration_s"], "run_s": round(wall, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat, results into bench/work/results")
    ap.add_argument("--no-deploy", action="store_true", help="skip the whole-deploy rows (no PostgreSQL needed)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.repeat = 1
    out_dir = Path(args.out) if args.out else ROOT / "bench" / ("work/results" if args.quick else "results")
    work = Path(tempfile.mkdtemp(prefix="vetai-bench-fleet-"))
    (work / "ssh").mkdir()
    health = SlowHealth(HEALTH_DELAY_S)
    bed = cluster = None
    samples: dict[str, list[dict]] = {}
    try:
        bed = start_fleet(work / "ssh", 16)
        inv = work / "inventory.yml"
        rows = write_inventory(inv, bed, health.url, work / "store")
        if not args.no_deploy:
            cluster = start_db(work)
            lines, drows = deploy_envs(bed, health.url, work / "store", cluster)
            inv.write_text(inv.read_text() + "\n".join(lines) + "\n")
            rows += drows
        os.environ["VETAI_OPS_INVENTORY"] = str(inv)
        os.environ["VETAI_OPS_LOGS"] = str(work / "logs")
        run_row("health_1", "health")  # warm-up: imports, first handshakes
        for r in range(args.repeat):
            for name, step, n, _batch in rows:
                key = f"{name}_{n}"
                samples.setdefault(key, []).append(run_deploy(key, cluster, n) if step == "deploy" else run_row(key, step))
                print(f"  repeat {r + 1}/{args.repeat} {key}: {samples[key][-1]}", flush=True)
    finally:
        if bed is not None:
            bed.stop_all()
        if cluster is not None:
            cluster.destroy()
        health.close()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: {m: round(statistics.median(s[m] for s in v), 3) for m in ("step_s", "cold_health_s", "run_s")}
           for k, v in samples.items()}
    ratios = {
        "health_4_vs_1": med["health_4"]["step_s"] / med["health_1"]["step_s"],
        "health_16_vs_1": med["health_16"]["step_s"] / med["health_1"]["step_s"],
        "cold_health_16_vs_1": med["health_16"]["cold_health_s"] / med["health_1"]["cold_health_s"],
        "restart_b4_4_vs_1": med["restart_b4_4"]["step_s"] / med["restart_b4_1"]["step_s"],
        "restart_b4_16_vs_1": med["restart_b4_16"]["step_s"] / med["restart_b4_1"]["step_s"],
        "restart_b1_4_vs_1": med["restart_b1_4"]["step_s"] / med["restart_b4_1"]["step_s"],
    }
    if "deploy_1" in med:
        ratios["deploy_4_vs_1"] = med["deploy_4"]["step_s"] / med["deploy_1"]["step_s"]
        ratios["deploy_16_vs_1"] = med["deploy_16"]["step_s"] / med["deploy_1"]["step_s"]
    ratios = {k: round(v, 2) for k, v in ratios.items()}
    verdicts = [{"target": k, "limit": lim, "measured": ratios[k], "met": ratios[k] <= lim} for k, lim in TARGETS.items()]
    now = datetime.now(UTC)
    result = {"date": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "repeat": args.repeat, "command": "python bench/fleet.py "
              + " ".join(sys.argv[1:]), "machine": {"host": platform.node(), "cpus": os.cpu_count(),
              "python": platform.python_version()}, "health_delay_s": HEALTH_DELAY_S, "restart_s": RESTART_S,
              "samples": samples, "medians": med, "ratios": ratios, "verdicts": verdicts}
    md = [(f"# bench/fleet.py — {result['date']} on {result['machine']['host']} ({os.cpu_count()} cores), "
           f"medians of {args.repeat}"), "",
          (f"Health endpoint answers in {HEALTH_DELAY_S:g} s; the restart command takes {RESTART_S:g} s. "
           "Each run is the pipeline with two steps: `health` (opens the SSH connections, as a deploy's "
           "preflight does: **cold**), then the row's step over the same connections (as a deploy's restart and "
           "post-check reuse them): `step s` is that second step's own time, `run s` the whole in-process run. "
           "`deploy` rows: the whole `invoke deploy` command (wall time, in `step s` and `run s`)."), "",
          "| row | hosts | batch | step s | vs 1 host | cold health s | run s |", "|---|---|---|---|---|---|---|"]
    base = {"health": med["health_1"]["step_s"], "restart_b4": med["restart_b4_1"]["step_s"],
            "restart_b1": med["restart_b4_1"]["step_s"], "deploy": med.get("deploy_1", {}).get("step_s")}
    for name, _step, n, batch in rows:
        m = med[f"{name}_{n}"]
        md.append(f"| {name.split('_')[0]} | {n} | {batch} | {m['step_s']:.2f} | {m['step_s'] / base[name]:.2f}x | "
                  f"{'-' if name == 'deploy' else format(m['cold_health_s'], '.2f')} | {m['run_s']:.2f} |")
    md += ["", "| target | limit | measured | met |", "|---|---|---|---|"]
    md += [f"| {v['target']} | <= {v['limit']}x | {v['measured']}x | {'yes' if v['met'] else 'NO'} |" for v in verdicts]
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{now.strftime('%Y-%m-%d')}-{result['machine']['host']}-fleet"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"results: {out_dir / stem}.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
