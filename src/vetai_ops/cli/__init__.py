"""The face: invoke tasks (tasks.py builds the collection: views.py, backups.py,
migrations.py, sandbox.py), fab tasks (fab.py), shared glue (common.py), rendering
(render.py). It parses flags and renders; the work is the use-case layer's (vetai_ops.ops)."""

from .tasks import build_collection

ns = build_collection()

__all__ = ["ns"]
