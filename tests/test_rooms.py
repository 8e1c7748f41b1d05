"""The rooms (docs/architecture.md): face (cli/) -> use cases (ops/) -> pipeline -> steps ->
primitives. Read from the source with ``ast`` (every import, module level or inside a
function): a lower room never imports a higher one, the face reaches the pipeline and the
steps only through the use cases, and no step module imports another step module (what two
steps share is a primitive, or run-state glue in steps/__init__)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "vetai_ops"

FACE = ("vetai_ops.cli",)
USECASES = ("vetai_ops.ops",)
PIPELINE = ("vetai_ops.pipeline",)
STEPS = ("vetai_ops.steps",)

def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every vetai_ops module ``path`` imports (``from . import x`` counts as module ``.x``
    when x is a module, else as the package)."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            for a in n.names:
                sub = f"{target}.{a.name}"
                is_module = (SRC / Path(*sub.split("."))).with_suffix(".py").exists() or (SRC / Path(*sub.split("."))).is_dir()
                out.add(sub if is_module else target)
    return {m for m in out if m == "vetai_ops" or m.startswith("vetai_ops.")}


def _in(mod: str, room: tuple[str, ...]) -> bool:
    return any(mod == r or mod.startswith(r + ".") for r in room)


def _all() -> dict[str, set[str]]:
    return {_module(p): imports(p) for p in sorted(PKG.rglob("*.py"))}


def test_the_reader_sees_imports_inside_functions_too():
    got = _all()
    assert "vetai_ops.steps.validate" in got["vetai_ops.steps"]  # _load(): `from . import ... validate`
    assert "vetai_ops.database.sandbox" in got["vetai_ops.pipeline"]  # a lazy import in RunContext.cluster


def test_no_step_imports_another_step():
    bad = set()
    for mod, deps in _all().items():
        if _in(mod, STEPS) and mod != "vetai_ops.steps":
            bad |= {(mod, d) for d in deps if _in(d, STEPS) and d != "vetai_ops.steps" and d != mod}
    assert not bad, sorted(bad)


def test_lower_rooms_never_import_higher_ones():
    bad = []
    for mod, deps in _all().items():
        if _in(mod, FACE):
            continue
        if _in(mod, USECASES):
            higher = FACE
        elif _in(mod, PIPELINE):
            higher = FACE + USECASES
        elif _in(mod, STEPS):
            higher = FACE + USECASES + PIPELINE
        else:  # a primitive
            higher = FACE + USECASES + PIPELINE + STEPS
        bad += [f"{mod} imports {d}" for d in deps if _in(d, higher)]
    assert not bad, bad


def test_the_face_only_parses_and_renders():
    """cli/ calls the use-case layer for every verb: it never runs a playbook or a step
    itself, and ``ops.status`` / ``ops.validate`` are where the read-only views live."""
    got = _all()
    bad = [f"{mod} imports {d}" for mod, deps in got.items() if _in(mod, FACE)
           for d in deps if _in(d, PIPELINE + STEPS)]
    assert not bad, bad
    assert not (PKG / "status.py").exists() and not (PKG / "cli" / "validate_cmd.py").exists()
    assert "vetai_ops.ops.status" in got["vetai_ops.cli.views"] and "vetai_ops.ops.hosts" in got["vetai_ops.cli.fab"]
