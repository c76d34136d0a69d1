"""File sources (CSV, Parquet, NDJSON, JSON; paths, globs, URLs) and schema evolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.jobs.ingest_support import columns, ingest, pipeline, query, served_directory, snapshot


def _write_ndjson(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _file_source(name: str, path: str, fmt: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "file": {"path": path, "format": fmt}, **fields}


def test_every_format_loads_from_a_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    records = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(1, 11)]
    _write_ndjson(data / "items.ndjson", records)
    (data / "items.json").write_text(json.dumps(records))
    (data / "items.csv").write_text(
        "id;name;score\n" + "".join(f"{r['id']};{r['name']};{r['score']}\n" for r in records)
    )
    duckdb.execute(
        f"COPY (SELECT * FROM read_json('{data / 'items.ndjson'}')) TO '{data / 'items.parquet'}'"
    )
    sources = [
        _file_source("from_ndjson", "data/items.ndjson", "ndjson"),
        _file_source("from_json", "data/items.json", "json"),
        {"name": "from_csv", "file": {"path": "data/items.csv", "format": "csv", "delimiter": ";"}},
        _file_source("from_parquet", str(data / "items.parquet"), "parquet"),
    ]
    warehouse = tmp_path / "warehouse.duckdb"
    summary = ingest(pipeline(*sources), warehouse, manifest_dir=tmp_path)
    assert summary.ok, summary.error
    for source in sources:
        table = f"raw.{source['name']}"
        assert summary.tables[table].loaded == 10
        assert query(warehouse, f"SELECT sum(id), max(score) FROM {table}") == [(55, 5.0)]


def test_a_glob_reads_every_match_and_a_missing_path_names_the_source(tmp_path: Path) -> None:
    for day in (1, 2, 3):
        _write_ndjson(tmp_path / f"events-{day}.ndjson", [{"day": day, "n": k} for k in range(4)])
    warehouse = tmp_path / "warehouse.duckdb"
    summary = ingest(pipeline(_file_source("events", "events-*.ndjson", "ndjson")), warehouse)
    assert summary.ok, summary.error
    assert summary.tables["raw.events"].loaded == 12
    missing = ingest(pipeline(_file_source("events", "nothing-*.csv", "csv")), warehouse)
    assert not missing.ok
    assert missing.error is not None
    assert "source events: no file matches path 'nothing-*.csv'" in missing.error


def test_a_url_is_downloaded_and_loaded(tmp_path: Path) -> None:
    _write_ndjson(tmp_path / "remote.ndjson", [{"id": i} for i in range(7)])
    with served_directory(tmp_path) as base:
        source = {"name": "remote", "file": {"url": f"{base}/remote.ndjson", "format": "ndjson"}}
        summary = ingest(pipeline(source), tmp_path / "warehouse.duckdb")
        broken = {"name": "gone", "file": {"url": f"{base}/missing.csv", "format": "csv"}}
        failed = ingest(pipeline(broken), tmp_path / "warehouse.duckdb")
    assert summary.ok, summary.error
    assert summary.tables["raw.remote"].loaded == 7
    assert not failed.ok
    assert failed.error is not None
    assert "source gone" in failed.error
    assert "HTTP 404" in failed.error


def test_incremental_files_load_rows_past_the_cursor(tmp_path: Path) -> None:
    path = tmp_path / "log.ndjson"
    _write_ndjson(path, [{"seq": i} for i in range(1, 6)])
    spec = pipeline(_file_source("log", "log.ndjson", "ndjson", incremental={"cursorField": "seq"}))
    warehouse = tmp_path / "warehouse.duckdb"
    assert ingest(spec, warehouse, "run-1").tables["raw.log"].loaded == 5
    _write_ndjson(path, [{"seq": i} for i in range(1, 9)])
    second = ingest(spec, warehouse, "run-2")
    assert (second.tables["raw.log"].loaded, second.tables["raw.log"].rows) == (3, 8)
    assert query(warehouse, "SELECT cursor_value FROM _duckherd.state") == [("8",)]


def test_schema_evolution_adds_widens_and_keeps_vanished_columns(tmp_path: Path) -> None:
    path = tmp_path / "items.ndjson"
    spec = pipeline(_file_source("items", "items.ndjson", "ndjson"))
    warehouse = tmp_path / "warehouse.duckdb"
    _write_ndjson(path, [{"id": 1, "qty": 2, "gone": "x", "seen": "2026-01-01"}])
    assert ingest(spec, warehouse, "run-1").ok
    assert columns(warehouse, "raw.items")["qty"] == "BIGINT"
    assert columns(warehouse, "raw.items")["seen"] == "DATE"
    _write_ndjson(path, [{"id": 2, "qty": 2.5, "extra": True, "seen": "soon"}])
    summary = ingest(spec, warehouse, "run-2")
    assert summary.ok, summary.error
    kinds = columns(warehouse, "raw.items")
    assert (kinds["qty"], kinds["extra"], kinds["seen"]) == ("DOUBLE", "BOOLEAN", "VARCHAR")
    assert query(warehouse, "SELECT id, qty, gone, extra, seen FROM raw.items ORDER BY id") == [
        (1, 2.0, "x", None, "2026-01-01"),
        (2, 2.5, None, True, "soon"),
    ]


def test_an_incompatible_change_fails_naming_table_and_column_and_rolls_back_all_sources(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.ndjson").write_text('{"id": 1}\n')
    (tmp_path / "b.ndjson").write_text('{"id": 1, "amount": 10}\n')
    spec = pipeline(
        _file_source("a", "a.ndjson", "ndjson", incremental={"cursorField": "id"}),
        _file_source("b", "b.ndjson", "ndjson"),
    )
    warehouse = tmp_path / "warehouse.duckdb"
    assert ingest(spec, warehouse, "run-1").ok
    before = snapshot(warehouse)
    (tmp_path / "a.ndjson").write_text('{"id": 1}\n{"id": 2}\n')  # loads first, then rolled back
    (tmp_path / "b.ndjson").write_text('{"id": 2, "amount": "ten"}\n')
    summary = ingest(spec, warehouse, "run-2")
    assert not summary.ok
    assert summary.error is not None
    assert "raw.b" in summary.error
    assert "column amount" in summary.error
    assert snapshot(warehouse) == before


@pytest.mark.parametrize("reserved", ["_loaded_at", "_run_id"])
def test_reserved_column_names_are_refused(tmp_path: Path, reserved: str) -> None:
    _write_ndjson(tmp_path / "x.ndjson", [{"id": 1, reserved: "mine"}])
    summary = ingest(pipeline(_file_source("x", "x.ndjson", "ndjson")), tmp_path / "w.duckdb")
    assert not summary.ok
    assert summary.error is not None
    assert f"column {reserved} is reserved" in summary.error
