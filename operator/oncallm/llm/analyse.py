"""The model's analysis of an alert, never worse than the built-in rules.

:func:`analyse_with_model` is what the operator calls once gathering and the rules are done.
It sends the redacted, budgeted prompt, validates the reply against
:class:`~oncallm.models.analysis.Diagnosis` (one corrective retry), grounds it (cited
evidence ids must exist; the rest are dropped and counted) and decides whose result stands.
Whenever the model is off, out of budget, unreachable, invalid or ungrounded, the rules'
result stands and the outcome says why in ``notes``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import annotated_types
from pydantic import BaseModel, Field, ValidationError

from oncallm.llm import metrics
from oncallm.llm.client import Completion, ModelClient, ModelRequestError, ModelUnavailable
from oncallm.llm.judge import judge
from oncallm.llm.prompt import PromptStats, build_prompt, diagnosis_json_schema
from oncallm.llm.tools import TOOL_DEFINITIONS, ToolBackend, ToolRunner
from oncallm.models.analysis import Category, Diagnosis, EvidenceRef, ModelCall, TokenUsage
from oncallm.models.evidence import Context
from oncallm.models.policy import AnalysisPolicy, Depth

log = logging.getLogger(__name__)

#: ``analyzer`` when the rules' result stands.
RULES = "rules"


class ModelOutcome(BaseModel):
    """What the model stage produced, and whose diagnosis stands."""

    diagnosis: Diagnosis
    """The model's diagnosis when accepted (citations grounded), else the rules' result."""
    analyzer: str = RULES
    """The model's name when its diagnosis stands, else ``"rules"``."""
    used_model: bool = False
    """True when the model's diagnosis stands."""
    model: str | None = None
    """The model asked (also when its answer was not used)."""
    outcome: str = "skipped"
    """One word for metrics and logs: accepted, rejected, invalid, runaway, unavailable,
    breaker_open, budget_spent, disabled, unconfigured, error."""
    notes: list[str] = Field(default_factory=list)
    """Sentences for the report: why the model was not used, what was dropped or cut."""
    dropped_claims: int = 0
    """Evidence ids the model cited that match nothing gathered (dropped)."""
    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    """Tokens of every call, also when the answer was not used."""
    calls: list[ModelCall] = Field(default_factory=list)
    """Every call to the model: tokens, seconds, finish reason, whether or not it was used."""
    latency_seconds: float = 0.0
    """Time spent in the model stage, retries and tool calls included."""
    disagreement: bool = False
    """The model named another category than the rules (whoever's stands)."""
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    """What left the cluster and what came back: the exact (redacted) messages sent and the
    raw replies, in order. Bound it with :func:`transcript_json` before storing it."""
    prompt: PromptStats | None = None
    upgrade_pending: bool = False
    """True when the model was unavailable (down, breaker open): re-running the analysis
    later may upgrade the rules' result."""
    redactions: int = 0
    """Secrets taken out of what was sent (prompt and tool results)."""
    tool_calls: int = 0
    tool_evidence: list[EvidenceRef] = Field(default_factory=list)
    """Evidence found by tool calls (ids ``tool/N``), which the diagnosis may cite: add it to
    the analysis's evidence."""


def parse_diagnosis(content: str | None) -> tuple[Diagnosis | None, str]:
    """The reply as a Diagnosis, or None and a short reason the model can act on.

    Lenient where it costs nothing: a fenced ```json block is unwrapped, and strings and
    lists longer than the schema allows are cut to fit rather than rejected.
    """
    if not content or not content.strip():
        return None, "the reply was empty"
    data, problem = extract_json_object(content)
    if data is None:
        return None, problem
    try:
        return Diagnosis.model_validate(_fit_lengths(data)), ""
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:8]
        )
        return None, f"the reply does not match the schema ({problems})"


#: Where a JSON object is looked for in a reply with prose around it, at most this many
#: opening braces are tried (a reply is a few kB; this bounds the work on a pathological one).
MAX_JSON_STARTS = 64


def extract_json_object(content: str) -> tuple[dict[str, Any] | None, str]:
    """The JSON object in a reply: the whole reply, a fenced block, or the first ``{...}``
    that parses inside prose (models without constrained output like to add some).

    Returns the object, or None and a reason the model can act on.
    """
    text = content.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    first_error = ""
    for candidate in candidates:
        try:
            # strict=False: a raw newline inside a string (grammar-constrained servers let
            # one through) is no reason to lose the answer
            data = json.loads(candidate, strict=False)
        except json.JSONDecodeError as exc:
            first_error = first_error or f"the reply is not JSON ({exc.msg} at character {exc.pos})"
            continue
        if isinstance(data, dict):
            return data, ""
        return None, "the reply must be one JSON object"
    decoder = json.JSONDecoder(strict=False)
    start = text.find("{")
    tries = 0
    while start != -1 and tries < MAX_JSON_STARTS:
        tries += 1
        try:
            data, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(data, dict):
            return data, ""
        start = text.find("{", start + 1)
    return None, first_error or "the reply holds no JSON object"


def ground(
    proposed: Diagnosis,
    known_ids: set[str],
    baseline: Diagnosis,
    *,
    confident_rules: float,
) -> tuple[Diagnosis | None, int, str | None]:
    """Check the model's diagnosis against the evidence and the rules.

    Returns (the diagnosis with unknown citations dropped, or None when the rules' result
    must stand; the number of citations dropped; the reason for rejecting, if any).
    """
    cited: list[str] = []
    dropped = 0
    for evidence_id in proposed.evidence:
        if evidence_id in known_ids:
            if evidence_id not in cited:
                cited.append(evidence_id)
        else:
            dropped += 1
    if known_ids and not cited:
        return (
            None,
            dropped,
            "the model cited no evidence that was gathered, so its diagnosis is unproven",
        )
    if (
        proposed.category is Category.UNKNOWN
        and baseline.category is not Category.UNKNOWN
        and baseline.confidence >= confident_rules
    ):
        return (
            None,
            dropped,
            f"the model found no cause while the rules found {baseline.category.value} "
            f"with confidence {baseline.confidence:.2f}",
        )
    return proposed.model_copy(update={"evidence": cited}), dropped, None


async def analyse_with_model(
    ctx: Context,
    evidence: list[EvidenceRef],
    baseline: Diagnosis,
    policy: AnalysisPolicy,
    client: ModelClient | None,
    *,
    tools: ToolBackend | None = None,
) -> ModelOutcome:
    """Ask the model for a diagnosis; return it if it holds, else the rules' ``baseline``.

    ``evidence`` is the gathered evidence, most diagnostic first. ``tools`` enables tool
    calls in ``deep`` analyses (at most ``policy.spec.llm.max_tool_rounds`` rounds). Never
    raises for model trouble: every failure ends in the rules' result with a note.
    """
    if client is None:
        return ModelOutcome(
            diagnosis=baseline,
            outcome="unconfigured",
            notes=[
                "No language model is configured, so the built-in rules made this diagnosis; "
                "set ONCALLM_LLM_BASE_URL or ONCALLM_LLM_API_KEY to add one."
            ],
        )
    run = _Run(ctx, evidence, baseline, policy, client, tools)
    outcome = await run.execute()
    metrics.CALLS.labels(outcome=outcome.outcome).inc()
    if outcome.latency_seconds:
        metrics.LATENCY.observe(outcome.latency_seconds)
    return outcome


class _Run:
    """One analysis's conversation with the model."""

    def __init__(
        self,
        ctx: Context,
        evidence: list[EvidenceRef],
        baseline: Diagnosis,
        policy: AnalysisPolicy,
        client: ModelClient,
        tools: ToolBackend | None,
    ) -> None:
        self.ctx = ctx
        self.evidence = evidence
        self.baseline = baseline
        self.policy = policy
        self.policy_name = policy.name or "(unnamed policy)"
        self.client = client
        self.settings = client.settings
        self.model = policy.spec.llm.model or client.settings.model
        self.depth = policy.spec.depth
        self.max_rounds = policy.spec.llm.max_tool_rounds
        self.use_tools = self.depth is Depth.DEEP and tools is not None and self.max_rounds > 0
        self.backend = tools
        self.usage = TokenUsage()
        self.notes: list[str] = []
        self.tool_evidence: list[EvidenceRef] = []
        self.redactions = 0
        self.tool_calls = 0
        self.calls: list[ModelCall] = []
        self.transcript: list[dict[str, Any]] = []
        #: the conversation as last sent, with the replies (to append only what is new)
        self.transcript_sent: list[dict[str, Any]] = []
        self.disagreement = False
        #: evidence ids the model may cite, in prompt order (tool results are added)
        self.known_ids = [e.id for e in evidence]

    def _rules(
        self, outcome: str, note: str, *, upgrade: bool = False, **extra: Any
    ) -> ModelOutcome:
        return ModelOutcome(
            diagnosis=self.baseline,
            model=self.model,
            outcome=outcome,
            notes=[*self.notes, note],
            token_usage=self.usage,
            upgrade_pending=upgrade,
            redactions=self.redactions,
            tool_calls=self.tool_calls,
            tool_evidence=self.tool_evidence,
            calls=self.calls,
            transcript=self.transcript,
            disagreement=self.disagreement,
            **extra,
        )

    async def execute(self) -> ModelOutcome:
        if not self.policy.spec.llm.enabled:
            return self._rules(
                "disabled",
                f"Policy {self.policy_name} turns the model off (spec.llm.enabled: false); "
                "the built-in rules made this diagnosis.",
            )
        prompt = build_prompt(
            self.ctx,
            self.evidence,
            self.baseline,
            budget_tokens=self.settings.prompt_budget(self.depth),
            redactor=self.client.redactor,
            depth=str(self.depth),
            tools=self.use_tools,
        )
        self.redactions = prompt.redactions
        budget = self.policy.spec.llm.daily_token_budget
        remaining = self.client.ledger.remaining(self.policy_name, budget)
        if remaining < prompt.stats.tokens:
            spent = self.client.ledger.spent(self.policy_name)
            return self._rules(
                "budget_spent",
                f"Policy {self.policy_name} has used its daily token budget ({spent} of "
                f"{budget} tokens today, UTC), so the built-in rules made this diagnosis; "
                "raise spec.llm.dailyTokenBudget to analyse more alerts with the model.",
                prompt=prompt.stats,
            )
        if self.client.breaker.is_open:
            wait = self.client.breaker.seconds_until_retry()
            return self._rules(
                "breaker_open",
                f"The model endpoint {self.client.endpoint} is failing (circuit breaker open "
                f"for {wait:.0f}s more), so the built-in rules made this diagnosis; it will "
                "be upgraded when the endpoint is back.",
                upgrade=True,
                prompt=prompt.stats,
            )
        if prompt.stats.cut:
            self.notes.append(
                f"{len(prompt.stats.cut)} of {len(self.evidence)} evidence items were left out "
                f"of the prompt to fit the {self.depth} budget of {prompt.stats.budget} tokens."
            )
        started = time.monotonic()
        try:
            result = await self._converse(prompt.messages, prompt.nonce)
        except ModelUnavailable as exc:
            result = self._rules(
                "unavailable",
                f"The model was unavailable ({exc}), so the built-in rules made this diagnosis.",
                upgrade=True,
            )
        except ModelRequestError as exc:
            log.warning("Model request refused: %s", exc)
            result = self._rules(
                "error", f"The model could not be used: {exc}. The built-in rules stand."
            )
        finally:
            self.client.ledger.spend(self.policy_name, self.usage.total)
        result.latency_seconds = time.monotonic() - started
        result.prompt = prompt.stats
        result.token_usage = self.usage
        result.calls = self.calls
        result.transcript = self.transcript
        return result

    async def _ask(
        self,
        messages: list[dict[str, Any]],
        *,
        offer_tools: bool,
        max_tokens: int | None = None,
        short: bool = False,
    ) -> Completion:
        # What is sent is recorded before it leaves, so an outage still shows what was tried.
        for message in messages[len(self.transcript_sent) :]:
            self.transcript.append(dict(message))
        self.transcript_sent = list(messages)
        completion = await self.client.complete(
            messages,
            model=self.model,
            tools=TOOL_DEFINITIONS if self.use_tools else None,
            tool_choice=("auto" if offer_tools else "none") if self.use_tools else None,
            schema=diagnosis_json_schema(self.known_ids, short=short),
            max_tokens=max_tokens,
        )
        self.usage = TokenUsage(
            prompt=self.usage.prompt + completion.prompt_tokens,
            completion=self.usage.completion + completion.completion_tokens,
            total=self.usage.total + completion.prompt_tokens + completion.completion_tokens,
        )
        self.calls.append(
            ModelCall(
                model=self.model,
                format=completion.response_format,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                seconds=round(completion.latency_seconds, 3),
                finish_reason=completion.finish_reason,
                attempts=completion.attempts,
            )
        )
        reply: dict[str, Any] = {"role": "assistant", "content": completion.content}
        if completion.message.get("tool_calls"):
            reply["tool_calls"] = completion.message["tool_calls"]
        if completion.finish_reason:
            reply["finish_reason"] = completion.finish_reason
        self.transcript.append(reply)
        self.transcript_sent.append(reply)
        return completion

    async def _converse(self, messages: list[dict[str, Any]], nonce: str) -> ModelOutcome:
        conversation = list(messages)
        known = {e.id for e in self.evidence}
        runner = (
            ToolRunner(
                self.backend,
                self.client.redactor,
                nonce,
                max_chars=self.settings.max_tool_result_chars,
            )
            if self.use_tools and self.backend is not None
            else None
        )
        rounds = 0
        refused_rounds = 0
        corrected = False
        shortened = False
        max_tokens: int | None = None
        while True:
            completion = await self._ask(
                conversation,
                offer_tools=rounds < self.max_rounds,
                max_tokens=max_tokens,
                short=shortened,
            )
            if completion.finish_reason == "length" and not completion.tool_calls:
                cap = max_tokens or self.settings.max_output_tokens
                if shortened:
                    return self._rules(
                        "runaway",
                        f"The model {self.model} ran past its token cap twice ({cap} tokens "
                        "the second time) and its reply was dropped; the built-in rules stand.",
                    )
                # A runaway reply (a loop, an endless list) is asked for once more, shorter:
                # under half the cap and in the short form (the deciding fields only, which a
                # constrained server then allows alone).
                shortened = True
                max_tokens = max(64, cap // 2)
                cut = (completion.content or "")[:400]
                conversation.append({"role": "assistant", "content": cut})
                conversation.append(
                    {
                        "role": "user",
                        "content": f"Your reply ran past {cap} tokens and was cut off. Reply "
                        "again with a much shorter JSON object holding only category, "
                        "evidence, confidence, a one-sentence summary and a one-sentence "
                        "rootCause.",
                    }
                )
                continue
            if completion.tool_calls and runner is not None:
                conversation.append(completion.message)
                if rounds >= self.max_rounds:
                    # Out of rounds: refuse once and ask for the answer; a model that still
                    # insists gets no more turns.
                    refused_rounds += 1
                    if refused_rounds > 1:
                        return self._rules(
                            "invalid",
                            f"The model {self.model} kept calling tools after its "
                            f"{self.max_rounds} rounds (spec.llm.maxToolRounds) and gave no "
                            "diagnosis; the built-in rules stand.",
                        )
                    for call in completion.tool_calls:
                        result = runner.refuse(call, "no tool rounds left; reply with the JSON")
                        conversation.append(result.message)
                    continue
                rounds += 1
                for index, call in enumerate(completion.tool_calls):
                    if index >= self.settings.max_tool_calls_per_round:
                        result = runner.refuse(
                            call,
                            f"at most {self.settings.max_tool_calls_per_round} calls per round",
                        )
                    else:
                        result = await runner.run(call)
                    self.tool_calls = runner.calls
                    self.redactions += result.redactions
                    if result.evidence is not None:
                        known.add(result.evidence.id)
                        self.known_ids.append(result.evidence.id)
                        self.tool_evidence.append(result.evidence)
                    conversation.append(result.message)
                continue
            proposed, problem = parse_diagnosis(completion.content)
            if proposed is None:
                if corrected:
                    return self._rules(
                        "invalid",
                        f"The model {self.model} replied with an invalid diagnosis twice "
                        f"({problem}); the built-in rules stand.",
                    )
                corrected = True
                conversation.append({"role": "assistant", "content": completion.content or ""})
                conversation.append(
                    {
                        "role": "user",
                        "content": f"That reply cannot be used: {problem}. Reply again with "
                        "only the JSON object described in the instructions.",
                    }
                )
                continue
            return self._judge(proposed, known)

    def _judge(self, proposed: Diagnosis, known: set[str]) -> ModelOutcome:
        accepted, dropped, reason = ground(
            proposed,
            known,
            self.baseline,
            confident_rules=self.settings.confident_rules_threshold,
        )
        if dropped:
            self.notes.append(
                f"{dropped} evidence citation(s) by the model matched nothing gathered and "
                "were dropped."
            )
        if accepted is None:
            outcome = self._rules(
                "rejected", f"The model's answer was not used: {reason}; the rules stand."
            )
            outcome.dropped_claims = dropped
            return outcome
        verdict = judge(
            accepted,
            self.baseline,
            [*self.evidence, *self.tool_evidence],
            confident_rules=self.settings.confident_rules_threshold,
        )
        if verdict.disagreement:
            self.disagreement = True
            metrics.DISAGREEMENTS.labels(kept="model" if verdict.accept else "rules").inc()
        if not verdict.accept:
            outcome = self._rules("rejected", verdict.note or "The rules stand.")
            outcome.dropped_claims = dropped
            return outcome
        if verdict.note:
            self.notes.append(verdict.note)
        if accepted.category == self.baseline.category:
            # The model agrees on the cause: its text leads, and nothing the rules proved is
            # lost (never worse): their chain, secondary causes and citations stay, and their
            # own finding is kept as a note.
            cited = list(dict.fromkeys([*self.baseline.evidence, *accepted.evidence]))
            accepted = accepted.model_copy(
                update={
                    "chain": accepted.chain or self.baseline.chain,
                    "secondary": accepted.secondary or self.baseline.secondary,
                    "evidence": cited[: _evidence_limit()],
                }
            )
            self.notes.append(
                f"The built-in rules found the same cause ({self.baseline.category.value}, "
                f"confidence {self.baseline.confidence:.2f}): {self.baseline.root_cause}"
            )
        return ModelOutcome(
            diagnosis=accepted,
            analyzer=self.model,
            used_model=True,
            model=self.model,
            outcome="accepted",
            notes=self.notes,
            dropped_claims=dropped,
            token_usage=self.usage,
            redactions=self.redactions,
            tool_calls=self.tool_calls,
            tool_evidence=self.tool_evidence,
            calls=self.calls,
            transcript=self.transcript,
            disagreement=self.disagreement,
        )


def transcript_json(transcript: list[dict[str, Any]], max_bytes: int) -> str:
    """The transcript as indented JSON of at most ``max_bytes`` (UTF-8).

    Each message keeps its start; the longest contents are cut first (marked ``…[cut N
    chars]``) until the whole fits, so every message still shows who said what.
    """
    messages = [dict(m) for m in transcript]

    def dump() -> str:
        return json.dumps({"messages": messages}, ensure_ascii=False, indent=1)

    text = dump()
    while len(text.encode()) > max_bytes:
        sizes = [len(str(m.get("content") or "")) for m in messages]
        if not sizes or max(sizes) <= 200:
            return text.encode()[:max_bytes].decode(errors="ignore")
        index = sizes.index(max(sizes))
        content = str(messages[index]["content"])
        excess = len(text.encode()) - max_bytes
        keep = max(200, len(content) - excess - 64)
        messages[index]["content"] = content[:keep] + f" …[cut {len(content) - keep} chars]"
        text = dump()
    return text


def _evidence_limit() -> int:
    """How many evidence ids a Diagnosis holds."""
    info = Diagnosis.model_fields["evidence"]
    return next((m.max_length for m in info.metadata if isinstance(m, annotated_types.MaxLen)), 20)


def _fit_lengths(data: dict[str, Any]) -> dict[str, Any]:
    """Cut strings and lists that exceed Diagnosis's limits (by field name or alias), and
    bring a confidence given in percent (86 for 0.86) or past the ends into 0..1: the
    grammar-friendly schema leaves both unchecked until here."""
    out = dict(data)
    confidence = out.get("confidence")
    if isinstance(confidence, int | float) and not isinstance(confidence, bool):
        if 1 < confidence <= 100:
            confidence = confidence / 100
        out["confidence"] = min(1.0, max(0.0, float(confidence)))
    for name, info in Diagnosis.model_fields.items():
        limit = next(
            (m.max_length for m in info.metadata if isinstance(m, annotated_types.MaxLen)), None
        )
        if limit is None:
            continue
        for key in {name, info.alias or name}:
            value = out.get(key)
            if isinstance(value, str | list) and len(value) > limit:
                out[key] = value[:limit]
    return out
