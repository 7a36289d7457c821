"""Intake: Alertmanager's webhook, one AlertAnalysis per alert, nothing lost."""
