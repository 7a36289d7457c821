"""The judge against a sure, citing adversary on every visible scenario.

``tests/judge_adversary.py`` gathers each (tuned and corpus, never blind) in memory.

Where the rules are unsure, the judge is the only guard, and SmolLM2 seldom tests it (it
copies the rules' hinted category). A model that is sure and cites one item proving a wrong
category must replace no unsure and right rules; a model that is right must still stand.
"""

from __future__ import annotations

import pytest

from tests.judge_adversary import Result, measure


@pytest.fixture(scope="module")
def result() -> Result:
    return measure()


def test_a_sure_citing_wrong_model_replaces_no_unsure_right_rules(result: Result) -> None:
    assert result.unsure_right >= 17
    assert result.replaced == {}


def test_a_sure_citing_right_model_still_replaces_unsure_rules(result: Result) -> None:
    # rules unknown, the vault agent's login refused (403, permission denied) in its logs
    assert "raven-vault-agent-auth-delegator" in result.right_accepted
    # what the right model would prove against rules that know nothing: nearly every scenario
    assert len(result.provable) >= 245
