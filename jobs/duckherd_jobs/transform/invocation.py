"""dbt, invoked in-process: a generated profile, a pre-parsed manifest when one fits.

The warehouse is ATTACHed under the fixed catalog name `warehouse` (the main database is
in-memory) so that compiled relation names do not depend on the file's name: a manifest parsed
once at image build time then fits every pipeline's warehouse, and pods never parse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import yaml

from duckherd_jobs.fault_points import armed, pause_point
from duckherd_jobs.transform.project import project_files
from duckherd_jobs.transform.schemas import install_json_schemas, recording_json_schemas

log = logging.getLogger("duckherd.jobs.transform")

PROFILE = "duckherd"
TARGET = "warehouse"
CATALOG = "warehouse"
TARGET_SCHEMA = "main"
# Bump when the profile's shape changes: prepared manifests depend on it (database, schema).
PROFILE_SHAPE = 1
PREPARED_DIR = "target"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
MODEL_BUILT_POINT = "transform.model-built"
FINGERPRINT_FILE = "duckherd-prepared.json"
_LOCK_ERRORS = ("Could not set lock", "Conflicting lock")
_CACHED_MANIFESTS_KEPT = 4
# prepared: parsed at image build; cached: parsed by an earlier run; parsed: by this run.
ManifestSource = Literal["prepared", "cached", "parsed"]


@dataclass(frozen=True)
class DbtInvocation:
    """One `dbt build` against the warehouse."""

    project: Path
    warehouse: Path
    workdir: Path
    select: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    vars: Mapping[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    threads: int = 1
    command: str = "build"
    log_level: str = "info"  # dbt's stdout log: one line per node at info
    # Where manifests parsed at run time are kept for the next run (beside the warehouse).
    manifest_cache: Path | None = None


@dataclass(frozen=True)
class DbtNodeResult:
    """What dbt reported for one node."""

    unique_id: str
    resource_type: str
    name: str
    relation: str  # schema.alias
    materialized: str
    status: str
    message: str
    # Tests only: failing rows, the configured severity (ERROR/WARN), the tested node.
    failures: int | None = None
    severity: str = ""
    attached_node: str = ""
    # The unique ids of the nodes and sources it reads (dbt's depends_on), and when dbt ran it.
    depends_on: tuple[str, ...] = ()
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class DbtOutcome:
    success: bool
    nodes: list[DbtNodeResult]
    error: str | None
    manifest: ManifestSource
    # unique id -> `schema.name` of every node and source the nodes depend on (the manifest's).
    relations: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- profile


def write_profile(directory: Path, warehouse: Path, threads: int) -> Path:
    """profiles.yml for the warehouse; returns its directory."""
    directory.mkdir(parents=True, exist_ok=True)
    spill = directory / "duckdb-spill"
    profile = {
        PROFILE: {
            "target": TARGET,
            "outputs": {
                TARGET: {
                    "type": "duckdb",
                    "path": ":memory:",
                    "database": CATALOG,
                    "schema": TARGET_SCHEMA,
                    "threads": threads,
                    "attach": [{"path": str(warehouse.resolve()), "alias": CATALOG}],
                    # Naive timestamps read as UTC whatever the host's zone; spill to the temp
                    # dir (the in-memory main database would spill into the cwd; pods may
                    # only write /tmp).
                    "settings": {"TimeZone": "UTC", "temp_directory": str(spill)},
                }
            },
        }
    }
    (directory / "profiles.yml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


# --------------------------------------------------------------------------- prepared manifest


def project_fingerprint(project: Path) -> str:
    """Identifies a project's sources, its location and the dbt that parsed it."""
    digest = hashlib.sha256()
    for part in (
        version("dbt-core"),
        version("dbt-duckdb"),
        str(PROFILE_SHAPE),
        str(project.resolve()),
    ):
        digest.update(part.encode() + b"\0")
    for relative in project_files(project):
        digest.update(str(relative).encode() + b"\0")
        digest.update(hashlib.sha256((project / relative).read_bytes()).digest())
    return digest.hexdigest()


def prepare_project(path: Path) -> Path:
    """Parse a project once (image build time) so that stage pods never parse it.

    Writes `<path>/target/partial_parse.msgpack` and, in `duckherd-prepared.json`, a
    fingerprint of the sources and dbt's start-up JSON schemas; a run uses them only while the
    fingerprint matches and the pipeline sets no dbt vars.
    """
    project = path.resolve()
    target = project / PREPARED_DIR
    with tempfile.TemporaryDirectory(prefix="duckherd-dbt-") as directory:
        scratch = Path(directory)
        profiles = write_profile(scratch / "profile", scratch / "parse.duckdb", threads=1)
        args = [
            "parse",
            *_common_args(project, profiles, target, scratch / "logs"),
        ]
        with recording_json_schemas() as schemas:
            result = _runner(None).invoke(args)
        if not result.success:
            raise RuntimeError(f"dbt parse of {project} failed: {result.exception}")
    prepared = {"fingerprint": project_fingerprint(project), "jsonSchemas": schemas}
    (target / FINGERPRINT_FILE).write_text(json.dumps(prepared) + "\n")
    return target / PARTIAL_PARSE_FILE


def load_prepared_manifest(project: Path, cli_vars: Mapping[str, Any]) -> Any | None:
    """The manifest prepared at image build, if made from exactly these sources; else None."""
    prepared = project / PREPARED_DIR
    fingerprint_file = prepared / FINGERPRINT_FILE
    if cli_vars or not fingerprint_file.is_file():
        return None
    try:
        recorded = json.loads(fingerprint_file.read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("fingerprint") != project_fingerprint(project):
        log.info("dbt project %s changed since it was prepared: not using its manifest", project)
        return None
    return _load_manifest(prepared / PARTIAL_PARSE_FILE, recorded.get("jsonSchemas") or {})


def _load_manifest(path: Path, schemas: Mapping[str, Any]) -> Any | None:
    if not path.is_file():
        return None
    install_json_schemas(schemas)
    from dbt.contracts.graph.manifest import Manifest
    from dbt.parser.manifest import extended_mashumuro_decoder

    try:
        manifest: Any = Manifest.from_msgpack(path.read_bytes(), decoder=extended_mashumuro_decoder)
    except Exception as error:  # a damaged file only costs a parse
        log.warning("cannot read the dbt manifest %s (%s): parsing the project", path, error)
        return None
    manifest.build_flat_graph()  # as dbt does after loading a partial-parse manifest
    return manifest


def cache_key(project: Path, cli_vars: Mapping[str, Any]) -> str:
    """Vars are part of the key: dbt resolves some of them while parsing."""
    digest = hashlib.sha256(project_fingerprint(project).encode())
    digest.update(json.dumps(cli_vars, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def load_cached_manifest(cache: Path, key: str) -> Any | None:
    """A manifest an earlier run parsed from the same sources and vars."""
    schemas_file = cache / f"{key}.json"
    try:
        schemas = json.loads(schemas_file.read_text()) if schemas_file.is_file() else {}
    except (OSError, ValueError):
        schemas = {}
    return _load_manifest(cache / f"{key}.msgpack", schemas)


def store_cached_manifest(
    cache: Path, key: str, partial_parse: Path, schemas: Mapping[str, Any]
) -> None:
    """Keep this run's parse for the next runs (atomically; the newest few only)."""
    if not partial_parse.is_file():
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for suffix, data in (
            (".json", json.dumps(dict(schemas)).encode()),
            (".msgpack", partial_parse.read_bytes()),
        ):
            staging = cache / f".{key}{suffix}.{os.getpid()}"
            staging.write_bytes(data)
            os.replace(staging, cache / f"{key}{suffix}")
        stale = sorted(cache.glob("*.msgpack"), key=lambda p: p.stat().st_mtime)
        for old in stale[:-_CACHED_MANIFESTS_KEPT]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    except OSError as error:  # the cache only saves time
        log.warning("cannot keep the parsed dbt manifest in %s: %s", cache, error)


# --------------------------------------------------------------------------- invocation


def _common_args(project: Path, profiles: Path, target: Path, logs: Path) -> list[str]:
    return [
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(profiles),
        "--profile",
        PROFILE,
        "--target",
        TARGET,
        # The project may sit on a read-only filesystem (the image, a ConfigMap).
        "--target-path",
        str(target),
        "--log-path",
        str(logs),
        "--log-level-file",
        "none",
        "--no-send-anonymous-usage-stats",
        "--no-use-colors",
    ]


def build_args(invocation: DbtInvocation, profiles: Path) -> list[str]:
    args = [
        invocation.command,
        *_common_args(
            invocation.project,
            profiles,
            invocation.workdir / "target",
            invocation.workdir / "logs",
        ),
        "--log-level",
        invocation.log_level,
        # Results come back in-process; artifacts on disk would only cost time.
        "--no-write-json",
        # The build gets its manifest in hand (prepared, cached or parsed just before).
        "--no-partial-parse",
    ]
    for selector in invocation.select:
        args += ["--select", selector]
    for selector in invocation.exclude:
        args += ["--exclude", selector]
    if invocation.vars:
        args += ["--vars", json.dumps(dict(invocation.vars))]
    if invocation.full_refresh:
        args.append("--full-refresh")
    return args


def run_dbt(invocation: DbtInvocation, *, lock_timeout_seconds: float) -> DbtOutcome:
    """Run dbt; waits (bounded) if another process grabbed the warehouse lock meanwhile."""
    profiles = write_profile(
        invocation.workdir / "profile", invocation.warehouse, invocation.threads
    )
    deadline = time.monotonic() + lock_timeout_seconds
    delay = 0.1
    while True:
        outcome = _run_with_best_manifest(invocation, profiles)
        if not _lost_lock_race(outcome) or time.monotonic() >= deadline:
            return outcome
        log.info("warehouse %s is locked by another process: waiting", invocation.warehouse)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _run_with_best_manifest(invocation: DbtInvocation, profiles: Path) -> DbtOutcome:
    """The image's prepared manifest, else one an earlier run cached, else parse (and cache)."""
    manifest = load_prepared_manifest(invocation.project, invocation.vars)
    if manifest is not None:
        return _invoke_once(build_args(invocation, profiles), manifest, "prepared")
    cache = invocation.manifest_cache
    key = cache_key(invocation.project, invocation.vars)
    manifest = None if cache is None else load_cached_manifest(cache, key)
    if manifest is not None:
        return _invoke_once(build_args(invocation, profiles), manifest, "cached")
    with recording_json_schemas() as schemas:
        manifest, error = _parse(invocation, profiles)
    if manifest is None:
        return DbtOutcome(success=False, nodes=[], error=error, manifest="parsed")
    if cache is not None:
        partial_parse = invocation.workdir / "target" / PARTIAL_PARSE_FILE
        store_cached_manifest(cache, key, partial_parse, schemas)
    return _invoke_once(build_args(invocation, profiles), manifest, "parsed")


def _parse(invocation: DbtInvocation, profiles: Path) -> tuple[Any | None, str | None]:
    """`dbt parse` (writing target/partial_parse.msgpack, the cache): the manifest, which the
    build then uses and which names the relations the models read (lineage)."""
    args = [
        "parse",
        *_common_args(
            invocation.project, profiles, invocation.workdir / "target", invocation.workdir / "logs"
        ),
        "--log-level",
        invocation.log_level,
        "--no-write-json",
        "--partial-parse",
    ]
    if invocation.vars:
        args += ["--vars", json.dumps(dict(invocation.vars))]
    try:
        result = _runner(None).invoke(args)
    finally:
        _close_duckdb()
    if not result.success or result.result is None:
        return None, str(result.exception or "dbt parse failed")
    return result.result, None


def _lost_lock_race(outcome: DbtOutcome) -> bool:
    texts = [outcome.error or "", *(node.message for node in outcome.nodes)]
    return not outcome.success and any(marker in t for t in texts for marker in _LOCK_ERRORS)


def _invoke_once(args: list[str], manifest: Any | None, source: ManifestSource) -> DbtOutcome:
    try:
        result = _runner(manifest).invoke(args)
    finally:
        _close_duckdb()
    nodes = [_node_result(item) for item in getattr(result.result, "results", None) or []]
    error = None if result.exception is None else str(result.exception)
    return DbtOutcome(
        success=bool(result.success),
        nodes=nodes,
        error=error,
        manifest=source,
        relations=_relations(manifest, nodes),
    )


def _relations(manifest: Any | None, nodes: list[DbtNodeResult]) -> dict[str, str]:
    """`schema.name` of each node or source the nodes read, as the manifest defines it."""
    if manifest is None:
        return {}
    found: dict[str, str] = {}
    for unique_id in {parent for node in nodes for parent in node.depends_on}:
        parent = manifest.sources.get(unique_id) or manifest.nodes.get(unique_id)
        if parent is None:
            continue
        name = getattr(parent, "identifier", None) or getattr(parent, "alias", None)
        found[unique_id] = f"{parent.schema}.{name or parent.name}"
    return found


def _runner(manifest: Any | None) -> Any:
    from dbt.cli.main import dbtRunner

    callbacks: list[Any] = [_pause_after_first_model] if armed(MODEL_BUILT_POINT) else []
    return dbtRunner(manifest=manifest, callbacks=callbacks)


def _pause_after_first_model(event: Any) -> None:
    """Fault tests only (fault_points.py): stop dbt between its first model and the rest."""
    if event.info.name == "NodeFinished" and event.data.node_info.resource_type == "model":
        pause_point(MODEL_BUILT_POINT)


def _node_result(item: Any) -> DbtNodeResult:
    node = item.node
    config = getattr(node, "config", None)
    return DbtNodeResult(
        unique_id=str(node.unique_id),
        resource_type=str(node.resource_type),
        name=str(node.name),
        relation=f"{getattr(node, 'schema', '')}.{getattr(node, 'alias', node.name)}",
        materialized=str(getattr(config, "materialized", "") or ""),
        status=str(item.status),
        message=str(item.message or ""),
        failures=getattr(item, "failures", None),
        severity=str(getattr(config, "severity", "") or ""),
        attached_node=str(getattr(node, "attached_node", "") or ""),
        depends_on=tuple(str(uid) for uid in getattr(node.depends_on, "nodes", None) or ()),
        started_at=_utc(min((t.started_at for t in _timing(item) if t.started_at), default=None)),
        finished_at=_utc(
            max((t.completed_at for t in _timing(item) if t.completed_at), default=None)
        ),
    )


def _timing(item: Any) -> list[Any]:
    return list(getattr(item, "timing", None) or [])


def _utc(moment: datetime | None) -> datetime | None:
    """dbt's timing is naive UTC."""
    return None if moment is None else moment.replace(tzinfo=UTC)


def _close_duckdb() -> None:
    """Release the warehouse file now: dbt-duckdb keeps its database open in a class attribute
    until interpreter exit, and the runner opens the file right after the stage."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        with DuckDBConnectionManager._LOCK:
            environment = DuckDBConnectionManager._ENV
            DuckDBConnectionManager._ENV = None
            if environment is not None:
                environment.close()
    except (ImportError, AttributeError) as error:  # a dbt-duckdb without these internals
        log.warning("cannot close dbt-duckdb's database explicitly: %s", error)
