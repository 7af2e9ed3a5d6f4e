"""The live dashboard in a real browser (Debian's chromium driven by Playwright), over the real
stack: events produced to Kafka, aggregated by the live Spark query into PostgreSQL, served by
Streamlit. The page's KPIs equal an independent computation over the events read back from
Kafka, and change when more events arrive."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal

import pytest

from shopstream.config import REPO_ROOT
from shopstream.dashboard.queries import day_start, window_start
from shopstream.devstack.dashboard_service import DashboardService
from shopstream.devstack.processes import free_port
from shopstream.spark.live_sales import run
from shopstream.spark.streaming import StreamSettings
from tests import live_oracle
from tests.conftest import produce
from tests.dates import minutes_ago
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
README_SCREENSHOT = REPO_ROOT / "docs" / "images" / "dashboard.png"


@pytest.fixture
def dashboard(tmp_path, store, kafka_broker, monkeypatch) -> Iterator[DashboardService]:
    for name, value in {
        "SHOPSTREAM_SERVING_DB": store, "SHOPSTREAM_DASHBOARD_REFRESH": "1",
        "SHOPSTREAM_STATE_DIR": str(tmp_path / "state"), "SHOPSTREAM_DATA_DIR": str(tmp_path / "data"),
        "SHOPSTREAM_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    service = DashboardService(tmp_path / "dashboard", free_port())
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def page(dashboard):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1250})  # a laptop
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        yield page
        browser.close()


def metrics(page) -> dict[str, str]:
    """Label -> shown value of every KPI on the page."""
    shown = {}
    for metric in page.get_by_test_id("stMetric").all():
        label = metric.get_by_test_id("stMetricLabel").inner_text().strip()
        shown[label] = metric.get_by_test_id("stMetricValue").inner_text().strip()
    return shown


# A big shop's day: tiles must hold it whole (seven in a row cut off "2,448,08…").
WIDEST_AMOUNT = "999,999,999.99"


def cut_off_tiles(page) -> list[str]:
    """Labels of the visible tiles whose label, value or note is cut off (wider than its box), an
    amount tried at its widest (WIDEST_AMOUNT, put in and taken out within one layout pass)."""
    return page.evaluate(
        """widest => [...document.querySelectorAll('[data-testid="stMetric"]')]
        .filter(tile => tile.offsetParent !== null)
        .filter(tile => {
            const label = tile.querySelector('[data-testid="stMetricLabel"]').innerText;
            const value = tile.querySelector('[data-testid="stMetricValue"]');
            const leaf = [...value.querySelectorAll('*')].filter(e => !e.children.length).pop() || value;
            const shown = leaf.textContent;
            if (label.includes('(USD)')) leaf.textContent = widest;
            const cut = [...tile.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1);
            leaf.textContent = shown;
            return cut;
        })
        .map(tile => tile.querySelector('[data-testid="stMetricLabel"]').innerText)""",
        WIDEST_AMOUNT,
    )


def each_tab_shows_whole_tiles(page) -> dict[str, list[str]]:
    """Per tab of the page: the tiles it cuts off."""
    cut = {}
    for tab in page.get_by_role("tab").all():
        tab.click()
        page.wait_for_timeout(500)
        cut[tab.inner_text().strip()] = cut_off_tiles(page)
    page.get_by_role("tab").first.click()
    return cut


def number(text: str) -> Decimal:
    return Decimal(re.sub(r"[^0-9.\-]", "", text))


def expected_kpis(truth: dict, now: dt.datetime) -> dict[str, Decimal]:
    """The page's KPIs from the oracle's per-minute totals (orders, ..., net)."""
    expected = {}
    for suffix, since in (("today", day_start(now)), ("last hour", window_start(now))):
        rows = [v for minute, v in truth["totals"].items() if minute >= since]
        expected[f"Orders {suffix}"] = Decimal(sum(r[0] for r in rows))
        expected[f"Units {suffix}"] = Decimal(sum(r[3] for r in rows))
        expected[f"Gross {suffix} (USD)"] = sum((r[4] for r in rows), Decimal(0))
        expected[f"Net revenue {suffix} (USD)"] = sum((r[6] for r in rows), Decimal(0))
    return expected


def shown_kpis(page, expected: dict[str, Decimal], timeout_s: float = 30) -> dict[str, Decimal]:
    """The page's KPIs, once they equal `expected` or after `timeout_s` (it refreshes itself)."""
    deadline = dt.datetime.now() + dt.timedelta(seconds=timeout_s)
    while True:
        shown = {label: number(value) for label, value in metrics(page).items() if label in expected}
        if shown == expected or dt.datetime.now() > deadline:
            return shown
        page.wait_for_timeout(500)


def test_dashboard_shows_the_events_kpis_and_follows_new_events(
    spark, kafka_broker, topic, tmp_path, store, dashboard, page
):
    bootstrap = kafka_broker.bootstrap
    produce(kafka_broker, topic, "--count", "3000", "--seed", "51", "--malformed-ratio", "0.02",
            "--start", minutes_ago(20), "--span", "15m")  # fmt: skip
    settings = StreamSettings(
        bootstrap=bootstrap, topic=topic, checkpoint_dir=tmp_path / "live", available_now=True
    )
    run(settings, spark, store)

    page.goto(dashboard.url)
    page.get_by_text("Orders today").first.wait_for(timeout=60_000)
    first = expected_kpis(
        live_oracle.truth(read_topic(bootstrap, topic, expected=3000)), dt.datetime.now(dt.UTC)
    )
    assert first["Orders last hour"] > 2000
    assert shown_kpis(page, first) == first

    # The page shows the store's health and has rendered without an error. The health tab renders
    # last, after the closed days' catalog reads: wait for it (hidden behind its tab: attached).
    health = page.get_by_test_id("stMetricLabel").filter(has_text="Live batches")
    health.wait_for(state="attached", timeout=60_000)
    shown = metrics(page)
    assert shown["Live batches"] and shown["Last live batch committed"].endswith("UTC")
    assert re.fullmatch(r"\d+\.\d%", shown["Quarantine rate, last 60 min"])
    assert page.get_by_text("Top products, last 60 minutes").count() == 1
    assert page.get_by_test_id("stException").count() == 0 and not page.errors
    # Every tile whole at 1,400 px, its amounts tried at their widest.
    assert each_tab_shows_whole_tiles(page) == {"Live": [], "Closed days": [], "Health": []}

    produce(kafka_broker, topic, "--count", "1000", "--seed", "52", "--start", minutes_ago(5), "--span", "4m")
    run(settings, spark, store)

    second = expected_kpis(
        live_oracle.truth(read_topic(bootstrap, topic, expected=4000)), dt.datetime.now(dt.UTC)
    )
    assert second["Orders last hour"] > first["Orders last hour"]
    assert shown_kpis(page, second) == second, "the page follows the new events without a reload"
    assert page.get_by_test_id("stException").count() == 0 and not page.errors

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    if os.environ.get("SHOPSTREAM_UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, README_SCREENSHOT)


def test_dashboard_without_a_store_says_what_to_do(tmp_path, monkeypatch, page_without_store):
    page, service = page_without_store
    page.goto(service.url)
    page.get_by_text("The serving database is unreachable").first.wait_for(timeout=60_000)
    assert page.get_by_text("make db-up").count() >= 1


@pytest.fixture
def page_without_store(tmp_path, monkeypatch) -> Iterator[tuple]:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("SHOPSTREAM_SERVING_DB", f"postgresql://nobody:x@127.0.0.1:{free_port()}/none")
    monkeypatch.setenv("SHOPSTREAM_STATE_DIR", str(tmp_path / "state"))
    service = DashboardService(tmp_path / "dashboard", free_port())
    service.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield browser.new_page(), service
            browser.close()
    finally:
        service.stop()
