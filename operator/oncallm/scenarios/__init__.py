"""Failure scenarios: a cluster state, an alert, and what the analysis must find.

The file format is documented in ``docs/scenarios.md``. A scenario is planted on a real
API server (:mod:`oncallm.scenarios.plant`) or loaded into memory
(:func:`oncallm.scenarios.model.memory_reader`) for offline evaluation.
"""

from oncallm.scenarios.model import Scenario, load_scenario, load_scenarios

__all__ = ["Scenario", "load_scenario", "load_scenarios"]
