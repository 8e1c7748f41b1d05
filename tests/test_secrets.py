"""Secrets never survive redaction, whatever characters they contain, and redaction never
corrupts the data around them (the journal writes sizes and counts next to messages)."""

import json

import pytest

from vetai_ops import secrets
from vetai_ops.events import Event
from vetai_ops.journal import FileJournal


@pytest.fixture(autouse=True)
def _forget_test_secrets():
    yield
    for s in ("p@ss:w0rd", "2026", 'quo"te\\pw'):
        secrets.forget(s)


def test_password_with_url_characters_is_fully_hidden():
    secrets.register("p@ss:w0rd")
    out = secrets.redact("could not connect to postgresql://vetai:p@ss:w0rd@db:5432/x")
    assert "p@ss" not in out and "w0rd" not in out and "db:5432" in out


def test_url_password_redacted_even_when_unregistered():
    assert secrets.redact("postgresql://u:hunter22@h/db") == "postgresql://u:***@h/db"


def test_journal_redacts_structured_data_without_breaking_numbers(tmp_path):
    secrets.register("2026")
    secrets.register('quo"te\\pw')
    j = FileJournal("run1", "deploy", "local", path=tmp_path / "migration.log")
    j.emit(Event("info", "backup", "using quo\"te\\pw and 2026", {"size": 2026123, "url": 'x quo"te\\pw', "ids": ["2026"]}))
    j.close()
    text = (tmp_path / "migration.log").read_text()
    assert 'quo"te' not in text and 'quo\\"te' not in text
    rec = json.loads(text)
    assert rec["data"]["size"] == 2026123  # a number that contains a secret-looking digit run stays a number
    assert rec["data"]["url"] == "x ***" and rec["data"]["ids"] == ["***"]
    assert rec["message"] == "using *** and ***"
