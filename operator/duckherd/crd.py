"""Generate the DataPipeline CRD from the pydantic models.

Pydantic emits JSON Schema (draft 2020-12); Kubernetes wants a *structural* OpenAPI v3.0
schema. The conversion here is hand-written because no maintained library targets CRDs
from pydantic v2, and the rules are few: inline `$ref`s, turn `anyOf [X, null]` into
`X` + `nullable`, drop keywords Kubernetes rejects or that would apply defaults behind the
user's back, and mark free-form maps with `x-kubernetes-preserve-unknown-fields`.

`python -m duckherd.crd --write` refreshes `crds/` and the chart's copy; a unit test fails
when either drifts from the models.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from duckherd import api

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = REPO_ROOT / "crds" / "duckherd.io_datapipelines.yaml"
CHART_CRD_FILE = REPO_ROOT / "charts" / "duckherd" / "files" / "crd.yaml"

_DROPPED_KEYS = {"title", "default", "$defs", "examples"}
_LIST_MAP_KEYS = {
    "sources": ["name"],
    "metrics": ["name"],
    "kpis": ["name"],
    "conditions": ["type"],
}


class SchemaError(ValueError):
    """The models produce a schema Kubernetes would not accept."""


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _structural(node: dict[str, Any], path: str) -> dict[str, Any]:
    node = {k: v for k, v in node.items() if k not in _DROPPED_KEYS}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{path}: unions other than Optional[X] are not structural")
        # Kubernetes drops nulls of nullable fields at admission; optional fields stay optional
        # by not being required, so `nullable` is only added where null means something.
        node = {k: v for k, v in {**options[0], **node}.items() if k not in _DROPPED_KEYS}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    # JSON Schema 2020-12 bounds are numbers; OpenAPI v3.0 (CRDs) wants a bound plus a flag.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(exclusive), int | float) and not isinstance(node[exclusive], bool):
            node[bound] = node.pop(exclusive)
            node[exclusive] = True
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        return node  # a quantity: integer or string, no `type` (structural rules)
    if kind == "object":
        properties = node.get("properties")
        extra = node.pop("additionalProperties", None)
        if properties is not None:
            node["properties"] = {
                name: _structural(sub, f"{path}.{name}") for name, sub in properties.items()
            }
        elif isinstance(extra, dict) and extra:
            node["additionalProperties"] = _structural(extra, f"{path}[*]")
        else:
            # dict[str, Any]: arbitrary content (dbt vars, GX kwargs, valueFrom, tolerations).
            node["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        node["items"] = _structural(node["items"], f"{path}[]")
        field_name = path.rsplit(".", 1)[-1]
        if field_name in _LIST_MAP_KEYS:
            node["x-kubernetes-list-type"] = "map"
            node["x-kubernetes-list-map-keys"] = _LIST_MAP_KEYS[field_name]
    elif kind is None and "enum" not in node:
        # Any: a value of any JSON type (e.g. a GX kwarg).
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model (by field alias, with descriptions)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    resolved = _resolve(raw, defs)
    return _structural(resolved, model.__name__)


def _with_list_map_required(schema: dict[str, Any]) -> dict[str, Any]:
    """List-map keys must be required (or defaulted) in the item schema."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys = node.get("x-kubernetes-list-map-keys")
            if keys:
                required = node["items"].setdefault("required", [])
                for key in keys:
                    if key not in required:
                        required.append(key)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Data",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="DataReady")].status',
    },
    {"name": "Last Run", "type": "string", "jsonPath": ".status.lastRun.result"},
    {
        "name": "Rows",
        "type": "integer",
        "jsonPath": ".status.totalRows",
        "description": "Rows in the final tables: marts with a transform, else raw.",
    },
    {"name": "Freshness", "type": "string", "jsonPath": ".status.freshness.state"},
    {"name": "Last Success", "type": "date", "jsonPath": ".status.lastSuccessfulTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Next Run",
        "type": "string",
        "jsonPath": ".status.nextScheduleTime",
        "priority": 1,
    },
    {
        "name": "Checks",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="ChecksPassed")].reason',
        "priority": 1,
    },
    {
        "name": "Message",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
        "priority": 1,
    },
    {
        "name": "Data Message",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="DataReady")].message',
        "priority": 1,
    },
]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest."""
    spec_schema = _with_list_map_required(openapi_schema(api.DataPipelineSpec))
    status_schema = _with_list_map_required(openapi_schema(api.DataPipelineStatus))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {
                "app.kubernetes.io/name": "duckherd",
                "app.kubernetes.io/part-of": "duckherd",
            },
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": api.CATEGORIES,
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "A DataPipeline ingests sources into a DuckDB warehouse on a "
                                "PersistentVolume, transforms it with dbt, checks it with Great "
                                "Expectations and publishes marts, on a schedule."
                            ),
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                api.cel(
                                    f"size(self.metadata.name) <= {api.MAX_PIPELINE_NAME}",
                                    f"metadata.name: at most {api.MAX_PIPELINE_NAME} characters "
                                    "(the stage CronJob names derive from it)",
                                )
                            ],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": f"APIVersion ({api.API_VERSION}).",
                                },
                                "kind": {
                                    "type": "string",
                                    "description": "Kind of this object (DataPipeline).",
                                },
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated from duckherd.api by `make crds`. Do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    text = render_crd_yaml()
    if "--write" in argv:
        for target in (CRD_FILE, CHART_CRD_FILE):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target.relative_to(REPO_ROOT)}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
