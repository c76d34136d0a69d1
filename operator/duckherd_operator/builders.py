"""Pure builders: a DataPipeline in, the child manifests it should have out.

Nothing here talks to the API server; the handlers apply what these return with
server-side apply, so running them twice changes nothing.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from duckherd.api import (
    API_VERSION,
    KIND,
    DataPipelineSpec,
    Stage,
    iter_secret_refs,
)
from duckherd.contract import (
    ANNOTATION_BACKUP_ID,
    ANNOTATION_GENERATION,
    BACKUP_MOUNT,
    DBT_CONFIGMAP_MOUNT,
    ENV_BACKUP_DIR,
    ENV_BACKUP_ID,
    ENV_JOB_NAME,
    ENV_LINEAGE_TIMEOUT,
    ENV_OPENLINEAGE_API_KEY,
    ENV_OPENLINEAGE_ENDPOINT,
    ENV_OPENLINEAGE_NAMESPACE,
    ENV_OPENLINEAGE_URL,
    ENV_RUN_ID,
    ENV_SPEC,
    ENV_WAREHOUSE,
    LABEL_JOB_NAME,
    LABEL_PIPELINE,
    LABEL_RUN_ID,
    LABEL_STAGE,
    LABEL_TRIGGER,
    SPEC_FILE,
    SPEC_MOUNT,
    SPEC_PATH,
    TASKS,
    TERMINATION_LOG,
    WAREHOUSE_MOUNT,
    WAREHOUSE_PATH,
)

MANAGER = "duckherd"
# A CronJob must have a valid schedule even when only the operator (or a user) starts it.
UNSCHEDULED = "0 0 31 2 *"

# Stage pods' compute resources unless the chart (`stagePods.resources`) or the pipeline
# (`spec.pod.resources`) says otherwise. A stage pod peaks at 150-350 MiB (the check stage,
# which imports Great Expectations, the most) and is CPU-bound for seconds to minutes: the
# requests let the scheduler keep the excess of many simultaneous runs Pending instead of
# overcommitting the node, and the memory limit keeps one runaway stage from taking the node
# (DuckDB sizes its own memory_limit from it). No CPU limit: a stage may use idle cores.
DEFAULT_STAGE_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"memory": "2Gi"},
}


@dataclass(frozen=True)
class LineageDefaults:
    """The chart's `lineage` values: the OpenLineage settings every stage pod gets (as the
    client's own env vars) unless the pipeline's `spec.lineage` turns lineage off."""

    url: str = ""
    endpoint: str = ""
    namespace: str = ""
    timeout_seconds: str = ""
    api_key_secret: str = ""  # `<Secret name>/<key>` in the pipeline's namespace


@dataclass(frozen=True)
class Pipeline:
    """What the builders need to know about a DataPipeline object."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: DataPipelineSpec
    image: str
    image_pull_policy: str = "IfNotPresent"
    # Resources of stage pods without spec.pod.resources (the chart's stagePods.resources).
    default_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_STAGE_RESOURCES)
    )
    lineage: LineageDefaults = LineageDefaults()


def labels(pipeline: Pipeline, stage: str | None = None) -> dict[str, str]:
    result = {
        "app.kubernetes.io/name": "duckherd",
        "app.kubernetes.io/instance": pipeline.name,
        "app.kubernetes.io/managed-by": MANAGER,
        "app.kubernetes.io/part-of": "duckherd",
        LABEL_PIPELINE: pipeline.name,
    }
    if stage is not None:
        result["app.kubernetes.io/component"] = stage
        result[LABEL_STAGE] = stage
    return result


def owner_reference(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": pipeline.name,
        "uid": pipeline.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(pipeline: Pipeline, name: str, stage: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": pipeline.namespace,
        "labels": labels(pipeline, stage),
        "ownerReferences": [owner_reference(pipeline)],
    }


def spec_configmap_name(pipeline_name: str) -> str:
    return f"{pipeline_name}-spec"


def warehouse_claim_name(pipeline: Pipeline) -> str:
    return pipeline.spec.storage.existingClaim or f"{pipeline.name}-warehouse"


def cronjob_name(pipeline_name: str, stage: str) -> str:
    return f"{pipeline_name}-{stage}"


def build_spec_configmap(pipeline: Pipeline) -> dict[str, Any]:
    """The manifest the stage pods read (the same format `duckherd run` takes)."""
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": pipeline.name,
            "namespace": pipeline.namespace,
            "generation": pipeline.generation,
        },
        "spec": pipeline.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(pipeline, spec_configmap_name(pipeline.name)),
        "data": {SPEC_FILE: yaml.safe_dump(manifest, sort_keys=False)},
    }


def build_warehouse_pvc(pipeline: Pipeline) -> dict[str, Any] | None:
    """The warehouse claim; None with `existingClaim`. Retained (no owner) by default."""
    storage = pipeline.spec.storage
    if storage.existingClaim:
        return None
    metadata = _metadata(pipeline, warehouse_claim_name(pipeline))
    if storage.retainOnDelete:
        del metadata["ownerReferences"]
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size or "1Gi"}},
    }
    if storage.storageClassName:
        spec["storageClassName"] = storage.storageClassName
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def _env(pipeline: Pipeline, stage: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": ENV_SPEC, "value": SPEC_PATH},
        {"name": ENV_WAREHOUSE, "value": WAREHOUSE_PATH},
        {
            "name": ENV_RUN_ID,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{LABEL_RUN_ID}']"}},
        },
        {
            "name": ENV_JOB_NAME,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{LABEL_JOB_NAME}']"}},
        },
    ]
    for ref in iter_secret_refs(pipeline.spec, stage):
        env.append(
            {
                "name": ref.env_name,
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    env += _lineage_env(pipeline)
    if stage in TASKS:
        env.append({"name": ENV_BACKUP_DIR, "value": BACKUP_MOUNT})
    for extra in pipeline.spec.pod.env:
        env.append(extra.model_dump(mode="json", exclude_none=True))
    return env


def _lineage_env(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The operator's OpenLineage defaults; `spec.lineage.url` and its key the stage reads
    from the manifest itself (its Secret reference is mapped like every other)."""
    defaults, settings = pipeline.lineage, pipeline.spec.lineage
    if settings is not None and settings.enabled is False:
        return []
    env: list[dict[str, Any]] = []
    if defaults.url:
        env.append({"name": ENV_OPENLINEAGE_URL, "value": defaults.url})
        if defaults.endpoint:
            env.append({"name": ENV_OPENLINEAGE_ENDPOINT, "value": defaults.endpoint})
        name, _, key = defaults.api_key_secret.partition("/")
        if name and key:
            # Optional: a namespace without the Secret still runs, its receiver may refuse.
            ref = {"name": name, "key": key, "optional": True}
            env.append({"name": ENV_OPENLINEAGE_API_KEY, "valueFrom": {"secretKeyRef": ref}})
    if defaults.namespace:
        env.append({"name": ENV_OPENLINEAGE_NAMESPACE, "value": defaults.namespace})
    if defaults.timeout_seconds:
        env.append({"name": ENV_LINEAGE_TIMEOUT, "value": defaults.timeout_seconds})
    return env


def _restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_pod_spec(pipeline: Pipeline, stage: str) -> dict[str, Any]:
    """The pod of a stage, or of the backup or restore task."""
    spec = pipeline.spec
    pod = spec.pod
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": spec_configmap_name(pipeline.name)}},
        {
            "name": "warehouse",
            "persistentVolumeClaim": {"claimName": warehouse_claim_name(pipeline)},
        },
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
        {"name": "warehouse", "mountPath": WAREHOUSE_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    dbt = spec.transform.dbt if spec.transform else None
    if stage == "transform" and dbt is not None and dbt.project.configMap:
        volumes.append({"name": "dbt-project", "configMap": {"name": dbt.project.configMap}})
        mounts.append({"name": "dbt-project", "mountPath": DBT_CONFIGMAP_MOUNT, "readOnly": True})
    backup_claim = backup_claim_name(pipeline)
    if stage in TASKS and backup_claim is not None:
        volumes.append({"name": "backups", "persistentVolumeClaim": {"claimName": backup_claim}})
        mounts.append({"name": "backups", "mountPath": BACKUP_MOUNT})
    container: dict[str, Any] = {
        "name": stage,
        "image": pod.image or pipeline.image,
        "imagePullPolicy": pod.imagePullPolicy or pipeline.image_pull_policy,
        "args": ["job", stage],
        "env": _env(pipeline, stage),
        "volumeMounts": mounts,
        "securityContext": _restricted_container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if pod.resources is not None:  # replaces the defaults as a whole
        container["resources"] = pod.resources.model_dump(mode="json", exclude_defaults=True)
    elif pipeline.default_resources:
        container["resources"] = copy.deepcopy(pipeline.default_resources)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if pod.serviceAccountName:
        pod_spec["serviceAccountName"] = pod.serviceAccountName
    if pod.nodeSelector:
        pod_spec["nodeSelector"] = dict(pod.nodeSelector)
    if pod.tolerations:
        pod_spec["tolerations"] = list(pod.tolerations)
    return pod_spec


def build_job_spec(pipeline: Pipeline, stage: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": pipeline.spec.backoffLimit,
        "template": {
            "metadata": {"labels": labels(pipeline, stage)},
            "spec": build_pod_spec(pipeline, stage),
        },
    }
    if pipeline.spec.activeDeadlineSeconds is not None:
        spec["activeDeadlineSeconds"] = pipeline.spec.activeDeadlineSeconds
    return spec


def stage_schedule(pipeline: Pipeline, stage: str) -> tuple[str, bool]:
    """(schedule, suspended): ingest runs on spec.schedule; others only when chained,
    unless the transform has its own schedule; backups on spec.backup.schedule."""
    spec = pipeline.spec
    if stage == "backup" and spec.backup is not None:
        return spec.backup.schedule, spec.suspend
    if stage == "ingest":
        return spec.schedule, spec.suspend
    if stage == "transform" and spec.transform and spec.transform.dbt.schedule:
        return spec.transform.dbt.schedule, spec.suspend
    return UNSCHEDULED, True


def build_cronjob(pipeline: Pipeline, stage: str) -> dict[str, Any]:
    schedule, suspended = stage_schedule(pipeline, stage)
    spec: dict[str, Any] = {
        "schedule": schedule,
        "suspend": suspended,
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": pipeline.spec.successfulJobsHistoryLimit,
        "failedJobsHistoryLimit": pipeline.spec.failedJobsHistoryLimit,
        "jobTemplate": {
            "metadata": {"labels": labels(pipeline, stage)},
            "spec": build_job_spec(pipeline, stage),
        },
    }
    if pipeline.spec.timeZone:
        spec["timeZone"] = pipeline.spec.timeZone
    if pipeline.spec.startingDeadlineSeconds is not None:
        spec["startingDeadlineSeconds"] = pipeline.spec.startingDeadlineSeconds
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(pipeline, cronjob_name(pipeline.name, stage), stage),
        "spec": spec,
    }


def build_children(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every child the pipeline should have, in apply order."""
    children = [build_spec_configmap(pipeline)]
    pvc = build_warehouse_pvc(pipeline)
    if pvc is not None:
        children.append(pvc)
    children.extend(build_cronjob(pipeline, stage) for stage in pipeline.spec.stages())
    if pipeline.spec.backup is not None:
        backups = build_backup_pvc(pipeline)
        if backups is not None:
            children.append(backups)
        children.append(build_cronjob(pipeline, "backup"))
    return children


def backup_claim_name(pipeline: Pipeline) -> str | None:
    """The backup volume's claim; None without spec.backup.volume (a bucket, or no backup)."""
    backup = pipeline.spec.backup
    if backup is None or backup.volume is None:
        return None
    return backup.volume.existingClaim or f"{pipeline.name}-backups"


def build_backup_pvc(pipeline: Pipeline) -> dict[str, Any] | None:
    """The `<name>-backups` claim; never owned by the pipeline: backups outlive it."""
    backup = pipeline.spec.backup
    if backup is None or backup.volume is None or backup.volume.existingClaim:
        return None
    metadata = _metadata(pipeline, f"{pipeline.name}-backups", "backup")
    del metadata["ownerReferences"]
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": backup.volume.size or "1Gi"}},
    }
    if backup.volume.storageClassName:
        spec["storageClassName"] = backup.volume.storageClassName
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def restore_job_name(pipeline_name: str, value: str) -> str:
    """Deterministic per annotation value: a retried handler finds the Job it made."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{pipeline_name}-restore-{digest}"


def build_restore_job(pipeline: Pipeline, backup_id: str, *, name: str) -> dict[str, Any]:
    """The one-off Job that restores `backup_id` (owned by the pipeline; no retries: a failed
    restore leaves the warehouse as it was and says why)."""
    job_labels = labels(pipeline, "restore")
    job_spec = build_job_spec(pipeline, "restore")
    job_spec["backoffLimit"] = 0
    container = job_spec["template"]["spec"]["containers"][0]
    container["env"].append({"name": ENV_BACKUP_ID, "value": backup_id})
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": pipeline.namespace,
        "labels": job_labels,
        "annotations": {
            ANNOTATION_BACKUP_ID: backup_id,
            ANNOTATION_GENERATION: str(pipeline.generation),
        },
        "ownerReferences": [owner_reference(pipeline)],
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def chained_job_name(pipeline_name: str, stage: str, run_id: str) -> str:
    """Deterministic, so a retried chain step finds the Job it already created."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{pipeline_name}-{stage}-{digest}"


def run_now_job_name(pipeline_name: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{pipeline_name}-ingest-m{digest}"


def build_stage_job(
    pipeline: Pipeline,
    stage: Stage,
    *,
    name: str,
    run_id: str,
    trigger: str,
    cronjob_uid: str | None,
) -> dict[str, Any]:
    """A Job for one stage of a run, owned by the stage's CronJob like `create job --from`.

    Owning it by the CronJob lets the CronJob's history limits clean it up and its
    `concurrencyPolicy: Forbid` see it; deleting the pipeline still cascades through the CronJob.
    """
    job_labels = {**labels(pipeline, stage), LABEL_RUN_ID: run_id, LABEL_TRIGGER: trigger}
    job_spec = build_job_spec(pipeline, stage)
    job_spec["template"]["metadata"]["labels"] = dict(job_labels)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": pipeline.namespace,
        "labels": job_labels,
        "annotations": {ANNOTATION_GENERATION: str(pipeline.generation)},
    }
    if cronjob_uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": cronjob_name(pipeline.name, stage),
                "uid": cronjob_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    else:
        metadata["ownerReferences"] = [owner_reference(pipeline)]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
