"""The face: invoke tasks (tasks.py builds the collection: views.py, backups.py,
migrations.py, sandbox.py), fab tasks (fab.py), shared glue (common.py), rendering
(render.py). It parses flags and renders; the work is the use-case layer's (vetai_ops.ops)."""

import atexit
import gc

from .tasks import build_collection

# At exit, before the interpreter tears its modules down, every object is moved to the
# collector's permanent generation: the shutdown's garbage collections then skip the
# hundreds of thousands of objects the imports made (invoke, psycopg, pydantic, rich, ...).
# Measured: -0.17 s median of a process that imports what a backup does (0.58 -> 0.41 s,
# 15 interleaved runs; bench/README.md, "Fixed cost"). Nothing is skipped that a run needs:
# atexit handlers, weakref finalizers and the stdio flush still run, the exit code is the
# same; the run closed its connections, processes and spools itself before this.
atexit.register(gc.freeze)


ns = build_collection()

__all__ = ["ns"]
