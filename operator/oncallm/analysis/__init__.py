"""Analysis: from gathered evidence to a diagnosis.

- ``evidence``: flattens a :class:`~oncallm.models.evidence.Context` into citable items.
- ``rules``: the built-in rule-based diagnosis (no model needed).
- ``commands``: kubectl command lines with the real object names.
- ``baseline``: one analysis' evidence, built once, and the rules' diagnosis over it.
"""

from oncallm.analysis.baseline import Baseline, build_baseline
from oncallm.analysis.evidence import EvidenceSettings, build_evidence, index_evidence
from oncallm.analysis.rules import RuleSettings, diagnose, evaluate

__all__ = [
    "Baseline",
    "EvidenceSettings",
    "RuleSettings",
    "build_baseline",
    "build_evidence",
    "diagnose",
    "evaluate",
    "index_evidence",
]
