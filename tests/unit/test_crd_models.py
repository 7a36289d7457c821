"""The CRDs in crds/ and the pydantic models cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from oncallm.models.analysis import (
    AlertAnalysisSpec,
    AlertAnalysisStatus,
    Category,
    EvidenceSource,
    IncidentRole,
    Phase,
)
from oncallm.models.policy import AnalysisPolicySpec, Depth

CRDS = Path(__file__).resolve().parents[2] / "crds"


def _schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / file).read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return _resolve(defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("anyOf", "allOf"):
        if key in schema:
            options = [_resolve(s, defs) for s in schema[key] if s.get("type") != "null"]
            if len(options) == 1:
                return options[0]
    return schema


def _compare(
    crd: dict[str, Any], model: dict[str, Any], defs: dict[str, Any], path: str
) -> list[str]:
    problems: list[str] = []
    model = _resolve(model, defs)
    if "enum" in model or "enum" in crd:
        if sorted(map(str, model.get("enum", []))) != sorted(map(str, crd.get("enum", []))):
            problems.append(
                f"{path}: enum differs: model {model.get('enum')} crd {crd.get('enum')}"
            )
    if model.get("type") == "object" and "properties" in model:
        crd_props = crd.get("properties", {})
        for name, sub in model["properties"].items():
            if name not in crd_props:
                problems.append(f"{path}.{name}: in the model, not in the CRD")
            else:
                problems += _compare(crd_props[name], sub, defs, f"{path}.{name}")
        for name in crd_props:
            if name not in model["properties"]:
                problems.append(f"{path}.{name}: in the CRD, not in the model")
    if model.get("type") == "array" and "items" in model:
        problems += _compare(crd.get("items", {}), model["items"], defs, f"{path}[]")
    return problems


@pytest.mark.parametrize(
    ("file", "part", "model"),
    [
        ("alertanalyses.yaml", "spec", AlertAnalysisSpec),
        ("alertanalyses.yaml", "status", AlertAnalysisStatus),
        ("analysispolicies.yaml", "spec", AnalysisPolicySpec),
    ],
)
def test_crd_and_model_have_the_same_fields(file: str, part: str, model: type[BaseModel]) -> None:
    schema = model.model_json_schema(by_alias=True)
    problems = _compare(_schema(file)["properties"][part], schema, schema.get("$defs", {}), part)
    assert problems == []


def test_enums_match() -> None:
    status = _schema("alertanalyses.yaml")["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [p.value for p in Phase]
    assert status["category"]["enum"] == [c.value for c in Category]
    assert status["incident"]["properties"]["role"]["enum"] == [r.value for r in IncidentRole]
    assert status["evidence"]["items"]["properties"]["source"]["enum"] == [
        s.value for s in EvidenceSource
    ]
    policy = _schema("analysispolicies.yaml")["properties"]["spec"]["properties"]
    assert policy["depth"]["enum"] == [d.value for d in Depth]


def test_policy_defaults_match() -> None:
    """Defaults the API server fills in are the defaults the model assumes."""
    spec = _schema("analysispolicies.yaml")["properties"]["spec"]["properties"]
    model = AnalysisPolicySpec()
    assert spec["depth"]["default"] == model.depth.value
    assert spec["priority"]["default"] == model.priority
    assert spec["retentionHours"]["default"] == model.retention_hours
    assert spec["sources"]["properties"]["logLines"]["default"] == model.sources.log_lines
    assert spec["llm"]["properties"]["dailyTokenBudget"]["default"] == model.llm.daily_token_budget


def test_printer_columns_tell_what_happened() -> None:
    crd = yaml.safe_load((CRDS / "alertanalyses.yaml").read_text())
    columns = [
        c["name"]
        for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        if not c.get("priority")
    ]
    assert columns == [
        "Alert",
        "Target",
        "Severity",
        "Phase",
        "Role",
        "Incident",
        "Root Cause",
        "Age",
    ]
