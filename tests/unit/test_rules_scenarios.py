"""Every scenario in tests/scenarios through the real gathering (in memory) and the rules.

This is the rules' regression suite: a rule change that breaks a scenario fails here, in
milliseconds, without a cluster or a model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oncallm.analysis import build_evidence, diagnose
from oncallm.gathering.gather import gather
from oncallm.models.analysis import Category
from oncallm.models.policy import DEFAULT_POLICY
from oncallm.scenarios.model import Scenario, load_scenario

FOLDER = Path(__file__).resolve().parents[1] / "scenarios"
PATHS = sorted(FOLDER.glob("*.yaml"))
#: The other splits (corpus/, blind/, ...): checked for independence only, never diagnosed here.
SPLIT_PATHS = sorted(p for p in FOLDER.glob("*/**/*.yaml"))
#: Namespaces of shared system components, which scenarios of corpus/ and blind/ may share:
#: the planter never deletes them and removes exactly what each scenario planted.
SHARED_NAMESPACES = {
    "kube-system",
    "default",
    "monitoring",
    "cert-manager",
    "external-secrets",
    "ingress-nginx",
    "argocd",
}
#: A dynamically provisioned PersistentVolume's real name, unique by construction.
PROVISIONED_PV = re.compile(r"^pvc-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")


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


def test_corpus_and_blind_scenarios_are_independent() -> None:
    """Besides the shared system namespaces, a namespace belongs to one scenario (of any
    split), and cluster-scoped objects carry their scenario's name. A blind scenario's
    failure names no scenario and no object, so the rules' authors need not read it."""
    if not SPLIT_PATHS:
        pytest.skip("no scenarios in tests/scenarios/*/ yet")
    owner: dict[str, str] = {}
    for path in PATHS:  # the tuned split's namespaces and names are taken
        s = load_scenario(path)
        for ns in s.namespaces():
            owner.setdefault(f"namespace {ns}", s.name)
        for obj in s.objects:
            if "namespace" not in (obj.get("metadata") or {}):
                owner.setdefault(f"{obj['kind']} {obj['metadata']['name']}", s.name)
    visible: list[str] = []
    hidden = 0
    for path in SPLIT_PATHS:
        s = load_scenario(path)
        problems = []
        for ns in s.namespaces():
            if (
                ns not in SHARED_NAMESPACES
                and owner.setdefault(f"namespace {ns}", s.name) != s.name
            ):
                problems.append(f"namespace {ns} is also {owner[f'namespace {ns}']}'s")
        for obj in s.objects:
            meta = obj.get("metadata") or {}
            if obj["kind"] == "Namespace" or "namespace" in meta:
                continue
            key = f"{obj['kind']} {meta['name']}"
            if owner.setdefault(key, s.name) != s.name:
                problems.append(f"{key} is also {owner[key]}'s")
            provisioned = obj["kind"] == "PersistentVolume" and PROVISIONED_PV.match(meta["name"])
            if s.name not in meta["name"] and not provisioned:
                problems.append(f"{key} should carry the scenario name")
        if path.relative_to(FOLDER).parts[0].startswith("blind"):
            hidden += bool(problems)
        else:
            visible += [f"{s.name}: {p}" for p in problems]
    assert not visible, visible
    assert not hidden, (
        f"{hidden} blind scenario(s) share a namespace or a cluster-scoped name with another "
        "scenario, or name a cluster-scoped object without their own name"
    )
