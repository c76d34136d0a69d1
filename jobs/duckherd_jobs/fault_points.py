"""Named points where a fault test can stop a stage process, to SIGKILL it right there.

Test-only, and inert unless BOTH environment variables are set:

- `DUCKHERD_TEST_PAUSE_AT=<point>` names one point of `POINTS`;
- `DUCKHERD_TEST_PAUSE_DIR=<dir>` names an existing directory.

On reaching that point the process writes `<dir>/<point>.paused` (its pid) and blocks until
`<dir>/<point>.release` exists (then it carries on) or `DUCKHERD_TEST_PAUSE_SECONDS` (default
600) pass. A fault test waits for the marker and then SIGKILLs the process, restarts a
server under it, or fills its disk, and releases it or not. Nothing in Duckherd sets these
variables: the operator never puts them into a stage pod (only `spec.pod.env` could, and the
e2e fault tests do exactly that), so in production every point costs one dictionary lookup.
An unknown point name is refused, so a typo cannot make a test pass without pausing.
See docs/faults.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("duckherd.jobs.faults")

ENV_PAUSE_AT = "DUCKHERD_TEST_PAUSE_AT"
ENV_PAUSE_DIR = "DUCKHERD_TEST_PAUSE_DIR"
ENV_PAUSE_SECONDS = "DUCKHERD_TEST_PAUSE_SECONDS"
DEFAULT_PAUSE_SECONDS = 600.0

POINTS: dict[str, str] = {
    # ingest: fetching (nothing of the run is in the warehouse yet)
    "ingest.http.page-spooled": "an HTTP source's first page is in the spool, more pages follow",
    "ingest.file.downloading": "a file source's first chunk is in the spool, the rest is not",
    "ingest.postgres.copied": "a PostgreSQL source's COPY is in the spool, not loaded yet",
    # ingest: loading (one transaction for every table and cursor)
    "ingest.load.begun": "the load transaction is open, no table written yet",
    "ingest.load.table-written": "the first source's table is written, its cursor not yet",
    "ingest.load.cursor-saved": "a source's cursor is saved, no COMMIT yet",
    "ingest.load.committed": "tables and cursors committed, the run not yet recorded",
    # transform (dbt builds a copy of the warehouse; the copy replaces it on success)
    "transform.copied": "the warehouse is copied for the build, dbt not started",
    "transform.model-built": "dbt built its first model, the others are not built",
    "transform.built": "dbt finished on the copy, the copy not yet swapped in",
    "transform.swapped": "the built copy replaced the warehouse, the run not yet recorded",
    # check
    "check.evaluated": "the checks ran, their results not yet recorded",
    # publish (each target swaps its new version in atomically)
    "publish.redis.staged": "the new rows are in Redis's staging hash, not swapped in",
    "publish.postgres.copied": "the new rows are COPYed into the staging table, no rename yet",
    "publish.postgres.swapped": "the staging table is renamed into place, no COMMIT yet",
    "publish.target-done": "the first target is published, the next not started",
}


class UnknownPausePoint(ValueError):
    """DUCKHERD_TEST_PAUSE_AT names no point of POINTS."""


def armed(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether a fault test asks this process to pause at `name`."""
    environ = os.environ if env is None else env
    wanted = environ.get(ENV_PAUSE_AT)
    if not wanted:
        return False
    if wanted not in POINTS:
        raise UnknownPausePoint(f"{ENV_PAUSE_AT}={wanted!r} is no pause point")
    directory = environ.get(ENV_PAUSE_DIR)
    return wanted == name and bool(directory) and Path(str(directory)).is_dir()


def pause_point(name: str, env: Mapping[str, str] | None = None) -> None:
    """Block here while a fault test asks for it (see the module docstring); else nothing."""
    environ = os.environ if env is None else env
    if not armed(name, environ):
        return
    directory = environ[ENV_PAUSE_DIR]
    marker, release = Path(directory) / f"{name}.paused", Path(directory) / f"{name}.release"
    seconds = float(environ.get(ENV_PAUSE_SECONDS) or DEFAULT_PAUSE_SECONDS)
    log.warning("test pause point %s reached: waiting up to %.0fs for %s", name, seconds, release)
    staging = marker.with_suffix(".tmp")
    staging.write_text(str(os.getpid()))
    os.replace(staging, marker)  # the test never reads a half-written pid
    deadline = time.monotonic() + seconds
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
