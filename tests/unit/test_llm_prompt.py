"""The prompt: data blocks, hints, budgets, the strict schema."""

from __future__ import annotations

import json
import re

from oncallm.llm.prompt import (
    RULES_ONLY_FIELDS,
    build_prompt,
    diagnosis_json_schema,
    estimate_tokens,
)
from oncallm.llm.redaction import Redactor
from oncallm.models.analysis import Category, Diagnosis, EvidenceRef
from tests.unit.llm_fixtures import INJECTION, POD, SECRETS, baseline, context, evidence


def _blocks(text: str, nonce: str) -> list[str]:
    return re.findall(
        rf"<<<DATA {nonce}>>>\n```json\n(.*?)\n```\n<<<END DATA {nonce}>>>", text, re.DOTALL
    )


def test_evidence_is_json_lines_inside_nonce_delimited_data_blocks() -> None:
    prompt = build_prompt(
        context(), evidence(injection=True), baseline(), budget_tokens=6000, redactor=Redactor()
    )
    system, user = prompt.messages[0]["content"], prompt.messages[1]["content"]
    assert "UNTRUSTED DATA" in system
    assert f"<<<DATA {prompt.nonce}>>>" in system
    blocks = _blocks(user, prompt.nonce)
    assert len(blocks) == 3, "alert, hints, evidence"
    items = [json.loads(line) for line in blocks[2].splitlines()]
    assert [i["id"] for i in items] == [e.id for e in evidence()]
    # The injected text is inside the evidence block, on a JSON line: it cannot open a line
    # of its own, and its fake end marker lacks the nonce.
    outside = re.sub(r"<<<DATA \w+>>>.*?<<<END DATA \w+>>>", "", user, flags=re.DOTALL)
    assert "IGNORE PREVIOUS INSTRUCTIONS" not in outside
    assert "IGNORE PREVIOUS INSTRUCTIONS" in blocks[2]
    assert not any(line.startswith("```") for line in blocks[2].splitlines())
    assert INJECTION not in user, "newlines in the excerpt stay escaped"


def test_rules_findings_go_in_as_hints() -> None:
    prompt = build_prompt(
        context(), evidence(), baseline(), budget_tokens=6000, redactor=Redactor()
    )
    hints = json.loads(_blocks(prompt.messages[1]["content"], prompt.nonce)[1])
    assert hints["category"] == "oom_killed"
    assert hints["confidence"] == 0.9
    assert hints["evidence"] == [f"container/{POD}/checkout"]
    assert "hints" in prompt.messages[1]["content"]


def test_secrets_are_redacted_everywhere_in_the_prompt() -> None:
    token = SECRETS["annotation_token"]
    rules = baseline().model_copy(
        update={"root_cause": f"connect failed with password={SECRETS['db_password']}"}
    )
    prompt = build_prompt(
        context(deploy_note=f"rotated, token: {token}"),
        evidence(with_secrets=True),
        rules,
        budget_tokens=16000,
        redactor=Redactor(),
    )
    text = json.dumps(prompt.messages)
    for name, secret in SECRETS.items():
        assert secret not in text, name
    assert prompt.redactions >= len(SECRETS)


def test_budget_keeps_the_most_diagnostic_items_and_records_the_cut() -> None:
    items = evidence() + [
        EvidenceRef(
            id=f"log/{POD}/checkout#L{i}",
            source="log",
            object=f"pod/shop/{POD}",
            excerpt=f"2024-05-01T10:0{i % 10}:00Z INFO request handled in 12ms " * 12,
        )
        for i in range(40)
    ]
    prompt = build_prompt(context(), items, baseline(), budget_tokens=2000, redactor=Redactor())
    stats = prompt.stats
    assert stats.kept[:3] == [e.id for e in evidence()[:3]]
    assert stats.cut, "40 long log lines do not fit 2000 tokens"
    assert set(stats.kept) | set(stats.cut) == {e.id for e in items}
    assert stats.items_kept + stats.items_cut == len(items)
    assert stats.tokens <= 2000
    total = sum(estimate_tokens(m["content"]) for m in prompt.messages)
    assert stats.tokens == total


def test_deeper_budgets_keep_more() -> None:
    items = [
        EvidenceRef(
            id=f"event/Pod/p{i}/BackOff",
            source="event",
            object=f"pod/shop/p{i}",
            excerpt="Back-off restarting failed container " * 8,
        )
        for i in range(60)
    ]
    kept = [
        build_prompt(
            context(), items, baseline(), budget_tokens=b, redactor=Redactor()
        ).stats.items_kept
        for b in (2000, 6000, 16000)
    ]
    assert kept[0] < kept[1] < kept[2]


def test_one_huge_item_is_cut_short_but_kept_first() -> None:
    huge = EvidenceRef(id="log/big", source="log", object="pod/shop/big", excerpt="x" * 100_000)
    prompt = build_prompt(
        context(), [huge, *evidence()], baseline(), budget_tokens=2000, redactor=Redactor()
    )
    assert prompt.stats.kept[0] == "log/big"
    assert "…[cut]" in prompt.messages[1]["content"]
    assert prompt.stats.tokens < 2000


def test_strict_schema_is_strict_and_matches_the_model() -> None:
    schema = diagnosis_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    fields = {f.alias or n for n, f in Diagnosis.model_fields.items()}
    # the causal chain stays the rules': the model is not asked for it
    assert set(schema["properties"]) == fields - set(RULES_ONLY_FIELDS)
    assert "CauseLink" not in json.dumps(schema)
    assert schema["properties"]["category"]["enum"] == [c.value for c in Category]
    assert "$ref" not in json.dumps(schema)
    assert "maxLength" not in json.dumps(schema)
