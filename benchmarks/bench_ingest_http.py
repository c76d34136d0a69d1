"""B1: one million records over HTTP from the demo source into DuckDB.

    python -m benchmarks.bench_ingest_http            # 1,000 pages x 1,000 records
    BENCH_RECORDS=100000 BENCH_SKIP_DLT=1 python -m benchmarks.bench_ingest_http

Contenders, each in its own process against the same demo source (a separate process too):
- duckherd: the ingest stage (`run_stage("ingest")`), page pagination with totalPath, so
  pages are fetched 4 at a time; loads `raw.customers` in one transaction.
- raw limit: hand-written — GET every page in order with one httpx client, write the bodies
  to a file, one DuckDB `read_json` + `unnest` into a table (sampling as many pages as
  Duckherd's fast path does). With latency, also the same with 4 threads.
- dlt rest_api into DuckDB, its defaults (insert-values) and with loader_file_format=parquet.
Round 2 repeats Duckherd and the raw limit with 20 ms added to every page response.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks import Measurement, print_table, report, run_contender

MODULE = "benchmarks.bench_ingest_http"
PAGE_SIZE = 1000
RAW_SAMPLE_PAGES = 21  # = Duckherd's fast path: ~20,480 records sampled for types


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(records: int, latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    code = (
        "from duckherd_jobs.demo_source import serve; "
        f"serve('127.0.0.1', {port}, {records}, latency_seconds={latency})"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise TimeoutError("demo source did not start")


# ---------------------------------------------------------------------- contenders (children)


def _duckherd(url: str, workdir: Path) -> dict[str, float | int]:
    from tests.pipelines import pipeline as make_pipeline

    from duckherd_jobs.context import StageContext
    from duckherd_jobs.runner import run_stage

    http = {
        "url": f"{url}/customers",
        "recordsPath": "data",
        "pagination": {"type": "page", "pageSize": PAGE_SIZE, "totalPath": "total"},
    }
    pipeline = make_pipeline("bench", sources=[{"name": "customers", "http": http}])
    import duckherd_jobs.ingest  # noqa: F401 (imported before the clock starts, like the others)

    ctx = StageContext(pipeline=pipeline, warehouse=workdir / "warehouse.duckdb", run_id="bench")
    started = time.perf_counter()
    summary = run_stage("ingest", ctx)
    seconds = time.perf_counter() - started
    if not summary.ok:
        raise RuntimeError(summary.error)
    return {"seconds": seconds, "rows": summary.tables["raw.customers"].loaded or 0}


def _raw(url: str, workdir: Path, threads: int) -> dict[str, float | int]:
    import duckdb

    spool = workdir / "pages.ndjson"
    started = time.perf_counter()
    with httpx.Client(limits=httpx.Limits(max_connections=threads)) as client:

        def get(page: int) -> bytes:
            response = client.get(f"{url}/customers", params={"page": page, "page_size": PAGE_SIZE})
            response.raise_for_status()
            return response.content

        first = get(1)
        pages = -(-json.loads(first)["total"] // PAGE_SIZE)
        with spool.open("wb") as file, ThreadPoolExecutor(threads) as pool:
            file.write(first + b"\n")
            for body in pool.map(get, range(2, pages + 1)):
                file.write(body + b"\n")
    connection = duckdb.connect(str(workdir / "warehouse.duckdb"))
    connection.execute(
        "CREATE TABLE customers AS SELECT unnest(data, max_depth := 2) FROM read_json(?, "
        f"format = 'newline_delimited', sample_size = {RAW_SAMPLE_PAGES})",
        [str(spool)],
    )
    row = connection.execute("SELECT count(*) FROM customers").fetchone()
    connection.close()
    return {"seconds": time.perf_counter() - started, "rows": int(row[0]) if row else 0}


def _dlt(url: str, workdir: Path, file_format: str | None) -> dict[str, float | int]:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    import duckdb
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {"base_url": url},
            "resources": [
                {
                    "name": "customers",
                    "endpoint": {
                        "path": "customers",
                        "params": {"page_size": PAGE_SIZE},
                        "data_selector": "data",
                        "paginator": "header_link",
                    },
                }
            ],
        }
    )
    warehouse = workdir / "warehouse.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="bench_http",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name="raw",
        pipelines_dir=str(workdir / "dlt"),
    )
    started = time.perf_counter()
    if file_format is None:
        pipeline.run(source)
    else:
        pipeline.run(source, loader_file_format=file_format)  # type: ignore[arg-type, unused-ignore]
    seconds = time.perf_counter() - started
    connection = duckdb.connect(str(warehouse), read_only=True)
    row = connection.execute("SELECT count(*) FROM raw.customers").fetchone()
    connection.close()
    return {"seconds": seconds, "rows": int(row[0]) if row else 0}


CONTENDERS: dict[str, Callable[[str, Path], dict[str, float | int]]] = {
    "duckherd": _duckherd,
    "raw": lambda url, workdir: _raw(url, workdir, 1),
    "raw4": lambda url, workdir: _raw(url, workdir, 4),
    "dlt": lambda url, workdir: _dlt(url, workdir, None),
    "dlt_parquet": lambda url, workdir: _dlt(url, workdir, "parquet"),
}
LABELS = {
    "duckherd": "duckherd ingest",
    "raw": "raw limit (httpx + read_json)",
    "raw4": "raw limit, 4 threads",
    "dlt": "dlt rest_api (defaults)",
    "dlt_parquet": "dlt rest_api (parquet)",
}


# ---------------------------------------------------------------------- orchestration


def _round(records: int, latency: float, contenders: list[str]) -> list[Measurement]:
    server, url = _start_server(records, latency)
    try:
        measurements = []
        for name in contenders:
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-http-{name}-"))
            try:
                measurement = run_contender(
                    LABELS[name], MODULE, ["child", name, url, str(workdir)]
                )
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            if measurement.rows != records:
                raise RuntimeError(f"{name} loaded {measurement.rows} rows, expected {records}")
            measurements.append(measurement)
        return measurements
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    records = int(os.environ.get("BENCH_RECORDS", "1000000"))
    skip_dlt = os.environ.get("BENCH_SKIP_DLT") == "1"
    first = ["duckherd", "raw"] + ([] if skip_dlt else ["dlt_parquet", "dlt"])
    print_table(
        f"B1: {records:,} records over HTTP ({records // PAGE_SIZE} pages), loopback",
        _round(records, 0.0, first),
        LABELS["duckherd"],
    )
    print_table(
        f"B1: {records:,} records over HTTP, 20 ms added per page",
        _round(records, 0.02, ["duckherd", "raw", "raw4"]),
        LABELS["duckherd"],
    )


def _child(name: str, url: str, workdir: str) -> None:
    report(CONTENDERS[name](url, Path(workdir)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _child(*sys.argv[2:5])
    else:
        main()
