"""The face: invoke tasks (tasks.py), rendering (render.py)."""

from .tasks import build_collection

ns = build_collection()

__all__ = ["ns"]
