"""Who may read the web view: a bearer token, basic-auth users, or anyone when neither is set.

Every comparison is constant-time over SHA-256 digests, so neither the content nor the length
of a secret leaks through response times; every configured user is checked on every attempt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from oncallm.web.settings import WebSettings


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class Authenticator:
    """Checks an ``Authorization`` header against the configured token and users."""

    def __init__(self, settings: WebSettings) -> None:
        self._token = _digest(settings.token) if settings.token else None
        self._users = [(_digest(u), _digest(p)) for u, p in settings.basic_auth.items()]
        self.required = settings.auth_required

    def allows(self, authorization: str | None) -> bool:
        """True when no auth is configured, or the header carries a valid credential.

        Accepted: ``Bearer <token>``; ``Basic`` with a configured user and password; ``Basic``
        with the token as password (any user name), so a browser's login prompt works with
        the token too.
        """
        if not self.required:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer":
            return self._token_matches(credentials)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            if not sep:
                return False
            return self._user_matches(user, password) | self._token_matches(password)
        return False

    def _token_matches(self, presented: str) -> bool:
        if self._token is None:
            return False
        return hmac.compare_digest(_digest(presented), self._token)

    def _user_matches(self, user: str, password: str) -> bool:
        user_digest, password_digest = _digest(user), _digest(password)
        ok = False
        for expected_user, expected_password in self._users:
            # No short-circuit: the time taken does not depend on which part matched.
            user_ok = hmac.compare_digest(user_digest, expected_user)
            password_ok = hmac.compare_digest(password_digest, expected_password)
            ok |= user_ok & password_ok
        return ok

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value: Basic, so browsers show a login prompt."""
        return 'Basic realm="OnCallM", charset="UTF-8"'
