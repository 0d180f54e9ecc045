"""CookieBudget: counts and warns (names only) when the site would hold too many cookies."""

from __future__ import annotations

import logging

import pytest

from tessera.clock import FakeClock
from tessera.cookies import Cookie, CookieBudget
from tessera.errors import ConfigError
from tessera.metrics import Metrics


def test_within_budget_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    budget = CookieBudget(3, metrics=metrics)
    assert budget.check(["a", "b"], [Cookie("c", "secret")])
    assert metrics.get("cookies.budget_exceeded") == 0
    assert not caplog.records


def test_over_budget_counts_and_logs_names_never_values(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    budget = CookieBudget(2, metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="tessera.cookies"):
        assert not budget.check(["a", "b"], [Cookie("c", "hunter2"), "d=topsecret; Path=/"])
    assert metrics.get("cookies.budget_exceeded") == 1
    (record,) = caplog.records
    message = record.getMessage()
    assert "4 cookies (limit 2)" in message
    assert "'c'" in message
    assert "'d'" in message
    assert "hunter2" not in message
    assert "topsecret" not in message


def test_projection_is_request_names_plus_set_minus_deleted() -> None:
    budget = CookieBudget(10, clock=FakeClock(1000.0))
    projected = budget.projected(
        ["a", "b", "c"],
        [
            Cookie("d", "1"),
            Cookie("a", "1").deletion(),
            "b=; Max-Age=0",
            "c=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "e=1; Max-Age=10",
        ],
    )
    assert projected == {"d", "e"}


def test_default_limit_is_the_rfc_minimum() -> None:
    budget = CookieBudget()
    assert budget.limit == 50
    assert budget.check([f"c{i}" for i in range(50)], [])
    assert not budget.check([f"c{i}" for i in range(50)], [Cookie("one_more", "x")])


def test_log_escapes_hostile_request_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tessera.cookies"):
        CookieBudget(1).check(["ok", "evil\nFAKE LOG LINE"], [])
    assert "\n" not in caplog.records[0].getMessage()


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_invalid_limit_refused(limit: object) -> None:
    with pytest.raises(ConfigError):
        CookieBudget(limit)  # type: ignore[arg-type]
