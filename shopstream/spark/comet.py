"""Apache DataFusion Comet: Spark's physical plans run natively (Rust, Arrow, DataFusion) where
Comet supports them, in the same JVM, with the same results. On by default for the batch jobs'
sessions (`session.job_conf`); SHOPSTREAM_COMET=0 switches it off (to compare, or on a cluster
whose workers lack the jar).

Comet falls back to Spark operator by operator; with `spark.comet.explain.fallback.enabled` it logs
each plan's fallbacks and their reasons (logger `CometExecRule`), and `non_native` lists the
operators of an executed plan that Spark ran itself, which the jobs log and the tests assert on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from shopstream.config import paths


def comet_enabled() -> bool:
    """Spark plans run natively by Apache DataFusion Comet unless SHOPSTREAM_COMET=0 (to compare,
    or on a cluster whose workers lack its jar)."""
    return os.environ.get("SHOPSTREAM_COMET", "1") != "0"


def comet_jars(required: bool = True) -> list[str]:
    """Comet's jar (with the one Scala library Spark lacks) that `make setup` resolved."""
    jars = sorted(str(p) for p in paths().comet_jars.glob("*.jar"))
    if required and not jars:
        raise RuntimeError(
            f"no Comet jar in {paths().comet_jars}: run `make setup`, or turn Comet off (SHOPSTREAM_COMET=0)"
        )
    return jars


# Comet's native operators reserve memory from Spark's off-heap pool (Comet refuses to run without
# one). Sized for this project's 2-core machines beside the 1 GB heap; its untracked native memory
# (buffers, the Tokio runtime) comes on top.
COMET_OFF_HEAP = "1g"


def comet_class_path_conf(required: bool = True) -> dict[str, str]:
    """Comet's jars on the JVM's class path from the start (its shuffle manager is loaded before
    any `spark.jars`), {} when Comet is switched off. Every job gets them, used or not, so that
    one class-data archive fits every job's class path (`shopstream.spark.class_archive`)."""
    if not comet_enabled():
        return {}
    classpath = ":".join(comet_jars(required))
    if not classpath:
        return {}
    return {"spark.driver.extraClassPath": classpath, "spark.executor.extraClassPath": classpath}


def comet_conf() -> dict[str, str]:
    """Comet's settings for a job it runs, {} when it is switched off; its jars come with every
    job's class path (`comet_class_path_conf`). Its shuffle manager is static (read when the JVM
    starts)."""
    if not comet_enabled():
        return {}
    return {
        "spark.plugins": "org.apache.spark.CometPlugin",
        "spark.shuffle.manager": "org.apache.spark.sql.comet.execution.shuffle.CometShuffleManager",
        "spark.memory.offHeap.enabled": "true",
        "spark.memory.offHeap.size": COMET_OFF_HEAP,
        # Whatever Comet cannot run natively is logged with the reason (and see log_native_coverage).
        "spark.comet.explain.fallback.enabled": "true",
    }


# Operators that only adapt between stages or formats, neither work Comet could take nor a fallback;
# and the read of a DataFrame the job cached itself (Spark's in-memory cache), whose plan is walked.
PLAN_GLUE = frozenset(
    {"AQEShuffleRead", "InputAdapter", "WholeStageCodegen", "ColumnarToRow", "InMemoryTableScan"}
)


def physical_operators(df) -> list[str]:
    """The operator names of `df`'s executed physical plan, through adaptive query stages and
    cached relations (run an action first, so that adaptive execution has fixed the final plan)."""

    def walk(node) -> Iterator[str]:
        name = node.nodeName()
        if name.startswith("AdaptiveSparkPlan"):
            yield from walk(node.executedPlan())
            return
        if name.endswith("QueryStage"):
            yield from walk(node.plan())
            return
        yield name.split()[0]  # "CometNativeScan parquet " -> "CometNativeScan"
        if name == "InMemoryTableScan":
            yield from walk(node.relation().cachedPlan())
        children = node.children()
        for i in range(children.length()):
            yield from walk(children.apply(i))

    return list(walk(df._jdf.queryExecution().executedPlan()))


def non_native(df) -> list[str]:
    """The operators of `df`'s executed plan that Spark ran instead of Comet."""
    return [op for op in physical_operators(df) if not op.startswith("Comet") and op not in PLAN_GLUE]


def log_native_coverage(log, what: str, df) -> None:
    """Says whether Comet ran `df`'s executed plan natively, and which operators Spark ran if not
    (Comet's own warnings, logger CometExecRule, give the reasons)."""
    if not comet_enabled():
        return
    fallbacks = non_native(df)
    if fallbacks:
        log.warning("Comet fell back to Spark for part of the %s: %s (reasons: CometExecRule's warnings)",
                    what, ", ".join(sorted(set(fallbacks))))  # fmt: skip
    else:
        log.info("Comet ran the %s natively", what)
