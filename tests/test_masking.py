"""One password masker for every form of store URL that libpq takes, and for free text."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conduit.backends.url import mask_password as mask_password_of_url_module
from conduit.masking import hide_passwords, mask_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgres://app:s3cret@db/app", "postgres://app:***@db/app"),
        ("postgresql://app:p@ss@db/app", "postgresql://app:***@db/app"),
        ("postgresql://app:pa/ss@db/app", "postgresql://app:***@db/app"),
        ("postgresql://app:pa:ss@db/app", "postgresql://app:***@db/app"),
        ("postgresql://app:p%40s%2Fs@db/app", "postgresql://app:***@db/app"),
        ("postgresql://app:pa?ss@db/app", "postgresql://app:***@db/app"),
        ("postgresql://app:s3cret@h1:5432,h2:5433/app", "postgresql://app:***@h1:5432,h2:5433/app"),
        ("postgresql://app@db/app?password=s3cret", "postgresql://app@db/app?password=***"),
        (
            "postgresql://app@db/app?sslmode=require&password=s3cret&schema=x",
            "postgresql://app@db/app?sslmode=require&password=***&schema=x",
        ),
        ("postgresql://app@db/app?sslpassword=s3cret", "postgresql://app@db/app?sslpassword=***"),
        ("postgresql://app@db/app?pass%77ord=s3cret", "postgresql://app@db/app?pass%77ord=***"),
        (
            "postgresql:///app?host=/run/pg&password=s3cret",
            "postgresql:///app?host=/run/pg&password=***",
        ),
        (
            "postgresql://app:one@db/app?password=two&application_name=a@b",
            "postgresql://app:***@db/app?password=***&application_name=a@b",
        ),
        ("host=db password=s3cret dbname=app", "host=db password=*** dbname=app"),
        ("host=db password = s3cret", "host=db password = ***"),
        ("host=db password='quoted s3cret' port=5432", "host=db password=*** port=5432"),
        ("password='it\\'s s3cret' host=db", "password=*** host=db"),
        ("password='never closed", "password=***"),
        ("host=db sslpassword=s3cret", "host=db sslpassword=***"),
        ("postgresql://app@db/app?schema=x", "postgresql://app@db/app?schema=x"),
        ("postgresql://app@h1,h2/app", "postgresql://app@h1,h2/app"),
        ("postgresql://app:@db/app", "postgresql://app:@db/app"),
        ("sqlite:///events.db", "sqlite:///events.db"),
        (
            "sqlite:////var/lib/app/events.db?busy_timeout=5",
            "sqlite:////var/lib/app/events.db?busy_timeout=5",
        ),
        ("sqlite:///odd:name@here.db", "sqlite:///odd:name@here.db"),
        ("memory://", "memory://"),
        ("host=db dbname=app", "host=db dbname=app"),
        ("", ""),
        ("not a url", "not a url"),
    ],
)
def test_mask_password_hides_every_form_of_password(url: str, shown: str) -> None:
    assert mask_password(url) == shown


def test_the_url_module_masks_with_the_same_masker() -> None:
    assert mask_password_of_url_module is mask_password


# -- properties --------------------------------------------------------------

# Passwords as people write them: any text, percent-encoded in URLs as libpq
# wants it; and, written raw, with the characters people forget to encode.
passwords = st.text(min_size=1, max_size=30)
raw_passwords = st.text(
    alphabet=st.sampled_from("abcXYZ019@/:?!$&'()*+,;=%-._~#[] "), min_size=1, max_size=30
).filter(lambda p: p.strip() == p and " " not in p)
hosts = st.sampled_from(["db", "db.example.com:5432", "h1:5432,h2:5433", "[::1]:5432"])
queries = st.sampled_from(["", "?sslmode=require", "?schema=app&pool_size=3"])


def url_forms(password: str) -> list[str]:
    """The same password in every form of connection URL and string."""
    encoded = quote(password, safe="")
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return [
        f"postgresql://app:{encoded}@db.example.com:5432/app?sslmode=require",
        f"postgresql://app:{encoded}@h1:5432,h2:5433/app",
        f"postgresql://app@db/app?password={encoded}",
        f"postgresql://app@db/app?sslmode=require&password={encoded}&schema=x",
        f"postgresql:///app?host=/run/pg&password={encoded}",
        f"host=db password={quoted} dbname=app",
        f"host=db password = {quoted}",
    ]


def assert_hidden(masked: str, password: str, same_without: str) -> None:
    """The password is gone: the output is what it is for another password."""
    assert masked == same_without
    if password not in same_without:
        assert password not in masked


@given(password=passwords)
@example(password="p@ss/w:rd%")
@example(password="it's a 'secret'")
def test_no_password_survives_masking_in_any_url_form(password: str) -> None:
    for url, other in zip(url_forms(password), url_forms("OTHER"), strict=True):
        assert_hidden(mask_password(url), password, mask_password(other))


@given(password=raw_passwords, host=hosts, query=queries)
@example(password="p@ss", host="db", query="")
@example(password="a/b@c?d", host="db", query="?sslmode=require")
@example(password="a@b?c", host="db", query="?sslmode=require")
@example(password="a?b=c", host="db", query="")
def test_a_password_written_without_encoding_is_still_hidden(
    password: str, host: str, query: str
) -> None:
    url = f"postgresql://app:{password}@{host}/app{query}"
    masked = mask_password(url)
    assert masked == f"postgresql://app:***@{host}/app{query}"


@given(text=st.text())
def test_mask_password_takes_any_text_without_raising(text: str) -> None:
    assert isinstance(mask_password(text), str)
    assert isinstance(hide_passwords(text, [text]), str)


@given(password=st.text(min_size=3, max_size=30).filter(lambda p: "*" not in p))
def test_hide_passwords_removes_a_password_quoted_by_a_driver(password: str) -> None:
    url = f"postgresql://app@db/app?password={quote(password, safe='')}"
    message = f'invalid connection option: "{password}" near "{quote(password, safe="")}"'
    assert password not in hide_passwords(message, [url])


# -- free text ---------------------------------------------------------------


def test_hide_passwords_removes_what_libpq_quotes_of_a_bad_url() -> None:
    # libpq ends the userinfo at the first "@" and reports the rest as a host,
    # and quotes a bad percent-encoding: neither may show the password.
    urls = ["postgresql://app:sec@ret@127.0.0.1/app", "postgresql://app:s%zzecret@db/app"]
    message = (
        "failed to resolve host 'ret@127.0.0.1'; "
        'invalid percent-encoded token: "s%zzecret"; cannot open store '
        "'postgresql://app:***@127.0.0.1/app'"
    )
    shown = hide_passwords(message, urls)
    assert "ret@" not in shown
    assert "zzecret" not in shown
    assert "cannot open store 'postgresql://app:***@127.0.0.1/app'" in shown


def test_hide_passwords_leaves_text_alone_when_the_urls_have_no_password() -> None:
    message = "cannot open store 'sqlite:///events.db': no such file"
    assert hide_passwords(message, ["sqlite:///events.db", "push", "--json"]) == message
