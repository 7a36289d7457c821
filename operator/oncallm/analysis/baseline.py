"""The rules' part of one analysis: the evidence, built once, and the diagnosis over it.

The pipeline and ``oncallm eval`` both come through here, so the rules, the model path and
the report all cite the one :class:`~oncallm.analysis.evidence.EvidenceIndex` built with the
operator's evidence settings; a diagnosis can cite no id that the report does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from oncallm.analysis.evidence import EvidenceIndex, EvidenceSettings, index_evidence
from oncallm.analysis.rules import RuleSettings, diagnose
from oncallm.models.analysis import Diagnosis
from oncallm.models.evidence import Context


@dataclass
class Baseline:
    """The evidence of one analysis and the rules' diagnosis, which cites only its items."""

    evidence: EvidenceIndex
    diagnosis: Diagnosis


def build_baseline(
    ctx: Context,
    evidence_settings: EvidenceSettings | None = None,
    rule_settings: RuleSettings | None = None,
) -> Baseline:
    """Build the evidence once (also kept as ``ctx.evidence``) and diagnose over it."""
    index = index_evidence(ctx, evidence_settings)
    ctx.evidence = index.items
    return Baseline(index, diagnose(ctx, rule_settings, ev=index))
