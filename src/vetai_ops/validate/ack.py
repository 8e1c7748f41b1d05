"""Acknowledging destructive operations, in the revision file or on the command line.

A destructive finding in a pending revision refuses the deploy until someone says, in
writing, that the loss is intended. The marker is a comment line anywhere in the
revision file::

    # vetai-ops: allow drop_column pets.name      one operation (kind + target)
    # vetai-ops: allow drop_column                every drop_column in this file
    # vetai-ops: allow drop-column                the same, by rule id
    # vetai-ops: allow drop_table a, drop_table b several, comma-separated
    # vetai-ops: allow-destructive                every destructive finding in this file

Operation strings are what the findings print: ``drop_table notifications``,
``drop_column pets.name``, ``change_column_type pets.weight``, ``rename_column pets.nm``,
``rename_table owners``, and for raw SQL in ``op.execute`` the same kinds plus
``truncate T``, ``delete T``, ``drop_<object> name``. Matching ignores case and repeated
spaces.

A table rewrite over ``checks.max_rewrite_mb`` (see :mod:`.locks`) is acknowledged the
same way with ``rewrite <table>`` (``# vetai-ops: allow rewrite pets``, ``--allow='rewrite
pets'`` or ``--allow=rewrite:pets``); ``allow-destructive`` does not cover it.

On the command line (``acknowledged=`` of :func:`validate_history`) the same tokens are
accepted — an operation string, an operation kind, a rule id, ``allow-destructive`` — and
also a revision id, which acknowledges everything in that revision. An acknowledged
finding is still reported (``acknowledged: true``) and never blocks; the deploy takes a
verified backup first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .model import Finding

ALL_DESTRUCTIVE = "allow-destructive"
_MARKER = re.compile(r"^[ \t]*#[ \t]*vetai-ops:[ \t]*(allow-destructive|allow[ \t]+(.+?))[ \t]*$",
                     re.MULTILINE | re.IGNORECASE)


def normalize(token: str) -> str:
    """Lower-case, single-spaced form used for every comparison."""
    return " ".join(token.split()).lower()


def file_acknowledgements(text: str) -> frozenset[str]:
    """The acknowledgement tokens declared by ``# vetai-ops:`` comment lines in ``text``."""
    tokens: set[str] = set()
    for _, listed in _MARKER.findall(text):
        if not listed:
            tokens.add(ALL_DESTRUCTIVE)
        else:
            tokens.update(normalize(t) for t in listed.split(",") if t.strip())
    return frozenset(tokens)


def is_acknowledged(finding: Finding, tokens: Iterable[str], *, by_revision: bool = False) -> bool:
    """True when one of ``tokens`` covers ``finding``.

    ``by_revision`` lets a bare revision id acknowledge the whole revision (command line only).
    """
    tokens = {normalize(t) for t in tokens}
    if not tokens:
        return False
    op = normalize(finding.operation)
    names = {op, op.split(" ", 1)[0], finding.rule.lower()}
    if by_revision and finding.revision:
        names.add(finding.revision.lower())
    if ALL_DESTRUCTIVE in tokens and finding.destructive:
        return True
    return bool(names & tokens)
