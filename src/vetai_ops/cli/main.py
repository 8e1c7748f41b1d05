"""`vetai-ops` console script: the same task collection as `invoke`, without a tasks.py."""

from invoke import Program

from .. import __version__
from . import ns


def main() -> None:
    Program(namespace=ns, version=__version__, name="vetai-ops", binary="vetai-ops").run()
