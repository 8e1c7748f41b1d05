#!/usr/bin/env python3
"""What the pre-deploy schema drift check adds to a deploy of the VetAI Connect schema.

    python bench/drift_bench.py [--repeat N]

Starts a throwaway PostgreSQL cluster in /tmp (removed after), deploys the schema to head
with the real CLI (demo seeds), then times, in this process, exactly what preflight does
for drift (:func:`vetai_ops.database.drift.drift_at`: hash the history up to the current
revision, read the reference snapshot, read the live catalog, read the accepted drift,
compare):

- ``cold``: no cached reference (the Alembic history runs into a scratch database; once
  per history change and server version);
- ``cached``: the reference read from ``.vetai/cache/reference/`` as a new deploy process
  would (the in-process memo cleared each time) -- the number the target is about;

and, for scale, the wall time of a whole `invoke deploy --env=bench --yes` with nothing
pending (backup included) and its preflight step. Target: the cached check adds < 2 s.
No test asserts a timing; this prints and records (``--out`` JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TARGET_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from vetai_ops.database.cluster import Cluster, resolve_bindir

    work = Path(tempfile.mkdtemp(prefix="vetai-driftbench-"))
    os.chmod(work, 0o755)
    cluster = Cluster(work / "pg", free_port(), resolve_bindir(), superuser="vetai")
    inv = work / "inventory.yml"
    inv.write_text("default_env: bench\nenvironments:\n  bench:\n"
                   f"    sandbox: {{dir: '{cluster.root}', port: {cluster.port}}}\n"
                   "    database: {name: vetai_connect, user: vetai}\n"
                   f"    storage: {{type: local, path: '{work / 'store'}'}}\n    checks: {{http: []}}\n")
    env = {"VETAI_OPS_INVENTORY": str(inv), "VETAI_OPS_LOGS": str(work / "logs"),
           "VETAI_OPS_CACHE": str(work / "cache"), "NO_COLOR": "1"}
    os.environ.update(env)
    try:
        cluster.init()
        cluster.start()
        (cluster.root / "engine").write_text(str(cluster.bindir) + "\n")
        invoke = [sys.executable, "-m", "invoke", "-r", str(ROOT)]
        subprocess.run(invoke + ["deploy", "--env=bench", "--yes"], check=True, capture_output=True,
                       env={**os.environ, **env})

        from vetai_ops.database import migrations as mig
        from vetai_ops.database import reference as ref
        from vetai_ops.database.drift import drift_at
        from vetai_ops.pipeline import run_context

        def once() -> tuple[float, dict, int]:
            ref._memo.clear()  # as a new deploy process: read the cache file, not memory
            with run_context("bench", "bench", journaled=False) as ctx:
                with ctx.access.engine().connect() as conn:
                    rev = mig.current(conn)
                    t0 = time.perf_counter()
                    diffs, info = drift_at(ctx.access, conn, rev)
                    return time.perf_counter() - t0, info, len(diffs)

        shutil.rmtree(work / "cache", ignore_errors=True)
        cold, info, ndiff = once()
        assert not info["cached"] and ndiff == 0, (info, ndiff)
        cached = []
        for _ in range(args.repeat):
            t, info, ndiff = once()
            assert info["cached"] and ndiff == 0
            cached.append(t)

        deploys = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = subprocess.run(invoke + ["deploy", "--env=bench", "--yes", "--json"], check=True, capture_output=True,
                               text=True, env={**os.environ, **env})
            wall = time.perf_counter() - t0
            rep = json.loads(r.stdout)["report"]
            pre = next(s for s in rep["steps"] if s["step"] == "preflight")
            deploys.append({"wall_s": wall, "preflight_s": pre["duration_s"]})

        with run_context("bench", "bench", journaled=False) as ctx:
            with ctx.access.engine().connect() as conn:
                from sqlalchemy import text

                tables = conn.execute(text("select count(*) from pg_tables where schemaname = 'public'")).scalar_one()
                server = conn.execute(text("show server_version")).scalar_one()
        result = {
            "tables_in_db": tables, "server": server, "revision": mig.head(),
            "cold_reference_s": round(cold, 3),
            "cached_check_median_s": round(statistics.median(cached), 4),
            "cached_check_max_s": round(max(cached), 4),
            "repeat": args.repeat,
            "deploy_nothing_pending_median_wall_s": round(statistics.median(d["wall_s"] for d in deploys), 3),
            "deploy_preflight_median_s": round(statistics.median(d["preflight_s"] for d in deploys), 3),
            "target_s": TARGET_S,
            "ok": max(cached) < TARGET_S,
        }
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if result["ok"] else 1
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
