"""Pure parts of the dashboard's queries: windows, rates and the daily runs' wording."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from shopstream.dashboard.queries import Kpis, day_start, failing_dates, last_validation, window_start


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


def test_the_dates_whose_latest_validation_failed_are_named_newest_first(tmp_path):
    from shopstream.validation import Report, write_report

    for date, passed in (("2026-11-28", False), ("2026-11-29", True), ("2026-11-30", False)):
        report = Report(date, version=f"v-{date}")
        report.add("reconciles_with_raw", passed, "outputs vs raw")
        report.add("top_products_ranked", True, "ranks 1..10")
        write_report(report, tmp_path)

    assert failing_dates(tmp_path) == [
        {"date": "2026-11-30", "version": "v-2026-11-30", "failed checks": "reconciles_with_raw"},
        {"date": "2026-11-28", "version": "v-2026-11-28", "failed checks": "reconciles_with_raw"},
    ]
    assert failing_dates(tmp_path / "nothing-yet") == []
