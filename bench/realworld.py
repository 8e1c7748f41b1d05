"""Validate real-world Alembic histories (shipped inside PyPI wheels) with `invoke validate`'s
engine, without importing them (they import their own applications), and time it.

    python bench/realworld.py            # downloads the wheels into bench/work/realworld (pip download)

Prints revisions, heads, errors and the wall time per history, and writes
bench/results/realworld-<date>.md.
"""

from __future__ import annotations

import datetime
import pathlib
import subprocess
import sys
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vetai_ops.validate import validate_history  # noqa: E402

HISTORIES = [
    ("apache-airflow-core==3.0.2", "airflow/migrations/versions/"),
    ("apache-airflow==2.10.5", "airflow/migrations/versions/"),
    ("mlflow==2.20.0", "mlflow/store/db_migrations/versions/"),
]


def fetch(spec: str, work: pathlib.Path) -> pathlib.Path:
    name = spec.split("==")[0].replace("-", "_")
    found = sorted(work.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(work)], check=True)
        found = sorted(work.glob(f"{name}-*.whl"))
    return found[-1]


def main() -> None:
    work = ROOT / "bench" / "work" / "realworld"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec, prefix in HISTORIES:
        whl = fetch(spec, work)
        out = work / whl.stem
        with zipfile.ZipFile(whl) as z:
            for n in z.namelist():
                if n.startswith(prefix) and n.endswith(".py"):
                    z.extract(n, out)
        d = out / prefix
        times = []
        for _ in range(5):
            t = time.perf_counter()
            r = validate_history(d)
            times.append(time.perf_counter() - t)
        times.sort()
        errs = "; ".join(f"{e.code} {e.revision}" for e in r.errors) or "-"
        rows.append((spec, len(r.revisions), ", ".join(r.heads), errs, len(r.findings), times[len(times) // 2]))
    lines = ["| history | revisions | heads | errors | findings | median s |", "|---|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} | {f:.3f} |" for a, b, c, d, e, f in rows]
    text = "\n".join(lines)
    print(text)
    res = ROOT / "bench" / "results" / f"realworld-{datetime.date.today()}.md"
    res.write_text("# invoke validate on real-world Alembic histories\n\n" + text + "\n")
    print(f"written {res}")


if __name__ == "__main__":
    main()
