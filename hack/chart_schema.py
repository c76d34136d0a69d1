"""The typed description of the Helm chart's values; generates values.schema.json and README.md.

`python hack/chart_schema.py --write` refreshes charts/duckherd/values.schema.json and the
values table of charts/duckherd/README.md (what `helm show readme` prints);
`tests/unit/test_chart.py` fails when either drifts from these models, when values.yaml
does not validate against them, or when a values.yaml key is not documented.

Helm validates values (install, upgrade, template, lint) against JSON Schema; pydantic emits
draft 2020-12 with `$defs`/`$ref` and `anyOf [X, null]`, which is turned here into a
self-contained draft-07 document (refs inlined) so that every Helm 3 version reads it alike.
"""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = REPO_ROOT / "charts" / "duckherd"
SCHEMA_FILE = CHART_DIR / "values.schema.json"
README_FILE = CHART_DIR / "README.md"
VALUES_FILE = CHART_DIR / "values.yaml"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"


class Values(BaseModel):
    """Base: unknown keys are typos, so they are rejected."""

    model_config = ConfigDict(extra="forbid")


class Crds(Values):
    enabled: bool = Field(
        default=True,
        description="Install and upgrade the DataPipeline CRD with the chart.",
    )
    keep: bool = Field(
        default=True,
        description=(
            "Annotate the CRD with helm.sh/resource-policy: keep, so that `helm uninstall` "
            "does not delete it (and with it every DataPipeline)."
        ),
    )


class Image(Values):
    repository: str = Field(
        default="ghcr.io/duckherd/duckherd",
        min_length=1,
        description="Image repository, used by the operator and by every stage pod.",
    )
    tag: str = Field(default="", description="Image tag (default: the chart's appVersion).")
    digest: str = Field(
        default="",
        pattern=r"^(sha256:[a-f0-9]{64})?$",
        description="Image digest; when set it pins the image instead of the tag.",
    )
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of the operator and the stage pods."
    )


class LocalObjectReference(Values):
    name: str = Field(pattern=DNS_LABEL, description="Name of a Secret.")


class ServiceAccount(Values):
    create: bool = Field(default=True, description="Create the operator's ServiceAccount.")
    name: str = Field(default="", description="Its name (default: the release's full name).")
    annotations: dict[str, str] = Field(default_factory=dict, description="Its annotations.")
    automountServiceAccountToken: bool = Field(
        default=True, description="Mount the token; the operator talks to the API server."
    )


class Rbac(Values):
    create: bool = Field(default=True, description="Create the operator's (Cluster)Roles.")


class MetricsService(Values):
    enabled: bool = Field(default=True, description="Create a Service for the metrics port.")
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Its annotations.")


class ServiceMonitor(Values):
    enabled: bool = Field(default=False, description="Create a Prometheus Operator ServiceMonitor.")
    interval: str = Field(
        default="30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Its extra labels.")


class PrometheusRule(Values):
    enabled: bool = Field(
        default=False, description="Create a Prometheus Operator PrometheusRule with the alerts."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Its extra labels (e.g. your Prometheus' ruleSelector)."
    )
    alertLabels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every alert (e.g. a team to route by)."
    )
    runbookUrl: str = Field(
        default="https://github.com/duckherd/duckherd/blob/main/docs/runbooks.md",
        pattern=r"^https?://\S+$",
        description="docs/runbooks.md as your on-call people open it; alerts link its sections.",
    )
    operatorJob: str = Field(
        default="",
        description=(
            "The `job` label Prometheus gives the operator's metrics (default: the metrics "
            "Service's name, which a ServiceMonitor uses)."
        ),
    )
    warehouseUsagePercent: int = Field(
        default=80, ge=1, le=99, description="Warehouse volume usage (%) that raises an alert."
    )
    missedRunGraceMinutes: int = Field(
        default=60,
        ge=1,
        description="Minutes a scheduled run may take before a missing success raises an alert.",
    )


class GrafanaDashboard(Values):
    enabled: bool = Field(
        default=False,
        description="Ship the Grafana dashboard in a ConfigMap for Grafana's sidecar.",
    )
    namespace: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        max_length=63,
        description="Namespace of the ConfigMap (default: the release namespace).",
    )
    labels: dict[str, str] = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels of the ConfigMap; the sidecar picks up the one it is told to.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the ConfigMap (e.g. a sidecar folder)."
    )


class Metrics(Values):
    enabled: bool = Field(default=True, description="Serve Prometheus metrics.")
    port: int = Field(default=9090, ge=1, le=65535, description="Metrics port.")
    service: MetricsService = Field(
        default_factory=MetricsService, description="The metrics Service."
    )
    serviceMonitor: ServiceMonitor = Field(
        default_factory=ServiceMonitor, description="A ServiceMonitor for the metrics Service."
    )
    prometheusRule: PrometheusRule = Field(
        default_factory=PrometheusRule, description="Alert rules (docs/monitoring.md)."
    )
    grafanaDashboard: GrafanaDashboard = Field(
        default_factory=GrafanaDashboard, description="The Grafana dashboard."
    )


class Webhook(Values):
    secretName: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        max_length=253,
        description=(
            "Secret (release namespace) holding the webhook URL; empty: notifications off. "
            "The operator may `get` this Secret only."
        ),
    )
    key: str = Field(
        default="url", pattern=r"^[-._a-zA-Z0-9]+$", description="Key of the Secret: the URL."
    )
    format: Literal["slack", "json"] = Field(
        default="slack", description="Payload: slack (text and blocks) or json (a plain body)."
    )


class Notifications(Values):
    webhook: Webhook = Field(
        default_factory=Webhook, description="A webhook told of each transition and recovery."
    )


class LivenessProbe(Values):
    enabled: bool = Field(default=True, description="Probe Kopf's /healthz endpoint.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port of the endpoint.")
    initialDelaySeconds: int = Field(default=10, ge=0, description="Delay before the first probe.")
    periodSeconds: int = Field(default=10, ge=1, description="Probe interval.")
    timeoutSeconds: int = Field(default=5, ge=1, description="Probe timeout.")
    failureThreshold: int = Field(default=6, ge=1, description="Failures before a restart.")


class ReadinessProbe(Values):
    enabled: bool = Field(default=True, description="Probe readiness on the same endpoint.")
    initialDelaySeconds: int = Field(default=2, ge=0, description="Delay before the first probe.")
    periodSeconds: int = Field(default=5, ge=1, description="Probe interval.")
    timeoutSeconds: int = Field(default=5, ge=1, description="Probe timeout.")
    failureThreshold: int = Field(default=3, ge=1, description="Failures before not Ready.")


class ResourceList(Values):
    model_config = ConfigDict(extra="allow")

    cpu: str | int | None = Field(default=None, description="CPU quantity.")
    memory: str | None = Field(default=None, pattern=QUANTITY, description="Memory quantity.")


class Resources(Values):
    requests: ResourceList = Field(default_factory=ResourceList, description="Requested resources.")
    limits: ResourceList = Field(default_factory=ResourceList, description="Resource limits.")


class EnvVar(Values):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(default=None, description="Value.")


class DemoSource(Values):
    enabled: bool = Field(
        default=False, description="Deploy the example's demo customers API (operator's image)."
    )
    namespace: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        max_length=63,
        description="Its namespace (default: the first watched namespace, else the release's).",
    )
    customers: int = Field(default=10_000, ge=1, le=10_000_000, description="Customers served.")


class StagePods(Values):
    resources: Resources = Field(
        default_factory=Resources,
        description="Default resources of stage containers (spec.pod.resources replaces them).",
    )


class LineageApiKeySecret(Values):
    name: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        max_length=253,
        description="Secret holding the API key, in each pipeline's namespace; empty: no key.",
    )
    key: str = Field(
        default="apiKey",
        pattern=r"^[-._a-zA-Z0-9]+$",
        max_length=253,
        description="Key of the API key in the Secret.",
    )


class Lineage(Values):
    url: str = Field(
        default="",
        pattern=r"^(https?://[^/@\s]+(/\S*)?)?$",  # no user:password@ (use apiKeySecret)
        max_length=2048,
        description="OpenLineage receiver (Marquez, DataHub); empty: no events by default.",
    )
    endpoint: str = Field(
        default="api/v1/lineage",
        max_length=1024,
        description="Path under url that events are POSTed to.",
    )
    namespace: str = Field(
        default="",
        max_length=253,
        description="OpenLineage namespace of the jobs; empty: the pipeline's namespace.",
    )
    timeoutSeconds: float = Field(
        default=5, gt=0, le=300, description="Seconds a stage waits for one event at most."
    )
    apiKeySecret: LineageApiKeySecret = Field(
        default_factory=LineageApiKeySecret,
        description="The receiver's API key (Bearer token), from a Secret.",
    )


class ChartValues(Values):
    """Everything `values.yaml` may set."""

    global_: dict[str, Any] = Field(
        default_factory=dict,
        alias="global",
        description="Reserved for values shared with a parent chart.",
    )
    nameOverride: str = Field(default="", description="Replaces the chart name in resource names.")
    fullnameOverride: str = Field(default="", description="Replaces the full resource name.")
    commonLabels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every resource."
    )
    crds: Crds = Field(default_factory=Crds, description="The DataPipeline CRD.")
    image: Image = Field(default_factory=Image, description="The Duckherd image.")
    imagePullSecrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets to pull the operator image with."
    )
    watchNamespaces: list[Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]] = Field(
        default_factory=list,
        description="Namespaces to watch; empty: every namespace (cluster-wide RBAC).",
    )
    serviceAccount: ServiceAccount = Field(
        default_factory=ServiceAccount, description="The operator's ServiceAccount."
    )
    rbac: Rbac = Field(default_factory=Rbac, description="RBAC objects.")
    metrics: Metrics = Field(default_factory=Metrics, description="Prometheus metrics.")
    notifications: Notifications = Field(
        default_factory=Notifications, description="Notifications of bad data and recoveries."
    )
    livenessProbe: LivenessProbe = Field(
        default_factory=LivenessProbe, description="The operator's liveness probe."
    )
    readinessProbe: ReadinessProbe = Field(
        default_factory=ReadinessProbe, description="The operator's readiness probe."
    )
    resources: Resources = Field(
        default_factory=Resources, description="The operator container's resources."
    )
    stagePods: StagePods = Field(
        default_factory=StagePods, description="Defaults for the stage pods the operator creates."
    )
    extraArgs: list[str] = Field(
        default_factory=list, description="Extra arguments for `duckherd operator`."
    )
    extraEnv: list[EnvVar] = Field(
        default_factory=list, description="Extra environment variables of the operator."
    )
    podAnnotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the operator Pod."
    )
    podLabels: dict[str, str] = Field(
        default_factory=dict, description="Labels of the operator Pod."
    )
    podSecurityContext: dict[str, Any] = Field(
        default_factory=dict, description="The operator Pod's securityContext."
    )
    containerSecurityContext: dict[str, Any] = Field(
        default_factory=dict, description="The operator container's securityContext."
    )
    priorityClassName: str = Field(default="", description="PriorityClass of the operator Pod.")
    nodeSelector: dict[str, str] = Field(
        default_factory=dict, description="Node selector of the operator Pod."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Tolerations of the operator Pod."
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict, description="Affinity of the operator Pod."
    )
    lineage: Lineage = Field(
        default_factory=Lineage, description="OpenLineage events of every pipeline's runs."
    )
    demoSource: DemoSource = Field(
        default_factory=DemoSource, description="The example's demo customers API."
    )


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        return _inline_refs({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    return {key: _inline_refs(value, defs) for key, value in node.items() if key != "$defs"}


def _draft7(node: Any) -> Any:
    """Drop pydantic's titles and defaults (values.yaml holds the defaults); keep the rest."""
    if isinstance(node, list):
        return [_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key in {"title", "default"}:
            continue
        if key == "properties":
            cleaned[key] = {name: _draft7(sub) for name, sub in value.items()}
        else:
            cleaned[key] = _draft7(value)
    return cleaned


def build_schema() -> dict[str, Any]:
    """The values.schema.json document."""
    raw = ChartValues.model_json_schema(by_alias=True, mode="validation")
    schema = _draft7(_inline_refs(raw, raw.get("$defs", {})))
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema}


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"


README_HEAD = """\
# Duckherd Helm chart

Installs the Duckherd operator: the `DataPipeline` CRD (kept on uninstall), the operator
Deployment (one replica, Pod Security "restricted"), least-privilege RBAC (cluster-wide, or
per namespace with `watchNamespaces`; no access to Secrets but, with notifications, `get` on
the one holding the webhook URL) and a metrics Service.
Stage pods (ingest, transform, check, publish) run the same image with their namespace's
`default` ServiceAccount and no API token.

```sh
helm install duckherd charts/duckherd --namespace duckherd --create-namespace \\
  --set image.repository=<registry>/duckherd --set image.tag=<tag> --set demoSource.enabled=true
kubectl apply -n duckherd -f examples/customer-analytics/pipeline.yaml
kubectl annotate -n duckherd datapipeline/customer-analytics duckherd.io/run-now="$(date +%s)"
kubectl get -n duckherd datapipelines --watch
```

`demoSource.enabled` runs the example's demo customers API with the operator's image (leave it
off in production). The example also publishes to Redis and PostgreSQL:
`examples/customer-analytics/targets.yaml` starts throw-away ones.

Only some namespaces: `--set 'watchNamespaces={team-a,team-b}'`. The CRD managed elsewhere
(e.g. applied by GitOps from `crds/`): `--set crds.enabled=false`.

{argocd}
## Values

Generated from `hack/chart_schema.py` (`python hack/chart_schema.py --write`); `values.yaml`
explains each key in more words.

| Key | Type | Default | Description |
|-----|------|---------|-------------|
"""


def _type_name(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{value}`" for value in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_name(option) for option in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_name(schema.get('items', {}))}"
    return str(kind)


def _rows(schema: dict[str, Any], defaults: Any, prefix: str = "") -> list[str]:
    rows = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        default = defaults.get(name) if isinstance(defaults, dict) else None
        if sub.get("properties"):
            rows.extend(_rows(sub, default, f"{path}."))
            continue
        shown = json.dumps(default, separators=(",", ":")).replace("|", "\\|")
        description = sub.get("description", "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_name(sub)} | `{shown}` | {description} |")
    return rows


ARGOCD_HEALTH_FILE = CHART_DIR / "argocd" / "health.lua"
ARGOCD_CM_KEY = "resource.customizations.health.duckherd.io_DataPipeline"
ARGOCD_SECTION = """\
## Argo CD health check

`argocd/health.lua` tells Argo CD a DataPipeline's health (docs/status.md in the repository):
Progressing until the operator has acted on the current generation and while the first run
runs, Degraded when the operator cannot act on the spec (`Stalled`) or the data is not good
(last run failed, checks failed, publish blocked, stale — held while a new run is in
progress, until a run succeeds), Suspended with `spec.suspend`, Healthy otherwise. Argo CD
runs it without its optional Lua libraries. In `argocd-cm` (generated from the file; a test
runs this very script on live pipelines):

```yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/part-of: argocd
data:
  {key}: |
{script}```
"""


def render_readme() -> str:
    defaults = yaml.safe_load(VALUES_FILE.read_text())
    script = textwrap.indent(ARGOCD_HEALTH_FILE.read_text(), "    ")
    argocd = ARGOCD_SECTION.format(key=ARGOCD_CM_KEY, script=script)
    head = README_HEAD.replace("{argocd}", argocd)
    return head + "\n".join(_rows(build_schema(), defaults)) + "\n"


def main(argv: list[str]) -> int:
    outputs = {SCHEMA_FILE: render_schema(), README_FILE: render_readme()}
    if "--write" in argv:
        for target, text in outputs.items():
            target.write_text(text)
            print(f"wrote {target.relative_to(REPO_ROOT)}")
    else:
        sys.stdout.write(outputs[SCHEMA_FILE])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
