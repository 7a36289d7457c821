"""Analysis: from gathered evidence to a diagnosis.

- ``evidence``: flattens a :class:`~oncallm.models.evidence.Context` into citable items.
- ``rules``: the built-in rule-based diagnosis (no model needed).
- ``commands``: kubectl command lines with the real object names.
"""

from oncallm.analysis.evidence import EvidenceSettings, build_evidence, index_evidence
from oncallm.analysis.rules import RuleSettings, diagnose, evaluate

__all__ = [
    "EvidenceSettings",
    "RuleSettings",
    "build_evidence",
    "diagnose",
    "evaluate",
    "index_evidence",
]
