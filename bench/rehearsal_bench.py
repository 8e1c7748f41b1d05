#!/usr/bin/env python3
"""What the rehearsal costs: `invoke deploy` with `deploy.rehearsal: always` against the same
deploy with `rehearsal: off`, on the same data, interleaved, in one run (issue 14).

    python bench/rehearsal_bench.py                 # ~200 MB in notifications, 3 repeats
    python bench/rehearsal_bench.py --size 50 --repeat 1

A throwaway cluster (bench/run.py's Bench: same Cluster, same measuring) gets the VetAI
schema at 0013 (a first deploy, seeded) and ``--size`` MB of rows in the app's own
``notifications`` table. A planted revision 0014 (a small data backfill on ``pets``, the
kind of revision ``auto`` rehearses) is then deployed by each variant and reverted
(``migrations.downgrade --to=0013``, not measured); each variant's backup is removed after
it. Wall time is the whole CLI (``--json`` output kept for the step durations).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import MB, Bench, check, measure  # noqa: E402

BACKFILL = '''"""bench: a small data backfill (what deploy.rehearsal: auto rehearses)"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE pets SET color = coalesce(color, 'unknown')")


def downgrade() -> None:
    pass
'''


def write_inventory(b: Bench, db: str) -> None:
    c = b.cluster
    text = "default_env: deploy_off\nenvironments:\n"
    for name, mode in (("deploy_off", "off"), ("deploy_on", "always")):
        text += (f"  {name}:\n    sandbox: {{dir: '{c.root}', port: {c.port}}}\n"
                 f"    database: {{name: {db}, user: {c.superuser}}}\n"
                 f"    storage: {{type: local, path: '{b.store}'}}\n    checks: {{http: []}}\n"
                 f"    deploy: {{rehearsal: {mode}}}\n")
    b.inventory.write_text(text)


def fill(b: Bench, db: str, size_mb: int) -> float:
    rows = max(1, size_mb * MB // 1100)
    b.cluster.psql(
        "INSERT INTO notifications (user_id, type, title, body, payload) "
        "SELECT (SELECT id FROM users ORDER BY id LIMIT 1), 'bench', 'reminder ' || g, "
        "repeat(md5(random()::text), 30), jsonb_build_object('n', g) "
        f"FROM generate_series(1, {rows}) g", db=db)
    b.cluster.psql("VACUUM ANALYZE", db=db)
    return int(b.cluster.psql("select pg_database_size(current_database())", db=db)) / MB


def steps(out: Path) -> dict:
    try:
        rep = json.loads(out.read_text())["report"]
    except (ValueError, KeyError):
        return {}
    return {s["step"]: s.get("duration_s") for s in rep.get("steps", [])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=200, help="MB of rows added to notifications (default 200)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    b = Bench(argparse.Namespace(workdir=args.workdir, no_s3=True, keep=False))
    db = "vetai_bench"
    samples: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        b.start()
        write_inventory(b, db)
        check(measure(b.invoke("deploy", "--env=deploy_off", "--yes"), env=b.env), "first deploy", None)
        db_mb = fill(b, db, args.size)
        migs = b.work / "migrations"
        shutil.copytree(ROOT / "migrations", migs, ignore=shutil.ignore_patterns("__pycache__"))
        (migs / "versions" / "0014_bench_backfill.py").write_text(BACKFILL)
        env = dict(b.env, VETAI_OPS_MIGRATIONS=str(migs))
        for i in range(args.repeat):
            for mode in ("off", "on"):
                out = b.logs / f"deploy_{mode}_{i}.json"
                before = {m.id for m in b.catalog(f"deploy_{mode}").list()}
                with open(out, "w") as f:
                    res = measure(b.invoke("deploy", f"--env=deploy_{mode}", "--yes", "--json"), env=env, stdout=f,
                                  log=b.logs / f"deploy_{mode}_{i}.stderr")
                check(res, f"deploy ({mode})", b.logs / f"deploy_{mode}_{i}.stderr")
                samples[mode].append({"wall_s": round(res["wall_s"], 3), "steps": steps(out)})
                check(measure(b.invoke("migrations.downgrade", "--to=0013", "--env=deploy_off", "--yes"), env=env),
                      "downgrade", None)
                for m in b.catalog(f"deploy_{mode}").list():
                    if m.id not in before:
                        b.forget(f"deploy_{mode}", m.id)
                print(f"repeat {i + 1}/{args.repeat} rehearsal {mode}: {res['wall_s']:.2f}s", file=sys.stderr)
    finally:
        b.stop()
    med = {k: statistics.median(s["wall_s"] for s in v) for k, v in samples.items()}
    reh = statistics.median(s["steps"].get("rehearse") or 0 for s in samples["on"])
    bak = statistics.median(s["steps"].get("backup") or 0 for s in samples["on"])
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "size_mb": args.size,
              "db_mb": round(db_mb, 1), "repeat": args.repeat, "median_wall_s": med,
              "ratio_on_off": round(med["on"] / med["off"], 2), "rehearse_step_s": reh, "backup_step_s": bak,
              "samples": samples}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"rehearsal-{datetime.now(timezone.utc):%Y-%m-%d}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = (f"# Rehearsal cost ({result['when']}, database {result['db_mb']} MB, {args.repeat} repeats, medians)\n\n"
          "| deploy of one backfill revision | wall s |\n|---|---|\n"
          f"| `deploy.rehearsal: off` | {med['off']:.2f} |\n| `deploy.rehearsal: always` | {med['on']:.2f} |\n"
          f"| ratio | {result['ratio_on_off']:.2f}x |\n| of which the rehearse step | {reh:.2f} |\n"
          f"| (the backup step, for scale) | {bak:.2f} |\n")
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
