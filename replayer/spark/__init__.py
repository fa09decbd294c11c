"""Replaying with Spark: `replayer spark PATH... --out DIR` and, for notebooks, `replay(df)`.

Needs the `spark` extra (pyspark) and Java; nothing here imports pyspark until it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from replayer.config import Settings
    from replayer.output.summary import RunSummary

INSTALL = "pip install 'replayer[spark]'"


def replay(df: DataFrame, *, out: str | Path, settings: Settings | None = None,
           partitions: int | None = None, **overrides: Any) -> RunSummary:
    """Replays a DataFrame whose rows are start records into `out`; returns the run's summary.

    `settings` default to those `replayer run` would load (config file, environment);
    `overrides` are settings by name (endpoint="...", rate_per_s=100, dry_run=True, ...).
    Rows are named <dataframe> and numbered from 1 in the DataFrame's order.
    """
    import dataclasses
    import os

    from replayer.config import load_settings
    from replayer.spark.job import frame_source, run_job

    if settings is None:
        settings = load_settings(flags=overrides, env=os.environ, config_path=None,
                                 sending=True)
    else:
        settings = dataclasses.replace(settings, **overrides)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    return run_job(df.sparkSession, frame_source(df), settings, out_dir, partitions=partitions)
