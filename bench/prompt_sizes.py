"""Prompt size per depth over the scenarios, and how much of the evidence that proves each
scenario's cause survives into the prompt.

"Expected evidence" is what the built-in rules cite for the scenario (they are 25/25 correct):
the items a model most needs to see. Offline: gathering runs on the in-memory cluster.

    .venv/bin/python bench/prompt_sizes.py [tests/scenarios]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path

from oncallm.analysis import build_evidence, diagnose
from oncallm.gathering.gather import gather
from oncallm.llm.prompt import build_prompt
from oncallm.llm.redaction import Redactor
from oncallm.llm.settings import LLMSettings
from oncallm.models.policy import AnalysisPolicy
from oncallm.scenarios.model import load_scenarios

DEPTHS = ("quick", "standard", "deep")


async def main(folder: Path) -> None:
    settings = LLMSettings.from_env({})
    redactor = Redactor()
    rows: dict[str, list[tuple[str, int, float]]] = {d: [] for d in DEPTHS}
    for scenario in load_scenarios(folder):
        shifted = scenario.shift()
        for depth in DEPTHS:
            policy = AnalysisPolicy.model_validate(
                {"metadata": {"name": depth}, "spec": {"depth": depth}}
            )
            ctx = await gather(shifted.alert, shifted.memory_reader(), policy, now=shifted.now)
            evidence = build_evidence(ctx)
            ctx.evidence = evidence
            baseline = diagnose(ctx)
            prompt = build_prompt(
                ctx,
                evidence,
                baseline,
                budget_tokens=settings.prompt_budget(depth),
                redactor=redactor,
                depth=depth,
                tools=depth == "deep",
            )
            expected = set(baseline.evidence)
            kept = expected & set(prompt.stats.kept)
            share = len(kept) / len(expected) if expected else 1.0
            rows[depth].append((scenario.name, prompt.stats.tokens, share))
    print(f"{'depth':<9} {'budget':>7} {'median':>7} {'largest':>8}  expected evidence kept")
    for depth in DEPTHS:
        tokens = [t for _, t, _ in rows[depth]]
        shares = [s for _, _, s in rows[depth]]
        full = sum(1 for s in shares if s == 1.0)
        print(
            f"{depth:<9} {settings.prompt_budget(depth):>7} {statistics.median(tokens):>7.0f} "
            f"{max(tokens):>8}  all of it in {full}/{len(shares)} scenarios, "
            f"lowest share {min(shares):.0%}"
        )
    worst = sorted(rows["quick"], key=lambda r: r[2])[:3]
    print(
        "quick depth, least expected evidence kept:", ", ".join(f"{n} {s:.0%}" for n, _, s in worst)
    )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/scenarios")))
