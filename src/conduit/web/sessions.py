"""Browser sessions: signed cookies that expire, and a logout that ends them.

A session cookie is ``<expires>.<session id>.<signature>``: when it ends (Unix
seconds), a random id, and an HMAC-SHA256 of both under a key that only this
server knows. The key is derived from a secret and the token:

- the secret is random, made when the application is created, unless
  ``create_app(session_secret=…)`` gives one: a restart ends every session;
- the token is part of the key: serving with another token ends them too.

The cookie itself holds neither the token nor the key, and a signature that
does not match, an expiry in the past or a changed expiry is refused. Logging
out ends the session on the server (its id is remembered until it would have
expired), not only in the browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_MAX_AGE", "MAX_ENDED", "Sessions", "parse_cookie", "sign"]

DEFAULT_MAX_AGE = 12 * 3600
"""Seconds a login lasts by default: a working day."""

MAX_ENDED = 10_000
"""Ended sessions remembered at most; past that, every session ends (the key changes)."""

_KEY_CONTEXT = b"conduit browser session v2\x00"


def sign(key: bytes, expires: int, session_id: str) -> str:
    """The signature of a session: hex HMAC-SHA256 of its expiry and id."""
    return hmac.new(key, f"{expires}.{session_id}".encode(), hashlib.sha256).hexdigest()


def parse_cookie(value: str) -> tuple[int, str, str] | None:
    """``(expires, session id, signature)`` of a cookie's value, or ``None`` if malformed."""
    parts = value.split(".")
    if len(parts) != 3 or len(value) > 200:
        return None
    expires, session_id, signature = parts
    if not (expires.isascii() and expires.isdigit()) or not session_id or not signature:
        return None
    return int(expires), session_id, signature


class Sessions:
    """Issues, checks and ends the session cookies of one application.

    Args:
        token: the server's token, part of the signing key.
        max_age: seconds a session lasts from the login.
        secret: the secret of the signing key; ``None`` for a random one.
        clock: the time in Unix seconds (tests move it).
    """

    def __init__(
        self,
        token: str,
        *,
        max_age: int = DEFAULT_MAX_AGE,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age = max_age
        self.clock = clock
        self._token = token.encode()
        self._lock = threading.Lock()
        self._ended: dict[str, int] = {}
        self._key = self._derive(secrets.token_bytes(32) if secret is None else secret)

    def _derive(self, secret: bytes) -> bytes:
        return hmac.new(secret, _KEY_CONTEXT + self._token, hashlib.sha256).digest()

    def issue(self) -> str:
        """A new session's cookie value, valid for :attr:`max_age` seconds."""
        expires = int(self.clock()) + self.max_age
        session_id = secrets.token_urlsafe(16)
        return f"{expires}.{session_id}.{sign(self._key, expires, session_id)}"

    def valid(self, value: str) -> bool:
        """Whether a cookie's value is a session of this server that has not ended."""
        parsed = parse_cookie(value)
        if parsed is None:
            return False
        expires, session_id, signature = parsed
        with self._lock:
            key = self._key
            ended = session_id in self._ended
        if not hmac.compare_digest(sign(key, expires, session_id), signature):
            return False
        return not ended and self.clock() < expires

    def end(self, value: str) -> None:
        """End the session of a cookie's value (logging out); others go on."""
        if not self.valid(value):
            return
        parsed = parse_cookie(value)
        assert parsed is not None
        expires, session_id, _ = parsed
        now = self.clock()
        with self._lock:
            self._ended = {sid: at for sid, at in self._ended.items() if at > now}
            if len(self._ended) >= MAX_ENDED:
                # Remembering more would grow without bound: end them all instead.
                self._key = self._derive(secrets.token_bytes(32))
                self._ended = {}
                return
            self._ended[session_id] = expires
