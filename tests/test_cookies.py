"""The Cookie value type and CookiePolicy: every rule refused with its code, serialization."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.config import Settings
from tessera.cookies import Cookie, CookiePolicy
from tessera.errors import CookieError, CookieTooLarge

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')


def refused(code: str, **kwargs: Any) -> None:
    with pytest.raises(CookieError) as info:
        Cookie(**kwargs)
    assert info.value.code == code


# --- serialization -------------------------------------------------------------------------


def test_defaults_are_secure() -> None:
    assert Cookie("sid", "abc").serialize() == "sid=abc; Path=/; Secure; HttpOnly; SameSite=Lax"


def test_every_attribute_serialized_in_order() -> None:
    cookie = Cookie(
        "__Secure-id",
        "v",
        max_age=3600,
        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        domain="example.org",
        path="/app",
        same_site="None",
        partitioned=True,
    )
    assert cookie.serialize() == (
        "__Secure-id=v; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Max-Age=3600; "
        "Domain=example.org; Path=/app; Secure; HttpOnly; SameSite=None; Partitioned"
    )


def test_expires_from_epoch_float_and_other_timezone_is_imf_fixdate_in_gmt() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert "Expires=Thu, 01 Jan 1970 00:00:10 GMT" in Cookie("a", "b", expires=10.5).serialize()
    assert (
        "Expires=Sun, 31 Dec 2000 22:00:00 GMT"
        in Cookie("a", "b", expires=datetime(2001, 1, 1, tzinfo=plus2)).serialize()
    )


def test_flags_off_and_no_samesite_are_omitted() -> None:
    cookie = Cookie("a", "b", secure=False, http_only=False, same_site=None)
    assert cookie.serialize() == "a=b; Path=/"


def test_quoted_value_and_nameless_cookie_serialize() -> None:
    assert Cookie("a", '"xy"').serialize().startswith('a="xy";')
    assert Cookie("", "token").serialize().startswith("=token;")


def test_repr_hides_the_value() -> None:
    assert "s3cret" not in repr(Cookie("sid", "s3cret"))


# --- name and value rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a b", "a;b", "a,b", "a=b", "a\r\nSet-Cookie: x", "caf\u00e9", "a\x7f", "a\tb", "(x)"]
)
def test_names_must_be_tokens(name: str) -> None:
    refused("cookie_name_invalid", name=name, value="v")


@pytest.mark.parametrize(
    "value",
    ["a b", "a;b", "a,b", "a\r\nX: y", "a\x00", "a\x7f", "caf\u00e9", 'a"b', "a\\b", '"ab', "\t"],
)
def test_values_must_be_cookie_octets(value: str) -> None:
    refused("cookie_value_invalid", name="n", value=value)


def test_non_string_name_or_value_refused() -> None:
    refused("cookie_name_invalid", name=b"n", value="v")
    refused("cookie_value_invalid", name="n", value=1)


def test_error_message_never_echoes_the_value() -> None:
    with pytest.raises(CookieError) as info:
        Cookie("sid", "secret;evil")
    assert "secret" not in str(info.value)


@given(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=40), st.text(alphabet=OCTETS))
def test_any_token_name_and_octet_value_accepted(name: str, value: str) -> None:
    assert Cookie(name, value).serialize().startswith(f"{name}={value}; ")


def test_nameless_cookie_rules() -> None:
    refused("cookie_name_invalid", name="", value="")
    refused("cookie_value_invalid", name="", value="a=b")
    refused("nameless_cookie_looks_prefixed", name="", value="__Host-x")
    refused("nameless_cookie_looks_prefixed", name="", value="__secure-x")


def test_name_plus_value_over_4096_bytes_is_too_large() -> None:
    Cookie("n", "v" * 4095)
    with pytest.raises(CookieTooLarge) as info:
        Cookie("n", "v" * 4096)
    assert info.value.code == "cookie_too_large"
    assert isinstance(info.value, ValueError)


# --- attribute rules -----------------------------------------------------------------------


def test_samesite_none_and_partitioned_require_secure() -> None:
    refused("samesite_none_requires_secure", name="a", value="b", same_site="None", secure=False)
    refused("partitioned_requires_secure", name="a", value="b", partitioned=True, secure=False)


def test_invalid_samesite_refused() -> None:
    refused("samesite_invalid", name="a", value="b", same_site="lax")
    refused("samesite_invalid", name="a", value="b", same_site="Lax; Domain=evil")


@pytest.mark.parametrize("prefix", ["__Secure-", "__secure-", "__SECURE-"])
def test_secure_prefix_requires_secure_in_any_case(prefix: str) -> None:
    refused("secure_prefix_requires_secure", name=prefix + "x", value="b", secure=False)
    Cookie(prefix + "x", "b", domain="example.org", path="/a")


def test_host_prefix_rules() -> None:
    refused("host_prefix_requires_secure", name="__Host-x", value="b", secure=False)
    refused("host_prefix_forbids_domain", name="__host-x", value="b", domain="example.org")
    refused("host_prefix_requires_root_path", name="__HOST-x", value="b", path="/a")
    Cookie("__Host-x", "b")


def test_max_age_rules() -> None:
    Cookie("a", "b", max_age=400 * 86400)
    refused("max_age_too_long", name="a", value="b", max_age=400 * 86400 + 1)
    refused("max_age_invalid", name="a", value="b", max_age=-1)
    refused("max_age_invalid", name="a", value="b", max_age=1.5)
    refused("max_age_invalid", name="a", value="b", max_age=True)


def test_expires_rules() -> None:
    refused("expires_invalid", name="a", value="b", expires=datetime(2030, 1, 1))  # naive
    refused("expires_invalid", name="a", value="b", expires=1e20)
    refused("expires_invalid", name="a", value="b", expires=-5.0)
    refused("expires_invalid", name="a", value="b", expires="tomorrow")


@pytest.mark.parametrize("domain", ["exa mple.org", "example.org;x", "", "-a.org", "ex\u00e4.org"])
def test_domain_must_be_a_host_name(domain: str) -> None:
    refused("cookie_domain_invalid", name="a", value="b", domain=domain)


def test_leading_dot_domain_accepted() -> None:
    assert "Domain=.example.org" in Cookie("a", "b", domain=".example.org").serialize()


@pytest.mark.parametrize("path", ["app", "/a;b", "/a\nb", "/caf\u00e9", ""])
def test_path_must_start_with_slash_and_be_printable(path: str) -> None:
    refused("cookie_path_invalid", name="a", value="b", path=path)


def test_attribute_over_1024_bytes_refused() -> None:
    Cookie("a", "b", path="/" + "p" * 1023)
    refused("attribute_too_large", name="a", value="b", path="/" + "p" * 1024)
    refused("attribute_too_large", name="a", value="b", domain="a" * 1025 + ".org")


def test_non_bool_flag_refused() -> None:
    refused("cookie_flag_invalid", name="a", value="b", secure="yes")


# --- update and delete ---------------------------------------------------------------------


def test_updated_keeps_identity_and_revalidates() -> None:
    cookie = Cookie("__Secure-a", "1", domain="example.org", path="/x", max_age=10)
    newer = cookie.updated(value="2", max_age=20)
    assert (newer.name, newer.domain, newer.path) == ("__Secure-a", "example.org", "/x")
    assert (newer.value, newer.max_age) == ("2", 20)
    with pytest.raises(CookieError) as info:
        cookie.updated(secure=False)
    assert info.value.code == "secure_prefix_requires_secure"


def test_deletion_matches_the_cookie_and_expires_it() -> None:
    cookie = Cookie("__Host-s", "v", max_age=60, same_site="Strict", partitioned=True)
    header = cookie.deletion().serialize()
    assert header == (
        "__Host-s=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; Secure; "
        "HttpOnly; SameSite=Strict; Partitioned"
    )
    assert cookie.deletion().is_deletion(now=0.0)


def test_deletion_of_a_nameless_cookie_keeps_its_value() -> None:
    assert Cookie("", "tok").deletion().serialize().startswith("=tok; Expires=Thu, 01 Jan 1970")


def test_is_deletion_prefers_max_age_over_expires() -> None:
    assert not Cookie("a", "b", max_age=5, expires=0.0).is_deletion(now=100.0)
    assert Cookie("a", "b", expires=50.0).is_deletion(now=100.0)
    assert not Cookie("a", "b", expires=150.0).is_deletion(now=100.0)
    assert not Cookie("a", "b").is_deletion(now=100.0)


# --- policy --------------------------------------------------------------------------------


def test_policy_defaults_and_overrides() -> None:
    policy = CookiePolicy()
    cookie = policy.cookie(policy.name("session"), "x", max_age=60, same_site="Strict")
    assert cookie.serialize() == (
        "__Host-session=x; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Strict"
    )


def test_development_policy_drops_secure_and_prefix() -> None:
    dev = CookiePolicy.development()
    assert dev.is_development
    assert dev.name("session") == "session"
    assert dev.cookie("session", "x").serialize() == "session=x; Path=/; HttpOnly; SameSite=Lax"


def test_development_policy_still_refuses_hard_coded_prefixes() -> None:
    dev = CookiePolicy.development()
    with pytest.raises(CookieError) as info:
        dev.cookie("__Host-session", "x")
    assert info.value.code == "host_prefix_requires_secure"
    with pytest.raises(CookieError) as info:
        dev.cookie("__Secure-session", "x")
    assert info.value.code == "secure_prefix_requires_secure"


def test_policy_name_chooses_secure_prefix_when_host_prefix_impossible() -> None:
    assert CookiePolicy(domain="example.org").name("s") == "__Secure-s"
    assert CookiePolicy(path="/app").name("s") == "__Secure-s"
    with pytest.raises(CookieError):
        CookiePolicy().name("__Host-s")


def test_policy_that_could_never_make_a_cookie_is_refused() -> None:
    with pytest.raises(CookieError) as info:
        CookiePolicy(secure=False, same_site="None")
    assert info.value.code == "samesite_none_requires_secure"


def test_policy_from_settings_follows_dev_flag() -> None:
    assert CookiePolicy.from_settings(Settings(dev=True)).is_development
    assert not CookiePolicy.from_settings(Settings()).is_development
