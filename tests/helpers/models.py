"""Scripted behaviours of the local OpenAI-compatible server for end-to-end tests."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.openai_server import Reply, json_reply

_BLOCK = re.compile(r"<<<DATA (\w+)>>>\n```json\n(.*?)\n```\n<<<END DATA \1>>>", re.S)


def data_blocks(body: dict[str, Any]) -> list[str]:
    """The data blocks of a chat request's user message, in order."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return [m.group(2) for m in _BLOCK.finditer(user)]


def agreeing_model(body: dict[str, Any]) -> Reply:
    """A model that reads the evidence, agrees with the rules' hints, and writes its own text.

    It cites only ids present in the evidence block, as a well-behaved model does.
    """
    blocks = data_blocks(body)
    hints = json.loads(blocks[1])
    evidence_ids = [json.loads(line)["id"] for line in blocks[2].splitlines() if line.strip()]
    cited = [i for i in hints.get("evidence", []) if i in evidence_ids] or evidence_ids[:2]
    return json_reply(
        {
            "category": hints["category"],
            "summary": "Model: " + hints["summary"],
            "rootCause": hints["rootCause"],
            "confidence": 0.93,
            "impact": "The alerted workload is degraded.",
            "immediateActions": ["Confirm the cause with the commands below."],
            "recommendations": ["Alert on the cause, not only the symptom."],
            "evidence": cited,
            "commands": [],
        }
    )
