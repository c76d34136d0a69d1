"""B6: how to snapshot the warehouse — a checkpointed file copy vs DuckDB's EXPORT DATABASE.

    python -m benchmarks.bench_backup [--customers 10000 200000] [--repeat 3]

For each size the example pipeline (examples/customer-analytics: ingest, dbt, checks) builds
a warehouse from the demo source; then, side by side on that file, each way is timed (median
of `--repeat`) for the backup (under the writer's lock, as the backup Job takes it) and for
the restore into a fresh file, and the restored warehouse is compared with the original table
by table:

- copy: `CHECKPOINT`, then the file copied by a child process (`cp`) while this process
  keeps the lock (a copy made in-process would drop DuckDB's POSIX lock when it closes its
  file descriptor); restore: copy back.
- export: `EXPORT DATABASE ... (FORMAT parquet)`; restore: `IMPORT DATABASE` into a new file.

docs/backup.md records the numbers and the choice.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from duckherd_jobs.demo_source import DemoSource

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "examples" / "customer-analytics" / "pipeline.yaml"


def build_warehouse(customers: int, path: Path) -> None:
    with DemoSource(customers) as api:
        env = {**os.environ, "DUCKHERD_SOURCE_URL_CUSTOMERS": f"{api}/customers"}
        command = [
            str(Path(sys.executable).with_name("duckherd")),
            "run",
            str(MANIFEST),
            "--warehouse",
            str(path),
            "--stages",
            "ingest,transform,check",
        ]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def backup_copy(warehouse: Path, target: Path) -> None:
    connection = duckdb.connect(str(warehouse))
    try:
        connection.execute("CHECKPOINT")
        subprocess.run(["cp", str(warehouse), str(target)], check=True)
    finally:
        connection.close()


def restore_copy(backup: Path, target: Path) -> None:
    subprocess.run(["cp", str(backup), str(target)], check=True)
    duckdb.connect(str(target)).close()


def backup_export(warehouse: Path, target: Path) -> None:
    connection = duckdb.connect(str(warehouse))
    try:
        connection.execute(f"EXPORT DATABASE '{target}' (FORMAT parquet)")
    finally:
        connection.close()


def restore_import(backup: Path, target: Path) -> None:
    connection = duckdb.connect(str(target))
    try:
        connection.execute(f"IMPORT DATABASE '{backup}'")
    finally:
        connection.close()


def tables_equal(left: Path, right: Path) -> tuple[int, list[str]]:
    """(tables compared, tables that differ): rows compared as multisets, both directions."""
    connection = duckdb.connect()
    connection.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
    connection.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
    names = connection.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'l' "
        "ORDER BY 1, 2"
    ).fetchall()
    differ = []
    for schema, table in names:
        a, b = f'l."{schema}"."{table}"', f'r."{schema}"."{table}"'
        try:
            row = connection.execute(
                f"SELECT (SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})) + "
                f"(SELECT count(*) FROM (FROM {b} EXCEPT ALL FROM {a}))"
            ).fetchone()
            if row is None or row[0] != 0:
                differ.append(f"{schema}.{table}")
        except duckdb.Error as error:
            differ.append(f"{schema}.{table} ({type(error).__name__})")
    connection.close()
    return len(names), differ


def timed(action: Callable[[], None], repeat: int, reset: Callable[[], None]) -> float:
    seconds = []
    for _ in range(repeat):
        reset()
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def measure(customers: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        root = Path(tmp)
        warehouse = root / "warehouse.duckdb"
        build_warehouse(customers, warehouse)
        copy, export = root / "copy.duckdb", root / "export"
        restored_copy, restored_import = (
            root / "restored-copy.duckdb",
            root / "restored-import.duckdb",
        )

        def clear(*paths: Path) -> Callable[[], None]:
            def reset() -> None:
                for path in paths:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
                        Path(f"{path}.wal").unlink(missing_ok=True)

            return reset

        rows = {
            "copy": (
                timed(lambda: backup_copy(warehouse, copy), repeat, clear(copy)),
                size_of(copy),
                timed(lambda: restore_copy(copy, restored_copy), repeat, clear(restored_copy)),
                tables_equal(warehouse, restored_copy),
            ),
            "export (parquet)": (
                timed(lambda: backup_export(warehouse, export), repeat, clear(export)),
                size_of(export),
                timed(
                    lambda: restore_import(export, restored_import),
                    repeat,
                    clear(restored_import),
                ),
                tables_equal(warehouse, restored_import),
            ),
        }
        print(
            f"\nwarehouse of {customers:,} customers: {size_of(warehouse) / 1e6:.1f} MB "
            f"(median of {repeat})"
        )
        print(f"{'way':<18} {'backup s':>9} {'size MB':>8} {'restore s':>10}  equal")
        for name, (backup_s, size, restore_s, (count, differ)) in rows.items():
            verdict = f"{count - len(differ)}/{count} tables" + (
                f" (differ: {', '.join(differ)})" if differ else ""
            )
            print(f"{name:<18} {backup_s:>9.3f} {size / 1e6:>8.1f} {restore_s:>10.3f}  {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else [])
    for customers in args.customers:
        measure(customers, args.repeat)


if __name__ == "__main__":
    main(sys.argv[1:])
