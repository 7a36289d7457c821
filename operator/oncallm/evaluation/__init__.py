"""Run OnCallM on scenarios: ``oncallm eval`` (scored) and ``oncallm demo`` (shown)."""
