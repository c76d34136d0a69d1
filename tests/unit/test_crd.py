"""The CRD is generated from the models, structural, described, and checked in."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from duckherd.crd import CHART_CRD_FILE, CRD_FILE, build_crd, render_crd_yaml
from duckherd_cli.main import app


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found.extend(_walk(value, f"{path}.{key}"))
        if "items" in node:
            found.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            found.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return found


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_checked_in_crd_matches_the_models() -> None:
    rendered = render_crd_yaml()
    assert CRD_FILE.read_text() == rendered, "run `make crds`"
    assert CHART_CRD_FILE.read_text() == rendered, "run `make crds`"


def test_cli_prints_the_checked_in_crd() -> None:
    result = CliRunner().invoke(app, ["crd"])
    assert result.exit_code == 0
    assert result.output == CRD_FILE.read_text()


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "default", "title", "const"):
            assert forbidden not in node, f"{path} has {forbidden}"
        assert (
            "type" in node
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ), path


def test_every_field_has_a_description() -> None:
    spec = _schema()["properties"]
    for root in ("spec", "status"):
        for path, node in _walk(spec[root], root):
            if path.endswith("[]") or path.endswith("{}"):
                continue
            assert node.get("description"), f"{path} has no description"


def test_cross_field_rules_are_cel() -> None:
    schema = _schema()["properties"]["spec"]
    source = schema["properties"]["sources"]["items"]
    rules = [v["rule"] for v in source["x-kubernetes-validations"]]
    assert any("has(self.http)" in rule for rule in rules)
    assert schema["properties"]["sources"]["x-kubernetes-list-map-keys"] == ["name"]
    storage_rules = [v["rule"] for v in schema["properties"]["storage"]["x-kubernetes-validations"]]
    assert any("existingClaim" in rule and "size" in rule for rule in storage_rules)
    backup = schema["properties"]["backup"]
    assert [v["rule"] for v in backup["x-kubernetes-validations"]] == [
        "has(self.volume) != has(self.s3)"
    ]
    source_rules = [v["message"] for v in source["x-kubernetes-validations"]]
    assert "set at most one of retainFor, keepLoads" in source_rules


def test_printer_columns_and_names() -> None:
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert names == [
        "Schedule",
        "Ready",
        "Data",
        "Last Run",
        "Rows",
        "Freshness",
        "Last Success",
        "Age",
    ]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["shortNames"] == ["dp"]
    assert crd["spec"]["names"]["categories"] == ["duckherd"]


def test_admission_refuses_what_the_schema_can_see() -> None:
    schema = _schema()
    assert schema["x-kubernetes-validations"][0]["rule"] == "size(self.metadata.name) <= 42"
    spec = schema["properties"]["spec"]["properties"]
    assert spec["schedule"]["pattern"].startswith("^(@(yearly")
    limits = spec["pod"]["properties"]["resources"]["properties"]["limits"]
    quantity = limits["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True and "type" not in quantity
    assert "pattern" in quantity
