"""Incidents: alerts grouped by the cause they share, so a storm is diagnosed once per cause.

- :mod:`~oncallm.incidents.keys`: a diagnosis' cause as an identity (:class:`CauseKey`), and
  a pod's failure :class:`Signature`;
- :mod:`~oncallm.incidents.registry`: the open incidents, their primary and members;
- :mod:`~oncallm.incidents.members`: what a member gets from its incident, and the members'
  symptoms for the primary's model call.

Pure logic over models; the pipeline (``pipeline/incidents.py``) does the I/O.
"""

from oncallm.incidents.keys import CauseKey, Signature, cause_key, pod_owner, signature
from oncallm.incidents.members import (
    MEMBERS_ID,
    MEMBERS_IN_PROMPT,
    MemberResult,
    describe_failure,
    member_result,
    members_item,
)
from oncallm.incidents.registry import Incident, IncidentRegistry, Outcome, Symptom

__all__ = [
    "MEMBERS_ID",
    "MEMBERS_IN_PROMPT",
    "CauseKey",
    "Incident",
    "IncidentRegistry",
    "MemberResult",
    "Outcome",
    "Signature",
    "Symptom",
    "cause_key",
    "describe_failure",
    "member_result",
    "members_item",
    "pod_owner",
    "signature",
]
