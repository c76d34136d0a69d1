"""GitOps tools read a DataPipeline right, on the real API server (docs/status.md).

Every verdict comes from the tools' own code: hack/kstatus runs cli-utils' kstatus (what
Flux's health checks and `wait: true` use) on `kubectl get -o json`; hack/argocd-health runs
the Argo CD health check — the script from the chart README's `argocd-cm` snippet — in
gopher-lua, the VM Argo CD uses. The README's snippets run as written. The module walks one
pipeline (named as in the README) through deploy and data states in order; two more cover
pods that cannot start. Each verdict is printed (`[kstatus]`, `[argocd]`); with
DUCKHERD_ARGOCD_SNAPSHOTS=DIR the pipelines are also saved as health-check inputs (the
fixture's `testdata/e2e/`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from duckherd_jobs.demo_source import DemoSource
from tests.e2e.conftest import Cluster, KubectlError, kubectl, wait_until
from tests.e2e.operator_support import (
    RUN_TIMEOUT,
    Operator,
    apply_manifest,
    condition,
    delete_namespace,
    ensure_restricted_namespace,
    events_for,
    get_pipeline,
    wait_run_finished,
)
from tests.tools import REPO_ROOT, go_tool
from tests.unit.argocd_cases import expected_health, health_input

pytestmark = pytest.mark.e2e

NAME = "customer-analytics"
CUSTOMERS = 200
README = REPO_ROOT / "README.md"
CHART_README = REPO_ROOT / "charts" / "duckherd" / "README.md"
HEALTH_LUA = REPO_ROOT / "charts" / "duckherd" / "argocd" / "health.lua"
ARGOCD_KEY = "resource.customizations.health.duckherd.io_DataPipeline"


# --------------------------------------------------------------------------- the tools


@dataclass(frozen=True)
class Tools:
    kstatus: Path
    argocd_health: Path
    health_script: Path


def _code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL)


def _readme_block(language: str, marker: str) -> str:
    found = [block for block in _code_blocks(README, language) if marker in block]
    assert len(found) == 1, f"README.md: one {language} block with {marker!r}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    """The two Go programs, and the health check as the chart README documents it."""
    documented = [
        yaml.safe_load(block)
        for block in _code_blocks(CHART_README, "yaml")
        if "argocd-cm" in block
    ]
    assert len(documented) == 1, "the chart README documents one argocd-cm"
    script = documented[0]["data"][ARGOCD_KEY]
    assert script == HEALTH_LUA.read_text(), "the documented script is the shipped one"
    path = tmp_path_factory.mktemp("argocd") / "health.lua"
    path.write_text(script)
    return Tools(go_tool("kstatus"), go_tool("argocd-health"), path)


def _run_tool(command: list[str], document: str) -> dict[str, str]:
    done = subprocess.run(
        command, input=document, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    verdict: dict[str, str] = json.loads(done.stdout)
    return verdict


@dataclass(frozen=True)
class Seen:
    pipeline: dict[str, Any]
    kstatus: dict[str, str]
    argocd: dict[str, str]


def look(tools: Tools, namespace: str, name: str = NAME, case: str | None = None) -> Seen:
    """kstatus' and Argo CD's verdict on the live object; the Argo CD one is checked against
    the contract each time. With `case`, both are printed (and the object saved)."""
    document = kubectl("get", "datapipeline", name, "-n", namespace, "-o", "json")
    pipeline = json.loads(document)
    seen = Seen(
        pipeline,
        _run_tool([str(tools.kstatus)], document),
        _run_tool([str(tools.argocd_health), str(tools.health_script)], document),
    )
    assert seen.argocd == {"name": name, **expected_health(pipeline)}, seen.argocd
    if case is not None:
        report(case, seen)
    return seen


def report(case: str, seen: Seen) -> None:
    print(f"[kstatus] {case}: {json.dumps(seen.kstatus)}", flush=True)
    print(f"[argocd] {case}: {json.dumps(seen.argocd)}", flush=True)
    _snapshot(case, seen.pipeline)


def _snapshot(case: str, pipeline: dict[str, Any]) -> None:
    directory = os.environ.get("DUCKHERD_ARGOCD_SNAPSHOTS")
    if directory:
        target = Path(directory) / f"{re.sub(r'[^a-z0-9]+', '-', case.lower()).strip('-')}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(health_input(pipeline), sort_keys=False))


def wait_for(
    tools: Tools,
    namespace: str,
    what: str,
    accept: Callable[[Seen], bool],
    *,
    name: str = NAME,
    timeout: float = 180,
) -> Seen:
    def check() -> Seen | None:
        seen = look(tools, namespace, name)
        return seen if accept(seen) else None

    seen: Seen = wait_until(what, check, timeout=timeout, interval=0.2)
    report(re.sub(r"[^a-z0-9]+", "-", what.lower()), seen)
    return seen


def kstatus_is(status: str) -> Callable[[Seen], bool]:
    return lambda seen: seen.kstatus["status"] == status


def warning_events(namespace: str, name: str, reason: str) -> list[str]:
    return [
        e["message"]
        for e in events_for(namespace, name)
        if e["type"] == "Warning" and e["reason"] == reason
    ]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo_api(cluster: Cluster) -> Iterator[DemoSource]:
    source = DemoSource(CUSTOMERS, host=cluster.need_host_ip())
    with source:
        yield source


@pytest.fixture(scope="module")
def ns(operator: Operator) -> Iterator[str]:
    name = f"e2e-gitops-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(name)
    yield name
    kubectl("delete", "datapipelines", "--all", "-n", name, "--timeout=120s", check=False)
    delete_namespace(name)


def pipeline(name: str, source_url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "duckherd.io/v1alpha1",
        "kind": "DataPipeline",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 6 * * *",
            "sources": [
                {
                    "name": "customers",
                    "writeDisposition": "replace",
                    "http": {
                        "url": source_url,
                        "recordsPath": "data",
                        "pagination": {"type": "page", "pageSize": 100},
                        "maxRetries": 0,
                    },
                }
            ],
            "quality": {"checks": [row_count_check(max_value=1_000_000)]},
            **spec,
        },
    }


def row_count_check(max_value: int) -> dict[str, Any]:
    return {
        "table": "raw.customers",
        "expectation": "expect_table_row_count_to_be_between",
        "kwargs": {"min_value": 1, "max_value": max_value},
        "name": "customers row count",
    }


def patch(namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = json.dumps({"spec": spec})
    kubectl("patch", "datapipeline", name, "-n", namespace, "--type=merge", "-p", body)


def run_now(namespace: str, name: str = NAME) -> None:
    value = f"duckherd.io/run-now={uuid.uuid4().hex}"
    kubectl("annotate", "datapipeline", name, "-n", namespace, value, "--overwrite")


def last_run_id(namespace: str, name: str = NAME) -> str | None:
    run = get_pipeline(namespace, name).get("status", {}).get("lastRun") or {}
    return run.get("id")


def run_to_the_end(namespace: str, name: str = NAME) -> dict[str, Any]:
    """Start a run and wait until status reports it finished."""
    before = last_run_id(namespace, name)
    run_now(namespace, name)
    run_id = wait_until(
        "the manual run to show in status",
        lambda: found if (found := last_run_id(namespace, name)) != before else None,
        timeout=RUN_TIMEOUT,
    )
    return wait_run_finished(namespace, name, run_id)


# --------------------------------------------------------------------------- deployment health


def test_a_new_pipeline_is_current_within_seconds_of_apply(
    tools: Tools, ns: str, demo_api: DemoSource
) -> None:
    start = time.monotonic()
    apply_manifest(pipeline(NAME, f"{demo_api.url}/customers"), ns)
    # kstatus calls an object without any status Current (docs/status.md, known limits):
    # wait for the operator's verdict, observedGeneration set.
    seen = wait_for(
        tools,
        ns,
        "new pipeline, no run yet",
        lambda s: kstatus_is("Current")(s) and "observedGeneration" in s.pipeline.get("status", {}),
    )
    print(f"[e2e timing] apply -> observed and kstatus Current (s): {time.monotonic() - start:.2f}")
    assert seen.argocd["status"] == "Healthy"
    assert (condition(seen.pipeline, "DataReady") or {}).get("reason") == "AwaitingFirstRun"
    assert "lastRun" not in seen.pipeline["status"]


def test_the_readme_flux_health_checks_read_the_pipeline(tools: Tools, ns: str) -> None:
    kustomization = yaml.safe_load(_readme_block("yaml", "kind: Kustomization"))
    checks = kustomization["spec"]["healthChecks"]
    assert checks == [
        {
            "apiVersion": "duckherd.io/v1alpha1",
            "kind": "DataPipeline",
            "name": NAME,
            "namespace": "analytics",
        }
    ]
    served = kubectl("api-resources", "--api-group=duckherd.io", "-o", "name")
    assert "datapipelines.duckherd.io" in served.split()
    assert look(tools, ns, checks[0]["name"]).kstatus["status"] == "Current"


def test_a_spec_edit_is_in_progress_until_the_operator_acts_on_it(
    tools: Tools, ns: str, operator: Operator
) -> None:
    operator.scale(0)
    try:
        patch(ns, NAME, {"schedule": "30 6 * * *"})
        seen = look(tools, ns, case="spec edited, operator away")
        assert seen.kstatus["status"] == "InProgress", seen.kstatus
        assert "generation is 2, but latest observed generation is 1" in seen.kstatus["message"]
        assert seen.argocd["status"] == "Progressing"
    finally:
        operator.scale(1)
    wait_for(tools, ns, "spec edit acted on", kstatus_is("Current"))


def test_an_invalid_spec_fails_with_the_cause_until_fixed(tools: Tools, ns: str) -> None:
    patch(ns, NAME, {"timeZone": "Mars/Olympus_Mons"})
    seen = wait_for(tools, ns, "unknown time zone", kstatus_is("Failed"))
    assert "unknown time zone 'Mars/Olympus_Mons'" in seen.kstatus["message"]
    assert seen.argocd["status"] == "Degraded"
    assert wait_until("a Warning Event", lambda: warning_events(ns, NAME, "InvalidSpec"))
    patch(ns, NAME, {"timeZone": "Europe/Paris"})
    seen = wait_for(tools, ns, "time zone fixed", kstatus_is("Current"))
    assert "lastRun" not in seen.pipeline["status"], "no run was needed"


def test_a_child_the_api_server_refuses_fails_until_fixed(tools: Tools, ns: str) -> None:
    patch(ns, NAME, {"pod": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": 1}}}})
    seen = wait_for(tools, ns, "requests above limits", kstatus_is("Failed"))
    assert "must be less than or equal to cpu limit" in seen.kstatus["message"]
    assert seen.argocd["status"] == "Degraded"
    events = wait_until("a Warning Event", lambda: warning_events(ns, NAME, "ChildRejected"))
    assert "the API server refused CronJob" in events[0]
    patch(ns, NAME, {"pod": {"resources": None}})
    wait_for(tools, ns, "resources fixed", kstatus_is("Current"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"spec": {"pod": {"resources": {"limits": {"cpu": "lots"}}}}}, "spec.pod.resources"),
        ({"spec": {"schedule": "61 * * * *"}}, "spec.schedule"),
        ({"metadata": {"name": "x" * 43}}, "at most 42 characters"),
    ],
)
def test_admission_refuses_what_the_schema_can_see(
    ns: str, demo_api: DemoSource, change: dict[str, Any], named: str
) -> None:
    manifest = pipeline("refused", f"{demo_api.url}/customers")
    for part, values in change.items():
        manifest[part].update(values)
    with pytest.raises(KubectlError) as refused:
        kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=json.dumps(manifest))
    assert named in str(refused.value)


def test_a_missing_secret_fails_until_the_secret_exists(
    tools: Tools, ns: str, demo_api: DemoSource
) -> None:
    name = "needs-secret"
    manifest = pipeline(name, f"{demo_api.url}/customers")
    manifest["spec"]["sources"][0]["http"]["auth"] = {
        "type": "bearer",
        "secretRef": {"name": "crm-token", "key": "token"},
    }
    apply_manifest(manifest, ns)
    wait_for(tools, ns, "secret pipeline applied", kstatus_is("Current"), name=name)
    run_now(ns, name)
    seen = wait_for(tools, ns, "missing secret", kstatus_is("Failed"), name=name)
    assert "crm-token" in seen.kstatus["message"]
    assert (condition(seen.pipeline, "Stalled") or {}).get("reason") == "MissingSecret"
    assert wait_until("a Warning Event", lambda: warning_events(ns, name, "MissingSecret"))
    kubectl("create", "secret", "generic", "crm-token", "-n", ns, "--from-literal=token=t0ken")
    wait_for(tools, ns, "secret created", kstatus_is("Current"), name=name)
    kubectl("delete", "datapipeline", name, "-n", ns, "--timeout=120s")


def test_an_image_that_cannot_be_pulled_fails_until_fixed(
    tools: Tools, ns: str, demo_api: DemoSource
) -> None:
    name = "bad-image"
    manifest = pipeline(name, f"{demo_api.url}/customers")
    manifest["spec"]["pod"] = {"image": "registry.invalid/duckherd:missing"}
    apply_manifest(manifest, ns)
    wait_for(tools, ns, "image pipeline applied", kstatus_is("Current"), name=name)
    run_now(ns, name)
    seen = wait_for(tools, ns, "image cannot be pulled", kstatus_is("Failed"), name=name)
    assert (condition(seen.pipeline, "Stalled") or {}).get("reason") == "ImagePullFailed"
    assert wait_until("a Warning Event", lambda: warning_events(ns, name, "ImagePullFailed"))
    patch(ns, name, {"pod": {"image": None}})
    wait_for(tools, ns, "image fixed", kstatus_is("Current"), name=name)
    ended = wait_until(
        "the stuck Job of the old generation ended",
        lambda: [e for e in events_for(ns, name) if e["reason"] == "SupersededJobEnded"],
    )
    assert "registry.invalid" in ended[0]["message"] or "ImagePull" in ended[0]["message"]
    kubectl("delete", "datapipeline", name, "-n", ns, "--timeout=120s")


# --------------------------------------------------------------------------- data health


def test_failed_checks_are_data_health_not_a_failed_deploy(tools: Tools, ns: str) -> None:
    patch(ns, NAME, {"quality": {"checks": [row_count_check(max_value=1)]}})
    wait_for(tools, ns, "checks tightened", kstatus_is("Current"))
    finished = run_to_the_end(ns)
    assert finished["status"]["lastRun"]["result"] == "Failed"
    seen = look(tools, ns, case="checks failed")
    assert seen.kstatus["status"] == "Current"
    assert seen.argocd["status"] == "Degraded"
    assert (condition(seen.pipeline, "DataReady") or {}).get("reason") == "ChecksFailed"
    waited = kubectl(
        "wait",
        "--for=condition=DataReady",
        f"datapipeline/{NAME}",
        "-n",
        ns,
        "--timeout=3s",
        check=False,
    )
    assert "condition met" not in waited, "no good data yet"


def test_a_degraded_pipeline_stays_degraded_until_a_run_succeeds(tools: Tools, ns: str) -> None:
    patch(ns, NAME, {"quality": {"checks": [row_count_check(max_value=1_000_000)]}})
    wait_for(tools, ns, "checks relaxed", kstatus_is("Current"))
    before = last_run_id(ns)
    run_now(ns)
    running: list[Seen] = []

    def succeeded() -> bool:
        seen = look(tools, ns)
        last = seen.pipeline["status"].get("lastRun") or {}
        if last.get("id") != before and last.get("result") == "Running":
            running.append(seen)
        return last.get("id") != before and last.get("result") == "Succeeded"

    wait_until("the new run to succeed", succeeded, timeout=RUN_TIMEOUT, interval=0.5)
    assert running, "the run was seen in progress"
    assert {seen.argocd["status"] for seen in running} == {"Degraded"}
    report("run-in-progress-after-failed-checks", running[0])

    recipe = _readme_block("sh", "DataReady datapipeline/customer-analytics -n analytics").strip()
    command = recipe.replace("-n analytics", f"-n {ns}").split()
    assert command[:2] == ["kubectl", "wait"]
    assert "condition met" in kubectl(*command[1:], timeout=660)
    seen = look(tools, ns, case="run succeeded")
    assert (seen.kstatus["status"], seen.argocd["status"]) == ("Current", "Healthy")
    success = seen.pipeline["status"]["lastSuccessfulTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", success), success
    header, row = kubectl("get", "datapipeline", NAME, "-n", ns).strip().splitlines()
    columns = re.split(r"\s{2,}", header.strip())
    assert columns[:4] == ["NAME", "SCHEDULE", "READY", "DATA"] and "LAST SUCCESS" in columns
    ago = re.split(r"\s{2,}", row.strip())[columns.index("LAST SUCCESS")]
    assert re.fullmatch(r"\d+[smhd]\S*", ago), ago


def test_stale_data_is_degraded_and_current(tools: Tools, ns: str) -> None:
    patch(ns, NAME, {"freshness": {"warnAfter": "1s", "errorAfter": "2s"}})
    # Stale as soon as the new thresholds are read, which a sync can do (Job or pipeline
    # event, the resync) before the operator has acted on the new generation: kstatus then
    # rightly says InProgress. The verdicts are those of the generation acted on.
    seen = wait_for(
        tools,
        ns,
        "data stale",
        lambda s: (
            (condition(s.pipeline, "DataReady") or {}).get("reason") == "Stale"
            and s.pipeline["status"].get("observedGeneration")
            == s.pipeline["metadata"]["generation"]
        ),
    )
    assert (seen.kstatus["status"], seen.argocd["status"]) == ("Current", "Degraded")
    assert wait_until("a Warning Event", lambda: warning_events(ns, NAME, "Stale"))
    patch(ns, NAME, {"freshness": None})


def test_a_failed_run_is_degraded_and_current(tools: Tools, ns: str, cluster: Cluster) -> None:
    source = pipeline(NAME, f"http://{cluster.need_host_ip()}:9/customers")["spec"]["sources"]
    patch(ns, NAME, {"sources": source})
    wait_for(tools, ns, "source broken", kstatus_is("Current"))
    finished = run_to_the_end(ns)
    assert finished["status"]["lastRun"]["result"] == "Failed"
    seen = look(tools, ns, case="last run failed")
    assert (seen.kstatus["status"], seen.argocd["status"]) == ("Current", "Degraded")
    assert (condition(seen.pipeline, "DataReady") or {}).get("reason") == "RunFailed"
    assert (
        seen.pipeline["status"]["lastFailureTime"] >= seen.pipeline["status"]["lastSuccessfulTime"]
    )
    assert warning_events(ns, NAME, "RunFailed")


def test_suspended(tools: Tools, ns: str) -> None:
    patch(ns, NAME, {"suspend": True})
    seen = wait_for(tools, ns, "suspended", lambda s: s.argocd["status"] == "Suspended")
    assert seen.kstatus["status"] == "Current"


def test_the_readme_argocd_snippet_installs_the_health_check(tools: Tools, ns: str) -> None:
    """Run as written (in the test namespace) against an argocd-cm holding other settings."""
    kubectl("create", "configmap", "argocd-cm", "-n", ns, "--from-literal=url=https://argo")
    snippet = _readme_block("sh", "create configmap argocd-cm").replace("-n argocd", f"-n {ns}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", snippet],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(kubectl("get", "configmap", "argocd-cm", "-n", ns, "-o", "json"))["data"]
    assert data == {"url": "https://argo", ARGOCD_KEY: HEALTH_LUA.read_text()}
