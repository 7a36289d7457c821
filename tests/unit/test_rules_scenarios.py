"""Every scenario in tests/scenarios through the real gathering (in memory) and the rules.

This is the rules' regression suite: a rule change that breaks a scenario fails here, in
milliseconds, without a cluster or a model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oncallm.analysis import build_evidence, diagnose
from oncallm.gathering.gather import gather
from oncallm.models.analysis import Category
from oncallm.models.policy import DEFAULT_POLICY
from oncallm.scenarios.model import Scenario, load_scenario

FOLDER = Path(__file__).resolve().parents[1] / "scenarios"
PATHS = sorted(FOLDER.glob("*.yaml"))


def test_the_scenarios_cover_every_category() -> None:
    """The tuned and the development split together expect every category."""
    paths = PATHS + sorted((FOLDER / "corpus").glob("*.yaml"))
    expected = {load_scenario(p).expect.category for p in paths}
    assert len(PATHS) >= 22
    assert expected == set(Category), set(Category) - expected


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
async def test_scenario_is_diagnosed(path: Path) -> None:
    scenario: Scenario = load_scenario(path)
    assert path.stem == scenario.name
    shifted = scenario.shift(scenario.now)
    ctx = await gather(shifted.alert, shifted.memory_reader(), DEFAULT_POLICY, now=scenario.now)
    d = diagnose(ctx)
    assert d.category == scenario.expect.category, d.root_cause
    text = f"{d.summary} {d.root_cause}".lower()
    for word in scenario.expect.mention:
        assert word.lower() in text, f"{word!r} not in: {d.root_cause}"
    ids = {e.id for e in build_evidence(ctx)}
    assert set(d.evidence) <= ids
    namespaces = scenario.namespaces()
    assert any(f"-n {ns} " in cmd for cmd in d.commands for ns in namespaces)


def test_scenarios_are_independent() -> None:
    """Own namespaces and own node names, so all can be planted on one cluster."""
    seen_ns: dict[str, str] = {}
    seen_cluster: dict[str, str] = {}
    for path in PATHS:
        s = load_scenario(path)
        for ns in s.namespaces():
            assert seen_ns.setdefault(ns, s.name) == s.name, f"{ns} used by {seen_ns[ns]}"
        for obj in s.objects:
            meta = obj.get("metadata") or {}
            if "namespace" not in meta:
                key = f"{obj['kind']}/{meta['name']}"
                assert seen_cluster.setdefault(key, s.name) == s.name, key
                assert s.name in meta["name"], f"{key} should carry the scenario name"
        nodes = {o["metadata"]["name"] for o in s.objects if o["kind"] == "Node"}
        for obj in s.objects:
            if obj["kind"] == "Pod" and obj["spec"].get("nodeName"):
                assert obj["spec"]["nodeName"] in nodes, (s.name, obj["metadata"]["name"])
