"""Where shopstream's files outside the Python package are: `config/` (Spark's settings, the
backfill ranges), `contracts/` (the event contract), `data/regions.csv`, `dags/`, and the local
stack's `.state/` and `data/` by default.

In a checkout that is the checkout (the package's parent folder). An installed package
(`pip install shopstream`, e.g. into your own Airflow) has no such parent: set `SHOPSTREAM_HOME`
to a copy of those folders (README, "Deploy into your Airflow").
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("SHOPSTREAM_HOME") or Path(__file__).resolve().parent.parent)
