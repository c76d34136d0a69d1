"""Backup and restore on the real cluster: back up through the backup CronJob, delete the
warehouse volume, restore with the duckherd.io/restore annotation, run again against a source
that moved on. (The table-by-table equality with a never-interrupted pipeline is proven at job
level, tests/jobs/test_backup.py; this proves the operator's part: Jobs, volumes, status,
Events, the annotation consumed, the chain going on from the restored cursors.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, kubectl, wait_until
from tests.e2e.operator_support import (
    REACTION_TIMEOUT,
    RUN_TIMEOUT,
    Operator,
    apply_manifest,
    events_for,
    exists,
    get_pipeline,
    query_warehouse,
    run_now,
    wait_run_finished,
)
from tests.jobs.backup_support import AS_OF, SELECT, customer, moved_on
from tests.jobs.ingest_support import FakeApi
from tests.pipelines import customers_source, manifest

pytestmark = pytest.mark.e2e

NAME = "shop"
CLAIM = f"{NAME}-warehouse"
FIRST = [customer(number, day=1) for number in range(1, 201)]


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[FakeApi]:
    with FakeApi(FIRST, host=cluster.need_host_ip()) as served:
        yield served


def shop(url: str) -> dict[str, Any]:
    return manifest(
        NAME,
        sources=[customers_source(url)],
        transform={"dbt": {"vars": AS_OF, "select": SELECT}},
        backup={"schedule": "0 0 1 1 *", "keep": 3, "volume": {"size": "256Mi"}},
    )


def status(namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = get_pipeline(namespace, NAME).get("status") or {}
    return found


def test_backup_delete_the_volume_restore_by_annotation_and_run_on(
    operator: Operator, api: FakeApi, pipeline_namespace: str
) -> None:
    ns = pipeline_namespace
    apply_manifest(shop(api.url), ns)
    wait_until(
        "the backup CronJob and volume",
        lambda: exists("cronjob", f"{NAME}-backup", ns) and exists("pvc", f"{NAME}-backups", ns),
        timeout=REACTION_TIMEOUT,
    )
    first = wait_run_finished(ns, NAME, run_now(ns, NAME))
    assert first["status"]["lastRun"]["result"] == "Succeeded", first["status"]["lastRun"]

    kubectl("create", "job", "--from", f"cronjob/{NAME}-backup", f"{NAME}-backup-now", "-n", ns)
    backups = wait_until(
        "status.backups after the backup Job",
        lambda: (
            (b := status(ns).get("backups"))
            and b.get("lastResult") in ("Succeeded", "Failed")
            and b
        ),
        timeout=RUN_TIMEOUT,
        interval=2,
    )
    assert backups["lastResult"] == "Succeeded", backups
    newest = backups["items"][0]
    assert newest["runId"] == first["status"]["lastRun"]["id"] and newest["sizeBytes"] > 0

    # The warehouse volume is lost; the operator makes a new, empty one.
    old_uid = kubectl("get", "pvc", CLAIM, "-n", ns, "-o", "jsonpath={.metadata.uid}")
    kubectl("delete", "pvc", CLAIM, "-n", ns, "--wait=false")
    # PVC protection holds the claim while pods that mounted it exist, finished ones too.
    selector = f"duckherd.io/pipeline={NAME}"
    kubectl("delete", "pods", "-n", ns, "-l", selector, "--wait=true", "--timeout=180s")
    wait_until(
        "a new warehouse volume",
        lambda: (
            kubectl("get", "pvc", CLAIM, "-n", ns, "-o", "jsonpath={.metadata.uid}", check=False)
            not in ("", old_uid)
        ),
        timeout=REACTION_TIMEOUT,
        interval=2,
    )
    api.state.records = moved_on(FIRST, updated=15, added=25, day=2)

    kubectl("annotate", "dp", NAME, "-n", ns, f"duckherd.io/restore={newest['id']}")
    restored = wait_until(
        "status.restore to finish",
        lambda: (
            (r := status(ns).get("restore")) and r.get("result") in ("Succeeded", "Failed") and r
        ),
        timeout=RUN_TIMEOUT,
        interval=2,
    )
    assert restored["result"] == "Succeeded", restored
    assert restored["backupId"] == newest["id"] and restored["runId"] == newest["runId"]
    annotations = get_pipeline(ns, NAME)["metadata"].get("annotations") or {}
    assert "duckherd.io/restore" not in annotations, "the request is consumed"
    reasons = [event["reason"] for event in events_for(ns, NAME)]
    assert {"BackupSucceeded", "RestoreStarted", "RestoreSucceeded"} <= set(reasons)

    second = wait_run_finished(ns, NAME, run_now(ns, NAME))
    last = second["status"]["lastRun"]
    assert last["result"] == "Succeeded", last
    ingest = next(stage for stage in last["stages"] if stage["stage"] == "ingest")
    assert ingest["rows"] == 40, "only what changed since the backup's cursor is loaded"
    rows = query_warehouse(
        ns,
        CLAIM,
        operator.image,
        "SELECT (SELECT count(*) FROM raw.customers), "
        "(SELECT count(*) FROM marts.customer_analytics), "
        "(SELECT sum(total_revenue) FROM raw.customers), "
        "(SELECT cursor_value FROM _duckherd.state WHERE source = 'customers')",
    )
    expected_revenue = round(sum(r["total_revenue"] for r in api.state.records), 2)
    assert rows[0][0] == 225 and rows[0][1] == 225
    assert round(float(rows[0][2]), 2) == expected_revenue
    assert rows[0][3] == "2026-01-02T03:45:00.000000Z"
