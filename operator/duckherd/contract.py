"""The operator <-> stage-pod contract: every path, environment name, label and annotation.

The operator writes these into the Jobs it builds (`duckherd_operator.builders`); the stage
pod reads them (`duckherd_cli`, `duckherd_jobs`). Both sides import them from here, so a
rename cannot leave one side behind. What the pod reports back is `duckherd.summary`.
See docs/contract.md.
"""

from __future__ import annotations

from typing import Final

# --- Files and mounts in a stage pod -------------------------------------------------------
SPEC_MOUNT: Final = "/etc/duckherd"
"""The pipeline's spec ConfigMap (`<pipeline>-spec`) is mounted here."""
SPEC_FILE: Final = "pipeline.yaml"
"""The key of the spec ConfigMap: a DataPipeline manifest, the format `duckherd run` takes."""
SPEC_PATH: Final = f"{SPEC_MOUNT}/{SPEC_FILE}"

WAREHOUSE_MOUNT: Final = "/warehouse"
"""The warehouse PersistentVolumeClaim is mounted here."""
WAREHOUSE_FILE: Final = "warehouse.duckdb"
WAREHOUSE_PATH: Final = f"{WAREHOUSE_MOUNT}/{WAREHOUSE_FILE}"

BACKUP_MOUNT: Final = "/backups"
"""A `spec.backup.volume` claim is mounted here in the backup and restore pods."""

DBT_CONFIGMAP_MOUNT: Final = f"{SPEC_MOUNT}/dbt-project"
"""`spec.transform.dbt.project.configMap` is mounted here in the transform pod (flat keys)."""

TERMINATION_LOG: Final = "/dev/termination-log"
"""The stage pod writes its `duckherd.summary.StageSummary` JSON here; the operator reads it."""

# --- The warehouse layout -----------------------------------------------------------------
# dbt models build into the schema they name (dbt/macros/generate_schema_name.sql).
RAW_SCHEMA: Final = "raw"
"""Ingest writes `raw.<source>`."""
MARTS_SCHEMA: Final = "marts"
"""The pipeline's final models; a table named without a schema (checks, publish) is here."""

# --- Tasks beside the stages ----------------------------------------------------------------
TASKS: Final = ("backup", "restore")
"""Jobs that are not stages of a run: `duckherd job backup|restore`, label duckherd.io/stage."""

# --- Environment of a stage pod ------------------------------------------------------------
ENV_SPEC: Final = "DUCKHERD_SPEC"
"""Path of the manifest (default SPEC_PATH)."""
ENV_WAREHOUSE: Final = "DUCKHERD_WAREHOUSE"
"""Path of the DuckDB warehouse file (default WAREHOUSE_PATH)."""
ENV_TERMINATION_LOG: Final = "DUCKHERD_TERMINATION_LOG"
"""Where the summary goes (default TERMINATION_LOG)."""
ENV_RUN_ID: Final = "DUCKHERD_RUN_ID"
"""The run id shared by a run's stage Jobs (from the LABEL_RUN_ID label of the pod)."""
ENV_JOB_NAME: Final = "DUCKHERD_JOB_NAME"
"""The Job's name (from LABEL_JOB_NAME): the run id of a run its CronJob started."""
ENV_SECRET_PREFIX: Final = "DUCKHERD_SECRET_"
"""`DUCKHERD_SECRET_<NAME>_<KEY>`: a Secret key the manifest references (`SecretRef.env_name`)."""
ENV_SOURCE_URL_PREFIX: Final = "DUCKHERD_SOURCE_URL_"
"""`DUCKHERD_SOURCE_URL_<SOURCE>` replaces the URL of an http/file source."""
ENV_DBT_PROJECT: Final = "DUCKHERD_DBT_PROJECT"
"""The dbt project baked into the image (the Dockerfile sets it)."""
ENV_DBT_CONFIGMAP_DIR: Final = "DUCKHERD_DBT_CONFIGMAP_DIR"
"""Overrides DBT_CONFIGMAP_MOUNT (tests and local runs)."""
ENV_DBT_LOG_LEVEL: Final = "DUCKHERD_DBT_LOG_LEVEL"
"""dbt's log level in the transform stage."""
ENV_BACKUP_DIR: Final = "DUCKHERD_BACKUP_DIR"
"""Where a `spec.backup.volume` is (default BACKUP_MOUNT)."""
ENV_BACKUP_ID: Final = "DUCKHERD_BACKUP_ID"
"""The backup a restore pod brings back (from the duckherd.io/restore annotation)."""
ENV_INGEST_MEMORY_LIMIT: Final = "DUCKHERD_INGEST_MEMORY_LIMIT"
"""DuckDB's memory_limit during ingest."""

# --- Environment of the operator (set by the chart) ----------------------------------------
ENV_IMAGE: Final = "DUCKHERD_IMAGE"
"""The image stage pods run (default `duckherd:<version>`)."""
ENV_IMAGE_PULL_POLICY: Final = "DUCKHERD_IMAGE_PULL_POLICY"
ENV_STAGE_RESOURCES: Final = "DUCKHERD_STAGE_RESOURCES"
"""Stage pods' default compute resources, as JSON `{"requests": {...}, "limits": {...}}`
(chart value `stagePods.resources`); `spec.pod.resources` replaces them per pipeline."""
ENV_LINEAGE_URL: Final = "DUCKHERD_LINEAGE_URL"
"""The chart's `lineage.url`: the OpenLineage receiver stage pods default to (empty: none)."""
ENV_LINEAGE_ENDPOINT: Final = "DUCKHERD_LINEAGE_ENDPOINT"
ENV_LINEAGE_NAMESPACE: Final = "DUCKHERD_LINEAGE_NAMESPACE"
ENV_LINEAGE_TIMEOUT: Final = "DUCKHERD_LINEAGE_TIMEOUT"
"""Also what a stage pod reads: seconds each lineage emit may take."""
ENV_LINEAGE_API_KEY_SECRET: Final = "DUCKHERD_LINEAGE_API_KEY_SECRET"
"""`<secret name>/<key>`: a Secret in each pipeline's namespace holding the receiver's API key."""

# --- OpenLineage's own environment of a stage pod (the client's conventions) ----------------
ENV_OPENLINEAGE_URL: Final = "OPENLINEAGE_URL"
ENV_OPENLINEAGE_ENDPOINT: Final = "OPENLINEAGE_ENDPOINT"
ENV_OPENLINEAGE_API_KEY: Final = "OPENLINEAGE_API_KEY"
ENV_OPENLINEAGE_NAMESPACE: Final = "OPENLINEAGE_NAMESPACE"

# --- Labels and annotations on the objects the operator creates ----------------------------
LABEL_PIPELINE: Final = "duckherd.io/pipeline"
LABEL_STAGE: Final = "duckherd.io/stage"
LABEL_RUN_ID: Final = "duckherd.io/run-id"
"""Groups the stage Jobs of one run; `kubectl get jobs -l duckherd.io/run-id=<id>`."""
LABEL_TRIGGER: Final = "duckherd.io/trigger"
"""What started the run: Schedule or Manual (status.lastRun.trigger)."""
LABEL_JOB_NAME: Final = "job-name"
"""Set by Kubernetes on a Job's pods."""
ANNOTATION_RUN_NOW: Final = "duckherd.io/run-now"
"""On a DataPipeline: a new value starts a run."""
ANNOTATION_RESTORE: Final = "duckherd.io/restore"
"""On a DataPipeline: restore this backup id (a one-off Job; the operator removes it after)."""
ANNOTATION_BACKUP_ID: Final = "duckherd.io/backup-id"
"""On a restore Job: the backup it restores."""
ANNOTATION_GENERATION: Final = "duckherd.io/generation"
"""On a stage Job: the DataPipeline generation it was built from."""
