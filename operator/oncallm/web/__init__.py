"""The in-cluster web view of analyses, served by the sidecar (aiohttp + jinja2).

:func:`add_web_routes` adds the pages and the read-only JSON API to the sidecar's app;
:func:`report_url` builds the link to one analysis's page for notifications and statuses.
"""

from oncallm.web.routes import add_web_routes
from oncallm.web.settings import WebSettings, WebSettingsError
from oncallm.web.views import report_url

__all__ = ["WebSettings", "WebSettingsError", "add_web_routes", "report_url"]
