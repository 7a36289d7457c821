"""An offline adversary of the judge (``oncallm.llm.judge``): models that are sure and cite.

SmolLM2 mostly copies the rules' hinted category, so ``make eval-model`` seldom tests the
judge where it is the only guard: where the rules are unsure. These two models do, on every
visible scenario (the tuned ones and ``corpus/``; never a blind split), through the real
gathering and rules, in memory:

- the **wrong** model names, with confidence 0.9, a category other than the expected one and
  cites one gathered item that proves it (every category, every item); it must never replace
  rules that are unsure and right;
- the **right** model names the expected category, with confidence 0.9, citing an item that
  proves it; where the rules are unsure (or agree) it should stand.

``python -m tests.judge_adversary [JUDGE.py]`` prints both, for the judge in the tree or
for another version of ``llm/judge.py`` (``git show REV:operator/oncallm/llm/judge.py >
/tmp/judge_old.py``), to measure a change before and after. ``tests/unit/
test_llm_judge_adversary.py`` holds the judge in the tree to them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from oncallm.analysis.baseline import build_baseline
from oncallm.gathering.gather import gather
from oncallm.llm import judge as current_judge
from oncallm.models.analysis import Category, Diagnosis, EvidenceRef
from oncallm.models.policy import DEFAULT_POLICY
from oncallm.scenarios.model import load_scenario

FOLDER = Path(__file__).resolve().parent / "scenarios"
#: The visible scenarios: the tuned ones and the development corpus (never a blind split).
PATHS = sorted(FOLDER.glob("*.yaml")) + sorted((FOLDER / "corpus").glob("*.yaml"))
#: The adversary's confidence: sure, above any sensible ONCALLM_LLM_CONFIDENT_RULES.
SURE = 0.9
#: ONCALLM_LLM_CONFIDENT_RULES' default.
CONFIDENT_RULES = 0.6


@dataclass
class Case:
    """One scenario as the judge sees it: the expected category, the rules' baseline, the
    gathered evidence."""

    name: str
    expected: Category
    rules: Diagnosis
    evidence: list[EvidenceRef]

    @property
    def rules_unsure(self) -> bool:
        return self.rules.category is Category.UNKNOWN or self.rules.confidence < CONFIDENT_RULES


@dataclass
class Result:
    """What the two adversaries did against one judge."""

    #: unsure rules that are right: scenario → the wrong "category<-item" that replaced them
    unsure_right: int = 0
    replaced: dict[str, list[str]] = field(default_factory=dict)
    #: scenarios where the rules are unsure and the expected category is not unknown
    unsure_known: int = 0
    #: of those, where the right model stands; and where it does not, why
    right_accepted: set[str] = field(default_factory=set)
    right_refused: dict[str, str] = field(default_factory=dict)
    #: scenarios whose expected category (not unknown) the right model proves: it would
    #: replace rules that know nothing
    provable: set[str] = field(default_factory=set)


#: Rules that know nothing, for the right model to replace.
NOTHING = Diagnosis(
    category=Category.UNKNOWN, summary="unknown.", root_cause="unknown.", confidence=0.2
)


def cases(paths: list[Path] = PATHS) -> list[Case]:
    """Every scenario gathered in memory and diagnosed by the rules."""

    async def one(path: Path) -> Case:
        scenario = load_scenario(path)
        shifted = scenario.shift()
        ctx = await gather(shifted.alert, shifted.memory_reader(), DEFAULT_POLICY, now=shifted.now)
        baseline = build_baseline(ctx)
        return Case(
            scenario.name, scenario.expect.category, baseline.diagnosis, baseline.evidence.items
        )

    async def every() -> list[Case]:
        return [await one(p) for p in paths]

    return asyncio.run(every())


def _sure(category: Category, item: EvidenceRef) -> Diagnosis:
    return Diagnosis(
        category=category,
        summary=f"{category.value} ({item.id}).",
        root_cause=f"{item.id} shows {category.value}.",
        confidence=SURE,
        evidence=[item.id],
    )


def measure(module: ModuleType = current_judge, all_cases: list[Case] | None = None) -> Result:
    """Both adversaries against ``module``'s ``judge`` and ``support``."""
    judge: Callable[..., Any] = module.judge
    result = Result()
    for case in cases() if all_cases is None else all_cases:
        if case.expected is not Category.UNKNOWN and any(
            judge(
                _sure(case.expected, item), NOTHING, case.evidence, confident_rules=CONFIDENT_RULES
            ).accept
            for item in case.evidence
        ):
            result.provable.add(case.name)
        if not case.rules_unsure:
            continue
        if case.rules.category is case.expected:
            result.unsure_right += 1
            wrong = []
            for category in Category:
                if category in (Category.UNKNOWN, case.expected):
                    continue
                for item in case.evidence:
                    verdict = judge(
                        _sure(category, item),
                        case.rules,
                        case.evidence,
                        confident_rules=CONFIDENT_RULES,
                    )
                    if verdict.accept:
                        wrong.append(f"{category.value}<-{item.id}")
                        break
            if wrong:
                result.replaced[case.name] = wrong
        if case.expected is Category.UNKNOWN:
            continue
        result.unsure_known += 1
        notes = []
        for item in case.evidence:
            verdict = judge(
                _sure(case.expected, item),
                case.rules,
                case.evidence,
                confident_rules=CONFIDENT_RULES,
            )
            if verdict.accept:
                result.right_accepted.add(case.name)
                break
            notes.append(verdict.note or "")
        else:
            result.right_refused[case.name] = notes[-1] if notes else "no evidence"
    return result


def load_judge(path: Path) -> ModuleType:
    """Another version of ``llm/judge.py``, loaded from a file."""
    spec = importlib.util.spec_from_file_location(f"judge_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def report(label: str, r: Result) -> None:
    for name, wrong in sorted(r.replaced.items()):
        print(f"  replaced: {name}: {', '.join(wrong)}")
    for name, note in sorted(r.right_refused.items()):
        print(f"  right refused: {name}: {note}")
    print(
        f"{label}: a sure, citing, wrong model replaces unsure and right rules in "
        f"{len(r.replaced)}/{r.unsure_right}; a right one replaces unsure rules in "
        f"{len(r.right_accepted)}/{r.unsure_known}; the expected category stands against rules "
        f"that know nothing in {len(r.provable)}"
    )


def main(argv: list[str]) -> int:
    """``[BEFORE.py]``: the judge in the tree, and another version to compare it with."""
    all_cases = cases()
    print(f"{len(all_cases)} visible scenarios")
    after = measure(current_judge, all_cases)
    if argv:
        before = measure(load_judge(Path(argv[0])), all_cases)
        report(f"before ({argv[0]})", before)
        for name in sorted(before.provable - after.provable):
            print(f"  no longer proven: {name}")
        for name in sorted(after.provable - before.provable):
            print(f"  newly proven: {name}")
    report("after (the tree)", after)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
