"""The analysis pipeline: from an AlertAnalysis to a diagnosis, a status and a report.

Plain asyncio, no kopf: the handlers in :mod:`oncallm.handlers` call :class:`Pipeline`.
"""
