"""kopf handlers: thin, typed, each a few lines over :mod:`oncallm.pipeline`.

Importing this package registers every handler with kopf.
"""

from oncallm.handlers import alertanalysis, policy, startup

__all__ = ["alertanalysis", "policy", "startup"]
