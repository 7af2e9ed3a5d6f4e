"""Reliability drills on the real engines: what breaks in production, done on purpose."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

import pytest

from shopstream.config import order_sim_binary
from shopstream.devstack.kafka_broker import throwaway_broker
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration


def test_producer_rides_out_a_broker_crash_and_restart_without_loss_or_duplicates(tmp_path, topic):
    count = 30_000
    # Its own broker: the session's one must not go down under other tests.
    with throwaway_broker(tmp_path / "kafka") as broker:
        sim = subprocess.Popen(
            [str(order_sim_binary()), "--brokers", broker.bootstrap, "--topic", topic, "--no-updates",
             "--count", str(count), "--rate", "5000", "--seed", "51"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2.5)
        assert sim.poll() is None, "the producer must still be producing when the broker dies"
        broker.kill()  # SIGKILL: no clean shutdown, in-flight batches unacknowledged
        time.sleep(3)
        broker.start()
        out, err = sim.communicate(timeout=240)

        assert sim.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert (summary["delivered"], summary["failed"]) == (count, 0)
        assert "kafka client error" in err, "the producer saw the outage and retried"
        events = [json.loads(m.value) for m in read_topic(broker.bootstrap, topic, expected=count)]
        assert len(events) == count, "nothing lost, nothing written twice"
        copies = Counter((e["order_id"], e["order_status"]) for e in events)
        assert max(copies.values()) == 1
