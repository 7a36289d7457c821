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


def test_a_sure_citing_right_model_is_refused_only_without_proof(result: Result) -> None:
    # where the rules are unsure, a right model stands unless nothing gathered proves it (how
    # many such scenarios there are falls as the rules get them right: at least one remains)
    assert result.unsure_known >= 1
    for name, note in result.right_refused.items():
        assert note.endswith("and none was gathered."), (name, note)
    # rules unknown at first, the vault agent's login refused (403, permission denied) in its
    # logs: the right answer stands against rules that know nothing
    assert "raven-vault-agent-auth-delegator" in result.provable
    # and so it does in nearly every scenario
    assert len(result.provable) >= 245
