"""Dates relative to today, for tests (and benchmarks) that send events through ingest: an event
that reaches Kafka more than the lateness policy's 7 days after its time is quarantined as too
late, so their events must be recent."""

from __future__ import annotations

import datetime as dt


def days_ago(days: int) -> str:
    """The date `days` before today (UTC), YYYY-MM-DD."""
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)).isoformat()


def minutes_ago(minutes: int) -> str:
    """The UTC time `minutes` ago, RFC 3339 to the second (order-sim's --start)."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).isoformat(timespec="seconds")
