"""dlt's SQL source (sql_table with an incremental cursor on updated_at) on the same
orders table as `make bench-extract`: what the source database sees. A sampler polls
pg_stat_activity every 2 ms for dlt's session (application_name dlt-extract) and records
each statement it catches active and each transaction it catches open (active or idle in
transaction), and for how long: counts are lower bounds (one shorter than the interval
can be missed), durations are measured within the interval. dlt reads through a
server-side cursor: each FETCH is short, the transaction holding the cursor (and its
snapshot, which keeps VACUUM from removing dead rows) lasts the whole extraction.
A full run, then an incremental run after 1% of the rows changed.
Runs in its own virtualenv (`make bench-extract-dlt`); prints one JSON object.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import dlt
from dlt.sources.sql_database import sql_table
from pg_orders_table import ROWS, Sampler, change_one_percent, create_source, drop_source

CHUNK = int(os.environ.get("BENCH_PG_PAGE", "5000"))


def main() -> None:
    name, dsn, setup_s = create_source()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}?application_name=dlt-extract"
    out: dict[str, Any] = {"source_rows": ROWS, "chunk_size": CHUNK, "setup_s": round(setup_s, 1)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["DLT_DATA_DIR"] = os.path.join(tmp, "dlt")
            os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
            pipeline = dlt.pipeline(
                pipeline_name="orders_bench",
                destination=dlt.destinations.filesystem(bucket_url=os.path.join(tmp, "landing")),
                dataset_name="orders",
                pipelines_dir=os.path.join(tmp, "pipelines"),
            )

            def run(label: str) -> None:
                table = sql_table(
                    credentials=url,
                    table="orders",
                    incremental=dlt.sources.incremental("updated_at"),
                    chunk_size=CHUNK,
                    backend="pyarrow",
                )
                with Sampler(dsn, "dlt-extract") as sampler:
                    started = time.perf_counter()
                    info = pipeline.run(table, loader_file_format="parquet")
                    seconds = time.perf_counter() - started
                rows = pipeline.last_trace.last_normalize_info.row_counts.get("orders", 0)
                out[label] = {"rows": rows, "seconds": round(seconds, 1), **sampler.report()}
                assert not info.has_failed_jobs

            run("full")
            change_one_percent(dsn)
            run("incremental_after_1pct_changed")
    finally:
        drop_source(name)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
