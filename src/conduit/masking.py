"""Passwords kept out of messages and logs: one masker for every form of store URL.

:func:`mask_password` shows a store URL, or a libpq ``key=value`` connection
string, with each password replaced by ``***``: in the userinfo
(``postgresql://user:secret@host/db``, multi-host URLs included), in a query
parameter (``?password=secret``, ``&sslpassword=…``) and in a connection
string (``host=db password=secret``, ``password='quoted secret'``).

The reading is deliberately wider than libpq's, because showing a little too
little beats showing a password: a password written without percent-encoding
may hold ``@``, ``/``, ``:`` or ``?`` and is still hidden whole, and any key
that ends in ``password`` counts. It never raises, whatever the text.

:func:`hide_passwords` removes those passwords from other text, such as a
driver's message that quotes part of the URL it was given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["MASK", "hide_passwords", "mask_password"]

MASK = "***"
"""What a password is shown as."""

_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*:(/+)")
_SPACE = " \t\n\r\f\v"  # libpq's isspace(), in the C locale
_PARAMETER = re.compile(r"[?&]([A-Za-z_]+)=[^?&@]*\Z")  # an "@" inside a query value
_KNOWN = """
host hostaddr port dbname user password passfile require_auth channel_binding connect_timeout
client_encoding options application_name fallback_application_name keepalives keepalives_idle
keepalives_interval keepalives_count tcp_user_timeout replication gssencmode sslmode requiressl
sslnegotiation sslcompression sslcert sslkey sslkeylogfile sslpassword sslcertmode sslrootcert
sslcrl sslcrldir sslsni requirepeer ssl_min_protocol_version ssl_max_protocol_version krbsrvname
gsslib gssdelegation service target_session_attrs load_balance_hosts
schema pool_size pool_timeout statement_timeout lock_timeout read_your_writes_timeout notify
synchronous busy_timeout create read_only
"""
_PARAMETERS = frozenset(_KNOWN.split())  # libpq's connection parameters, and Conduit's options
_SHORTEST = 3  # what hide_passwords removes from text: shorter is too common


def mask_password(url: str) -> str:
    """The URL or connection string with every password shown as ``***``.

    Text that holds no password (``sqlite:///events.db``, ``memory://``)
    comes back unchanged.
    """
    shown = []
    start = 0
    for begin, end in _secret_spans(url):
        shown.append(url[start:begin])
        shown.append(MASK)
        start = end
    shown.append(url[start:])
    return "".join(shown)


def hide_passwords(text: str, urls: Iterable[str]) -> str:
    """``text`` without the passwords of ``urls``, each shown as ``***``.

    For messages that were not built with :func:`mask_password`: a driver's
    error quoting the part of the URL it could not parse. Each password is
    removed as written and decoded, and so are the pieces a parser may have
    taken for a host or a port (split at ``@`` and ``/``). Only texts of at
    least three characters are removed: shorter ones would also remove parts
    of ordinary words, and such a password is no secret anyway.
    """
    secrets: set[str] = set()
    for url in urls:
        for begin, end in _secret_spans(url):
            secrets.update(_forms(url[begin:end]))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _forms(raw: str) -> set[str]:
    """The ways a password may appear in a message: as written, decoded, in pieces."""
    forms = {raw, unquote(raw), _unescape(raw), *re.split(r"[@/]", raw)}
    return {form for form in forms if len(form) >= _SHORTEST}


def _unescape(value: str) -> str:
    """A connection-string value without its quotes and backslash escapes."""
    if value.startswith("'"):
        value = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
    return re.sub(r"\\(.)", r"\1", value)


def _is_secret(key: str) -> bool:
    return unquote(key).strip(_SPACE).lower().endswith("password")


def _secret_spans(text: str) -> list[tuple[int, int]]:
    """Where the passwords are in ``text``: (begin, end) pairs, in order, not empty."""
    scheme = _URL.match(text)
    if scheme is None:
        return _conninfo_spans(text, 0)
    spans = []
    rest = scheme.end()
    # scheme://authority…, or scheme:/authority… (one slash forgotten); three
    # slashes or more (sqlite:///path, postgresql:///db?host=…) mean no authority.
    userinfo = _password_in_userinfo(text, rest) if len(scheme.group(1)) <= 2 else None
    if userinfo is not None:
        spans.append(userinfo)
        rest = userinfo[1]
    query = text.find("?", rest)
    if query >= 0:
        spans.extend(_query_spans(text, query + 1))
    return spans


def _password_in_userinfo(text: str, start: int) -> tuple[int, int] | None:
    """The password of ``scheme://user:password@host…``, whose authority begins at ``start``.

    The userinfo ends at the last ``@`` that is not inside the value of a
    known query parameter (``application_name=a@b``): so a password written
    with ``@``, ``/`` or ``?`` unencoded is hidden whole.
    """
    at = len(text)
    while True:
        at = text.rfind("@", start, at)
        if at < 0:
            return None
        parameter = _PARAMETER.search(text, start, at)
        if parameter is None or parameter.group(1).lower() not in _PARAMETERS:
            break
    colon = text.find(":", start, at)
    if colon < 0 or colon + 1 == at:
        return None
    return colon + 1, at


def _query_spans(text: str, start: int) -> list[tuple[int, int]]:
    """The values of password parameters in the query string beginning at ``start``."""
    spans = []
    position = start
    for item in text[start:].split("&"):
        key, equals, value = item.partition("=")
        if equals and value and _is_secret(key):
            begin = position + len(key) + 1
            spans.append((begin, begin + len(value)))
        position += len(item) + 1
    return spans


def _conninfo_spans(text: str, start: int) -> list[tuple[int, int]]:
    """The password values of a libpq connection string: ``key = value`` pairs.

    A value is quoted (``'…'``, with backslash escapes) or runs to the next
    space. Text that is not ``key = value`` is skipped a word at a time.
    """
    spans = []
    n = len(text)
    i = start
    while i < n:
        while i < n and text[i] in _SPACE:
            i += 1
        key_start = i
        while i < n and text[i] != "=" and text[i] not in _SPACE:
            i += 1
        key = text[key_start:i]
        j = i
        while j < n and text[j] in _SPACE:
            j += 1
        if j >= n or text[j] != "=":
            continue  # a word that is no key: go on after it
        j += 1
        while j < n and text[j] in _SPACE:
            j += 1
        value_start = j
        if j < n and text[j] == "'":
            j += 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
        else:
            while j < n and text[j] not in _SPACE:
                j += 2 if text[j] == "\\" else 1
            j = min(j, n)
        if j > value_start and _is_secret(key):
            spans.append((value_start, j))
        i = j
    return spans
