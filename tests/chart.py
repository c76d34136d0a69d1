"""The project's Helm chart as the tests render it: `helm template` with a helm binary from
PATH, $HELM or hack/cluster's build cache, for the Kubernetes version the e2e cluster runs.

Without a helm binary the tests that need one are skipped, and fail under CI=true."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.tools import REPO_ROOT, missing_tool

CHART = REPO_ROOT / "charts" / "duckherd"


def _cluster_k8s_version() -> str:
    versions = (REPO_ROOT / "hack/cluster/versions.sh").read_text()
    found = re.search(r"^K8S_VERSION=(\S+)", versions, re.MULTILINE)
    assert found, "hack/cluster/versions.sh names no K8S_VERSION"
    return found.group(1)


# Offline rendering and linting target the Kubernetes version the e2e cluster runs, whichever
# helm runs them: the default is the one a helm binary was built with (hack/cluster's helm
# defaults to the cluster's version, a `go install`ed helm to v1.20).
KUBE_VERSION = _cluster_k8s_version()
KUBE_FLAGS = ("--kube-version", KUBE_VERSION)


def cluster_helm() -> Path:
    """Where hack/cluster/build.sh puts helm."""
    cache = Path(os.environ.get("DUCKHERD_CLUSTER_CACHE", "/var/cache/duckherd-cluster"))
    return cache / KUBE_VERSION / "bin" / "helm"


def find_helm() -> str | None:
    explicit = os.environ.get("HELM")
    if explicit:
        return explicit
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    candidate = cluster_helm()
    return str(candidate) if candidate.is_file() else None


def need_helm() -> str:
    found = find_helm()
    if found is None:
        missing_tool("no helm binary (PATH, $HELM or hack/cluster's build cache)")
    return found


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=120)


def render(
    helm: str, *flags: str, release: str = "demo", namespace: str = "duckherd"
) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them with `flags`."""
    result = run_helm(
        helm, "template", release, str(CHART), f"--namespace={namespace}", *KUBE_FLAGS, *flags
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
