"""Events a streaming query will never read, found before it starts: by cause, per partition, the
Kafka offsets the topic's retention deleted before any run read them, or that a topic created again
holds where Spark would skip them. A query stops and says so (`EventsLost` and its kinds, with what to
do), or, told to accept the loss, records the gap in its ledger (`shopstream.data_loss`) and goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from shopstream.data_loss import record_data_loss
from shopstream.spark.ingest_guard import committed_offsets
from shopstream.spark.session import job_logger

if TYPE_CHECKING:
    from shopstream.kafka_admin import TopicStats

log = job_logger("stream")


class Source(Protocol):
    """What the check needs of a query's settings (`streaming.StreamSettings`)."""

    topic: str
    bootstrap: str
    accept_data_loss: bool


def aged_out(
    committed: dict[str, dict[int, int]], topic: str, starts: dict[int, int]
) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets [first, end) the query has yet to read but Kafka no longer
    holds: the query's committed end lies before the partition's first offset now (`starts`).
    A partition the query never read is not counted (a new query starts at the oldest event)."""
    mine = committed.get(topic, {})
    return {p: (mine[p], start) for p, start in sorted(starts.items()) if p in mine and mine[p] < start}


def rewound(
    committed: dict[str, dict[int, int]], topic: str, starts: dict[int, int], ends: dict[int, int]
) -> dict[int, tuple[int, int]]:
    """Per partition whose end lies before the query's committed offset (the topic was deleted and
    created again): the offsets [first, end) it holds now, which Spark would skip (it goes on
    from the partition's end once told to accept the loss; measured)."""
    mine = committed.get(topic, {})
    return {p: (starts.get(p, 0), end) for p, end in sorted(ends.items()) if p in mine and mine[p] > end}


AGED_OUT, REWOUND = "retention", "topic created again"
Gaps = dict[str, dict[int, tuple[int, int]]]  # cause -> partition -> offsets [first, end) not read


def source_gaps(committed: dict[str, dict[int, int]], topic: str, stats: TopicStats) -> Gaps:
    """By cause, per partition, the offsets [first, end) of `topic` a query that `committed` these
    offsets will not read, given the topic's `stats` (`kafka_admin.TopicStats`) now: deleted by
    the retention before any run read them (AGED_OUT), or held by a topic created again that Spark
    would skip (REWOUND)."""
    gaps = {AGED_OUT: aged_out(committed, topic, stats.start_offsets),
            REWOUND: rewound(committed, topic, stats.start_offsets, stats.end_offsets)}  # fmt: skip
    return {cause: gap for cause, gap in gaps.items() if gap}


def gap_events(gap: dict[int, tuple[int, int]]) -> int:
    """How many offsets a gap (partition -> [first, end)) spans."""
    return sum(end - first for first, end in gap.values())


class EventsLost(RuntimeError):
    """Events of the topic that a query has not read are gone or would be skipped; the message
    says which and what to do."""


class EventsAgedOut(EventsLost):
    """Kafka deleted (its retention) events that the query had not read yet."""


class TopicRewound(EventsLost):
    """The topic ends before what the query committed: it was deleted and created again."""


ACCEPT_HOW = ("run this job once with --available-now --accept-data-loss (the DAG: a manual run with "
              "accept_data_loss true)")  # fmt: skip


def _ranges(gap: dict[int, tuple[int, int]]) -> str:
    return ", ".join(f"partition {p} offsets {first}-{end - 1}" for p, (first, end) in gap.items())


def refusal(topic: str, bootstrap: str, gaps: Gaps, ledger: Path) -> EventsLost:
    """The error that names `gaps` (of `source_gaps`) and the way on."""
    if gap := gaps.get(REWOUND):
        ends = ", ".join(f"partition {p} ends at {end}" for p, (_, end) in gap.items())
        return TopicRewound(
            f"{topic} on {bootstrap} ends before what this query already committed ({ends}): the "
            f"topic was deleted and created again, or the broker address points at another cluster "
            f"(check SHOPSTREAM_KAFKA_BOOTSTRAP / the kafka_default Connection). Spark cannot resume "
            f"this checkpoint on the new topic without skipping what it holds now ({_ranges(gap)}). "
            f"If the topic was created again: {ACCEPT_HOW}, which records the skipped offsets in "
            f"{ledger} and reads on from the topic's end; then produce those events again if their "
            f"source has them (they arrive as late events of their dates)."
        )
    gap = gaps[AGED_OUT]
    return EventsAgedOut(
        f"Kafka no longer holds {gap_events(gap)} events of {topic} that this "
        f"query had not read yet ({_ranges(gap)}): the topic's retention deleted them before a run "
        f"came (the query's last committed batch ends before the oldest offsets Kafka keeps now). "
        f"They cannot be read from Kafka any more. If their source still has them, produce them "
        f"again (they arrive as late events of their dates). Then {ACCEPT_HOW}: it records the gap "
        f"in {ledger} and goes on from the oldest events Kafka holds. Keep the topic's retention "
        f"(retention.ms) longer than the longest pause between runs."
    )


def check_source_continuity(settings: Source, stats: TopicStats, query_checkpoint: Path,
                            ledger: Path) -> Gaps:  # fmt: skip
    """Raises the `refusal` of the query's `source_gaps`, or with `settings.accept_data_loss`
    records them in `ledger` (by cause) and returns them."""
    gaps = source_gaps(committed_offsets(query_checkpoint), settings.topic, stats)
    if gaps and not settings.accept_data_loss:
        raise refusal(settings.topic, settings.bootstrap, gaps, ledger)
    for cause, gap in gaps.items():
        record_data_loss(ledger, settings.topic, gap, cause)
        log.warning("going on past %d events of %s lost to %s (%s); recorded in %s",
                    gap_events(gap), settings.topic, cause, _ranges(gap), ledger)  # fmt: skip
    return gaps
