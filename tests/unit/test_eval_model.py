"""make eval-model's printout: the rules alone and the final diagnosis side by side."""

from __future__ import annotations

from oncallm.evaluation.runner import Result, side_by_side, worse_than_rules


def _result(name: str, expected: str, got: str, split: str = "tuned", **kw: object) -> Result:
    return Result(scenario=name, expected=expected, got=got, split=split, **kw)  # type: ignore[arg-type]


def test_side_by_side_scores_both_and_counts_acceptance() -> None:
    rules = [
        _result("reports-oom", "oom_killed", "oom_killed"),
        _result("status-page-unknown", "unknown", "unknown"),
        _result("secret-one", "dns_failure", "dns_failure", split="blind"),
    ]
    final = [
        _result(
            "reports-oom",
            "oom_killed",
            "oom_killed",
            model_outcome="accepted",
            prompt_tokens=3100,
            completion_tokens=300,
            model_calls=1,
            model_seconds=31.5,
        ),
        _result(
            "status-page-unknown",
            "unknown",
            "unknown",
            model_outcome="rejected",
            prompt_tokens=2900,
            completion_tokens=200,
            model_calls=1,
            model_seconds=25.0,
        ),
        _result("secret-one", "dns_failure", "dns_failure", split="blind", model_outcome="invalid"),
    ]
    text = side_by_side(rules, final)
    lines = text.splitlines()
    assert lines[0].split() == ["scenario", "expected", "rules", "ok", "final", "ok", "model"]
    assert "reports-oom" in lines[1] and lines[1].rstrip().endswith("accepted")
    assert "rules kept (rejected)" in lines[2]
    assert "secret-one" not in text, "a hidden split shows no rows"
    assert "blind: final 1/1, rules 1/1, model accepted 0/1" in text
    assert "median 3100 prompt + 300 completion tokens, 31.5 s" in text
    assert lines[-3] == "final diagnosis (with the model): 3/3 correct"
    assert lines[-2] == "rules alone: 3/3 correct"
    assert lines[-1] == "model accepted in 1/3"


def test_a_loss_on_one_scenario_is_not_paid_for_by_a_gain_on_another() -> None:
    rules = [
        _result("reports-oom", "oom_killed", "oom_killed"),
        _result("status-page-unknown", "unknown", "bad_config"),
        _result("secret-one", "dns_failure", "dns_failure", split="blind"),
    ]
    final = [
        _result("reports-oom", "oom_killed", "app_crash_exception", model_outcome="accepted"),
        _result("status-page-unknown", "unknown", "unknown", model_outcome="accepted"),
        _result("secret-one", "dns_failure", "unknown", split="blind", model_outcome="accepted"),
    ]
    assert [r.scenario for r in worse_than_rules(rules, final)] == ["reports-oom", "secret-one"]
    text = side_by_side(rules, final)
    assert "worse than the rules alone on: reports-oom, 1 hidden" in text
    assert "secret-one" not in text, "a hidden scenario is counted, never named"
    assert worse_than_rules(rules, rules) == []
    assert "worse than the rules alone on: none" in side_by_side(rules, rules)
