"""Pure parts of the dashboard's queries: windows, rates and the daily runs' wording."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from shopstream.dashboard.queries import Kpis, day_start, failing_dates, last_validation, window_start
from shopstream.publication import Publication


def test_the_last_hour_is_the_current_minute_and_the_59_before_it():
    now = dt.datetime(2026, 11, 29, 10, 30, 45, tzinfo=dt.UTC)
    assert window_start(now) == dt.datetime(2026, 11, 29, 9, 31, tzinfo=dt.UTC)
    assert day_start(now) == dt.datetime(2026, 11, 29, tzinfo=dt.UTC)


def test_rates_are_per_new_order_and_undefined_without_orders():
    kpis = Kpis(200, 10, 5, 300, Decimal("100.00"), Decimal("10.00"), Decimal("90.00"))
    assert (kpis.cancellation_rate, kpis.return_rate) == (0.05, 0.025)
    assert Kpis(0, 1, 0, -1, Decimal(0), Decimal(5), Decimal(-5)).cancellation_rate is None


@pytest.mark.parametrize(
    ("passed", "version", "shown"),
    [(True, "v1", "passed"), (False, "v2", "FAILED (v2)"), (True, "v3", "passed (v3)")],
)
def test_last_validation_names_a_version_that_is_not_the_published_one(passed, version, shown):
    newest = SimpleNamespace(passed=passed, version=version)
    assert last_validation(newest, "v1") == shown


def validation(date: str, passed: bool, minute: int) -> Publication:
    """A publications record: `date` validated at `minute` past 10:00, passing or not."""
    failed = "" if passed else "reconciles_with_raw"
    at = dt.datetime(2026, 12, 1, 10, minute, tzinfo=dt.UTC)
    return Publication(dt.date.fromisoformat(date), f"v-{date}-{minute}", at, passed, 9, 9 - (not passed),
                       failed, "fingerprint", {})  # fmt: skip


def test_the_dates_whose_latest_validation_failed_are_named_newest_first():
    entries = [  # newest first, as the publications table returns them
        validation("2026-11-28", True, 50),  # failed before, published since: not named
        validation("2026-11-30", False, 40),
        validation("2026-11-29", True, 30),
        validation("2026-11-30", True, 20),  # published before, but its latest run failed: named
        validation("2026-11-28", False, 10),
        validation("2026-11-27", False, 5),
    ]
    assert failing_dates(entries) == [
        {"date": "2026-11-30", "version": "v-2026-11-30-40", "failed checks": "reconciles_with_raw"},
        {"date": "2026-11-27", "version": "v-2026-11-27-5", "failed checks": "reconciles_with_raw"},
    ]
    assert failing_dates([]) == []
