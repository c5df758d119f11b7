"""One-line messages and password masking: every URL form a user may give us."""

from __future__ import annotations

import pytest

from mspe_sweep.text import first_line, mask_secrets, mask_url, one_line

URL_FORMS = [
    ("postgresql+psycopg://mspe:s3cret@db-host:5432/mspe",
     "postgresql+psycopg://mspe:***@db-host:5432/mspe"),
    # A password holding '@' and '/', which SQLAlchemy cannot parse.
    ("postgresql://mspe:p@ss/w0rd@db:5432/mspe", "postgresql://mspe:***@db:5432/mspe"),
    # Password only, no user name.
    ("postgresql://:hunter2@db/mspe", "postgresql://:***@db/mspe"),
    # URL-encoded characters in the password.
    ("postgresql://mspe:p%40ss%2Fw0rd@db/mspe", "postgresql://mspe:***@db/mspe"),
    ("postgresql://mspe@db/mspe", "postgresql://mspe@db/mspe"),
    ("postgresql://db/mspe?user=u&password=hunter2&sslmode=require",
     "postgresql://db/mspe?user=u&password=***&sslmode=require"),
    ("postgresql://u:pw@db/mspe?password=pw2", "postgresql://u:***@db/mspe?password=***"),
    ("http://alice:tok3n@mlflow:5000", "http://alice:***@mlflow:5000"),
    ("sqlite:////home/me/mspe_home/optuna.db", "sqlite:////home/me/mspe_home/optuna.db"),
]


@pytest.mark.parametrize(("url", "masked"), URL_FORMS)
def test_mask_url_hides_every_password_form(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize(("url", "masked"), URL_FORMS)
def test_mask_secrets_masks_urls_inside_a_message(url, masked):
    message = f"storage.url: cannot connect to '{url}': connection refused"
    assert mask_secrets(message) == f"storage.url: cannot connect to '{masked}': connection refused"


def test_mask_secrets_masks_every_url_and_leaves_other_text():
    text = "a postgresql://u:one@h/db and http://v:two@m:5000 b"
    assert mask_secrets(text) == "a postgresql://u:***@h/db and http://v:***@m:5000 b"


def test_one_line_collapses_whitespace():
    assert one_line("first\n  second\tthird\n") == "first second third"


def test_one_line_limit_keeps_start_and_end():
    text = "start " + "x" * 500 + " root cause"
    short = one_line(text, limit=100)
    assert len(short) <= 100
    assert short.startswith("start ") and short.endswith("root cause") and " ... " in short


def test_first_line_is_the_drivers_own_reason():
    assert first_line("\n  connection refused\nIs the server running?") == "  connection refused"
    assert first_line(ValueError()) == "ValueError"
