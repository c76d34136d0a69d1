"""File sources: CSV, Parquet, NDJSON or a JSON array, from a path (glob) or a URL."""

from __future__ import annotations

import glob
from collections.abc import Mapping
from pathlib import Path

from duckherd.api import FileSource, Source
from duckherd_jobs.ingest.errors import IngestError
from duckherd_jobs.ingest.extracted import Extracted
from duckherd_jobs.ingest.fetch import Fetcher, describe_failure
from duckherd_jobs.sql import sql_string

DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_SECONDS = 300.0
DOWNLOAD_RETRIES = 5


def _reader(file: FileSource) -> str:
    if file.format == "csv":
        header, delimiter = str(file.header).lower(), sql_string(file.delimiter)
        return f"read_csv(?, header = {header}, delim = {delimiter}, union_by_name = true)"
    if file.format == "parquet":
        return "read_parquet(?, union_by_name = true)"
    # Every record is sampled: a key that first appears late must not be dropped.
    json_format = "newline_delimited" if file.format == "ndjson" else "array"
    return f"read_json(?, format = '{json_format}', union_by_name = true, sample_size = -1)"


def _local_files(file: FileSource, base: Path) -> list[str]:
    assert file.path is not None
    pattern = file.path if Path(file.path).is_absolute() else str(base / file.path)
    matches = sorted(glob.glob(pattern, recursive=True))
    return [match for match in matches if Path(match).is_file()]


def _download(source: Source, url: str, target: Path) -> None:
    fetcher = Fetcher(
        timeout_seconds=DOWNLOAD_TIMEOUT_SECONDS, max_retries=DOWNLOAD_RETRIES, headers={}
    )
    try:
        fetcher.download(url, target, DOWNLOAD_CHUNK_BYTES)
    except Exception as error:
        raise IngestError(
            f"source {source.name} (file {url}): download failed: {describe_failure(error)}"
        ) from None
    finally:
        fetcher.close()


def extract_file(
    source: Source, env: Mapping[str, str], cursor: str | None, spool_dir: Path, base: Path
) -> Extracted:
    """Local files are read in place; a URL is downloaded to the spool first."""
    file = source.file
    assert file is not None
    if file.url is not None:
        target = spool_dir / f"{source.name}.{file.format}"
        _download(source, file.url, target)
        files = [str(target)]
    else:
        files = _local_files(file, base)
        if not files:
            raise IngestError(f"source {source.name}: no file matches path {file.path!r}")
    return Extracted(f"SELECT * FROM {_reader(file)}", [files])
