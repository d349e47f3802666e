"""Who may read the timeline pages: one shared access token, ``IRBOT_WEB_TOKEN``.

A client shows it as ``Authorization: Bearer <token>``; a browser logs in once through
``POST /login`` and then carries a session cookie (HttpOnly, SameSite=Strict, Secure on
https). The cookie holds ``v1.<expiry>.<HMAC-SHA256(token, expiry)>``, not the token:
a stolen cookie stops working at its expiry or when the token is rotated, and never
reveals the token. Comparisons are constant-time. Without a token configured the pages
are closed (503), never open. For per-person sign-in, put the pages behind an OAuth
proxy (README, "Timeline pages").
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from enum import Enum

from pydantic import SecretStr

COOKIE = "irbot_session"
SESSION_HOURS = 12
SESSION_SECONDS = SESSION_HOURS * 3600
_VERSION = "v1"


class Verdict(Enum):
    """What a request's credentials amount to."""

    OK = "ok"
    DISABLED = "disabled"
    """No IRBOT_WEB_TOKEN: the pages are closed."""
    MISSING = "missing"
    WRONG = "wrong"
    EXPIRED = "expired"
    """A session cookie that was valid once (expired, or the token changed since)."""


@dataclass(frozen=True)
class WebAuth:
    """Checks tokens and session cookies against ``IRBOT_WEB_TOKEN``."""

    token: SecretStr | None

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def _key(self) -> bytes:
        assert self.token is not None
        return self.token.get_secret_value().encode()

    def token_matches(self, candidate: str) -> bool:
        """Constant-time comparison of a presented token with the configured one."""
        if self.token is None:
            return False
        return hmac.compare_digest(candidate.encode(), self._key())

    def session_cookie(self, now: float | None = None) -> str:
        """A fresh cookie value, good for :data:`SESSION_SECONDS`."""
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        return f"{_VERSION}.{expires}.{self._sign(expires)}"

    def _sign(self, expires: int) -> str:
        message = f"irbot-web-session:{_VERSION}:{expires}".encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def check_cookie(self, value: str, now: float | None = None) -> Verdict:
        if self.token is None:
            return Verdict.DISABLED
        version, _, rest = value.partition(".")
        stamp, _, signature = rest.partition(".")
        if version != _VERSION or not stamp.isdigit() or len(stamp) > 12:
            return Verdict.WRONG
        if not hmac.compare_digest(signature.encode(), self._sign(int(stamp)).encode()):
            return Verdict.EXPIRED  # signed with another token (rotated) or forged
        if int(stamp) <= (time.time() if now is None else now):
            return Verdict.EXPIRED
        return Verdict.OK

    def check(self, authorization: str | None, cookie: str | None) -> Verdict:
        """The verdict for a request's ``Authorization`` header and session cookie; a
        Bearer header, when present, decides alone."""
        if self.token is None:
            return Verdict.DISABLED
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                return Verdict.WRONG
            return Verdict.OK if self.token_matches(credentials.strip()) else Verdict.WRONG
        if cookie:
            return self.check_cookie(cookie)
        return Verdict.MISSING


def safe_next(value: str | None, default: str = "/incidents") -> str:
    """Where to go after login: only a path on this site (no ``//host``, no scheme)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 for c in value)
    ):
        return default
    return value
