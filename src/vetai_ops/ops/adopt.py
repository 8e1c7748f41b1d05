"""``invoke adopt``: take over a database built by the backend's TypeORM migrations.

A built-in playbook run by the same pipeline as deploy (lock, journal, confirmation,
deploy_history row, signal handling): ``lock -> adopt_check -> confirm -> adopt_stamp``.
The steps are in :mod:`vetai_ops.steps.adopt`; nothing in the live database changes
before ``adopt_stamp``, and nothing is restored on failure (nothing was backed up or
rewritten: a stamp is one transaction).
"""

from __future__ import annotations

from ..config import Playbook, StepSpec


def adopt_playbook() -> Playbook:
    return Playbook(
        name="adopt",
        description="lock -> compare with a reference built by Alembic -> confirm (protected) -> stamp",
        steps=[StepSpec(step="lock"), StepSpec(step="adopt_check"), StepSpec(step="confirm"),
               StepSpec(step="adopt_stamp")],
        on_failure_after=None,
        on_failure=[],
        path="(built in: vetai_ops.ops.adopt.adopt_playbook)",
    )


def adopt(env_name: str | None, *, yes: bool = False, table: str | None = None, sink=None, confirm=None,
          accept_drift=None) -> dict:
    """Run the adopt playbook; returns the adopt report (revision, differences, pending...).

    ``table``: TypeORM's journal when the backend set ``migrationsTableName`` (default
    ``migrations``); a name that is not a plain identifier is refused before anything runs.
    ``accept_drift``: tokens naming schema differences to accept (``True``: all of them).
    """
    from ..database.typeorm_journal import check_table_name
    from ..pipeline import run_playbook

    table = check_table_name(table)
    run = run_playbook("adopt", env_name, options={"yes": yes, "table": table, "accept_drift": accept_drift},
                       sink=sink, confirm=confirm,
                       playbook=adopt_playbook())
    return run["plan"]  # the adopt check's report (vetai_ops.plan.AdoptPlan), completed by the stamp
