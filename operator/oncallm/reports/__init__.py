"""Reports: an analysis rendered as ``report.md`` and ``report.html`` for its ConfigMap.

:func:`render_report` is the entry point; :mod:`oncallm.reports.present` holds the
words-and-links helpers the web view shares.
"""

from oncallm.reports.render import (
    DEFAULT_MAX_REPORT_BYTES,
    MIN_REPORT_BYTES,
    REPORT_HTML,
    REPORT_MD,
    ReportSettings,
    render_report,
)

__all__ = [
    "DEFAULT_MAX_REPORT_BYTES",
    "MIN_REPORT_BYTES",
    "REPORT_HTML",
    "REPORT_MD",
    "ReportSettings",
    "render_report",
]
