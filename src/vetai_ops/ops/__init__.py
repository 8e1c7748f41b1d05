"""The use-case layer: one function per thing an operator asks for, returning data.

Every verb of the face (``cli/``: invoke tasks and fab tasks) calls one function here and
renders what it returns (plain dicts, JSON-ready; or a small dataclass). Nothing here
prints, prompts or reads flags: it takes arguments, an event sink and a ``confirm``
callback from the face, and raises :class:`~vetai_ops.errors.OpsError` on failure.

- :mod:`.runs`: the playbooks (deploy, backup, rollback, plan) with their options;
- :mod:`.hosts`: fab's per-host playbooks, on the host Fabric connected to;
- :mod:`.status`: read-only views (status, history, backups.list);
- :mod:`.check`, :mod:`.validate`: the read-only gates;
- :mod:`.verify`, :mod:`.prune`, :mod:`.adopt`, :mod:`.revisions`, :mod:`.sandbox`.

The wiring of a run (targets, store, DB access, journal) is
:func:`vetai_ops.pipeline.run_context`; the protected-env rules are :mod:`vetai_ops.policy`.
This layer may import the pipeline, the steps and the primitives, never ``cli``.
"""
