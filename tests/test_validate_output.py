"""validate_output publishes each date of a run that passes its checks and names the ones that
fail: one failing date of the lookback never holds back the others (issue 33). The checks are
stubbed here (unit test of the task's logic); tests/test_dag_e2e.py runs them for real."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shopstream.airflow import tasks


@dataclass
class Check:
    name: str


@dataclass
class Report:
    date: str
    failed: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed

    def text(self) -> str:
        return f"{self.date}: {'failed' if self.failed else 'passed'}"

    def as_dict(self) -> dict:
        return {"date": self.date, "passed": self.passed}


@dataclass
class Recorded:
    passed: bool
    version: str = "v9"
    snapshots: dict = field(default_factory=dict)


@pytest.fixture
def published(monkeypatch) -> list[str]:
    import shopstream.validation as validation

    done: list[str] = []
    failing = {"2026-11-30": [Check("reconciles_with_raw")]}
    monkeypatch.setattr(validation, "validate", lambda day, *_, **__: Report(day, failing.get(day, [])))
    monkeypatch.setattr(validation, "write_report", lambda report, root: f"{root}/{report.date}.json")

    def publish(report, root):  # records a failure as a failure, publishes a pass
        if report.passed:
            done.append(report.date)
        return Recorded(report.passed)

    monkeypatch.setattr(validation, "publish_validated", publish)
    monkeypatch.setattr(tasks, "vacuum_versions", lambda root: None)
    return done


class Plan:
    def xcom_pull(self, task_ids):
        return {"dates": ["2026-11-29", "2026-11-30", "2026-12-01"], "version": "v9"}


def test_each_passing_date_is_published_and_the_failing_one_named(published):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as failure:
        tasks.validate_output("2026-12-01", plan_task="plan", transformed_dir="/x", ti=Plan())

    assert published == ["2026-11-29", "2026-12-01"]
    message = str(failure.value)
    assert message.startswith("validation failed, not published: 2026-11-30: reconciles_with_raw")
    assert "(published: 2026-11-29, 2026-12-01)" in message


def test_a_run_whose_dates_all_pass_publishes_them_all(published, monkeypatch):
    import shopstream.validation as validation

    monkeypatch.setattr(validation, "validate", lambda day, *_, **__: Report(day))
    result = tasks.validate_output("2026-12-01", plan_task="plan", transformed_dir="/x", ti=Plan())
    assert published == ["2026-11-29", "2026-11-30", "2026-12-01"] == list(result)
