"""Usernames and emails: what is allowed, how it is normalised, how it is compared."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.errors import InvalidInput
from tessera.identity.users import (
    User,
    email_key,
    email_lookup_key,
    normalize_email,
    normalize_username,
    username_key,
    username_lookup_key,
)

ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@pytest.mark.parametrize("name", ["alice", "Alice", "a", "bob.smith", "x_y-z", "9lives", "A" * 64])
def test_plain_ascii_names_are_kept_as_typed(name: str) -> None:
    assert normalize_username(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A" * 65,
        "-rf",  # looks like a command-line option
        ".hidden",
        "_x",
        "al ice",
        "alice\n",
        "al/ice",
        "\u0430dmin",  # Cyrillic a: a homoglyph of "admin"
        "adm\u0456n",  # Cyrillic i
        "al\u200dice",  # zero-width joiner
        "alice\u202e",  # right-to-left override
        "j\u00f6rg",
        "x" * 10_000,
    ],
)
def test_names_outside_the_allowed_set_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_username(name)
    assert info.value.code == "invalid_username"
    assert username_lookup_key(name) is None


def test_full_width_letters_become_ascii_and_then_collide() -> None:
    """NFKC maps the full-width form to ASCII, so it is the same account as the ASCII name."""
    assert normalize_username("\uff21lice") == "Alice"
    assert username_key("\uff21lice") == username_key("alice") == "alice"


def test_kelvin_sign_is_the_letter_k() -> None:
    assert username_key("\u212aate") == "kate"


@given(st.text(max_size=100))
def test_normalised_usernames_are_always_in_the_allowed_set(raw: str) -> None:
    try:
        name = normalize_username(raw)
    except InvalidInput:
        return
    assert ALLOWED.fullmatch(name)
    assert normalize_username(name) == name
    assert username_key(name) == name.lower()


@given(st.from_regex(ALLOWED, fullmatch=True))
def test_every_allowed_name_is_accepted_and_keyed_by_its_lower_case(name: str) -> None:
    assert normalize_username(name) == name
    assert username_key(name.upper()) == username_key(name.lower())


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("a@example.com", "a@example.com"), ("  Bob@Example.COM ", "Bob@Example.COM")],
)
def test_valid_emails_are_trimmed(raw: str, stored: str) -> None:
    assert normalize_email(raw) == stored


def test_email_keys_ignore_case() -> None:
    assert email_key("Bob@Example.COM") == email_key("bob@example.com")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "a@b@c",
        "a b@example.com",
        "a@",
        "@b",
        "a@b\x00c",
        "x" * 65 + "@example.com",
        "a@" + "b" * 254,
        "a\u200b@example.com",
    ],
)
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_email(raw)
    assert info.value.code == "invalid_email"
    assert email_lookup_key(raw) is None


@given(st.text(max_size=300))
def test_normalised_emails_have_one_at_sign_and_no_spaces(raw: str) -> None:
    try:
        email = normalize_email(raw)
    except InvalidInput:
        return
    assert email.count("@") == 1
    assert not any(c.isspace() for c in email)
    assert len(email) <= 254
    assert normalize_email(email) == email


def test_user_repr_never_shows_the_password_hash() -> None:
    user = User("id1", "alice", None, "$argon2id$secret", False, 1.0, 1.0, 1.0)
    assert "argon2" not in repr(user)
    assert "secret" not in repr(user)
