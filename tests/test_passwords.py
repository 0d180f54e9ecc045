"""Password hashing: argon2id profiles, bounded input, no exceptions on garbage, equal cost."""

from __future__ import annotations

import dataclasses
import threading

import argon2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.errors import InvalidInput
from tessera.identity.passwords import (
    DEFAULT_PROFILE,
    FAST_INSECURE_PROFILE,
    MAX_PASSWORD_BYTES,
    PasswordHasher,
    check_new_password,
)

FAST = PasswordHasher(FAST_INSECURE_PROFILE)


Call = tuple[str, str, threading.Thread]


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every argon2 hash/verify call as (operation, hash or '', calling thread)."""
    calls: list[Call] = []
    real_verify = argon2.PasswordHasher.verify
    real_hash = argon2.PasswordHasher.hash

    def verify(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append(("verify", str(hash), threading.current_thread()))
        return real_verify(self, hash, password)

    def hash_(
        self: argon2.PasswordHasher, password: str | bytes, *, salt: bytes | None = None
    ) -> str:
        calls.append(("hash", "", threading.current_thread()))
        return real_hash(self, password, salt=salt)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    monkeypatch.setattr(argon2.PasswordHasher, "hash", hash_)
    return calls


def test_hash_then_verify_accepts_the_password_and_rejects_others() -> None:
    h = FAST.hash("correct horse")
    assert h.startswith("$argon2id$")
    assert FAST.verify(h, "correct horse")
    assert not FAST.verify(h, "correct horse ")
    assert not FAST.verify(h, "Correct horse")


def test_each_hash_has_its_own_salt() -> None:
    assert FAST.hash("same password") != FAST.hash("same password")


def test_default_profile_is_rfc9106_low_memory_argon2id() -> None:
    hasher = PasswordHasher()
    assert hasher.profile == argon2.profiles.RFC_9106_LOW_MEMORY
    assert argon2.extract_parameters(hasher.hash("a password")) == DEFAULT_PROFILE


def test_non_argon2id_profiles_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        PasswordHasher(dataclasses.replace(FAST_INSECURE_PROFILE, type=argon2.Type.I))
    assert info.value.code == "invalid_profile"


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "garbage",
        "$argon2id$",
        "$2b$12$abcdefghijklmnopqrstuvCQ1h0hHU0U0Wv3q4QbkxN8N2pSKfa",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$AAAA",
    ],
)
def test_verify_returns_false_for_malformed_or_foreign_hashes(bad_hash: str) -> None:
    assert FAST.verify(bad_hash, "whatever password") is False


@given(st.text(max_size=200), st.text(max_size=50))
def test_verify_never_raises(bad_hash: str, password: str) -> None:
    """Whatever the stored hash and the submitted password, verify answers a bool."""
    assert FAST.verify(bad_hash, password) in (True, False)


def test_over_long_password_is_refused_without_any_argon2_work(
    argon2_calls: list[Call],
) -> None:
    h = FAST.hash("x" * MAX_PASSWORD_BYTES)
    argon2_calls.clear()
    long = "x" * (MAX_PASSWORD_BYTES + 1)
    with pytest.raises(InvalidInput) as info:
        FAST.hash(long)
    assert info.value.code == "password_too_long"
    assert FAST.verify(h, long) is False
    assert argon2_calls == []


def test_byte_limit_counts_utf8_bytes_not_characters() -> None:
    with pytest.raises(InvalidInput):
        FAST.hash("é" * (MAX_PASSWORD_BYTES // 2 + 1))
    FAST.hash("é" * (MAX_PASSWORD_BYTES // 2))


def test_nfkc_expansion_is_bounded_too() -> None:
    """U+FDFA grows 18-fold under NFKC: the limit applies to what is hashed."""
    with pytest.raises(InvalidInput):
        FAST.hash("\ufdfa" * 100)


def test_passwords_are_nfkc_normalised_before_hashing() -> None:
    composed, decomposed = "caf\u00e9-password", "cafe\u0301-password"
    assert FAST.verify(FAST.hash(composed), decomposed)
    assert FAST.verify(FAST.hash("\ufb01sh-password"), "fish-password")


def test_lone_surrogates_are_invalid_input_not_a_crash() -> None:
    with pytest.raises(InvalidInput) as info:
        FAST.hash("abc\ud800defgh")
    assert info.value.code == "invalid_password"
    assert FAST.verify(FAST.hash("abcdefgh"), "abc\ud800defgh") is False


@pytest.mark.parametrize("password", ["", "1234567", "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"])
def test_new_passwords_need_eight_characters(password: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_new_password(password)
    assert info.value.code == "password_too_short"


def test_length_is_counted_after_normalisation() -> None:
    """Seven decomposed accents are 14 code points but 7 characters once composed."""
    with pytest.raises(InvalidInput):
        check_new_password("e\u0301" * 7)
    check_new_password("e\u0301" * 8)
    check_new_password("12345678")


def test_needs_rehash_when_the_profile_changed() -> None:
    slower = PasswordHasher(dataclasses.replace(FAST_INSECURE_PROFILE, time_cost=2))
    old = FAST.hash("a password")
    assert slower.needs_rehash(old)
    assert not FAST.needs_rehash(old)
    assert not slower.needs_rehash(slower.hash("a password"))


def test_needs_rehash_says_yes_for_unparseable_hashes() -> None:
    assert FAST.needs_rehash("not a hash")


def test_dummy_verify_is_one_real_verification_with_the_same_parameters(
    argon2_calls: list[Call],
) -> None:
    hasher = PasswordHasher(dataclasses.replace(FAST_INSECURE_PROFILE, time_cost=2))
    real = hasher.hash("the password")
    argon2_calls.clear()
    hasher.verify(real, "wrong password")
    hasher.dummy_verify("wrong password")
    hasher.dummy_verify("another one")
    verifies = [h for op, h, _ in argon2_calls if op == "verify"]
    assert len(verifies) == 3
    assert all(argon2.extract_parameters(h) == hasher.profile for h in verifies)


def test_repr_shows_parameters_only() -> None:
    assert repr(FAST) == "PasswordHasher(t=1, m=8KiB, p=1)"


async def test_async_wrappers_hash_off_the_event_loop_thread(
    argon2_calls: list[Call],
) -> None:
    h = await FAST.hash_async("a password")
    assert await FAST.verify_async(h, "a password")
    assert not await FAST.verify_async(h, "another password")
    await FAST.dummy_verify_async("x")
    threads = [thread for _, _, thread in argon2_calls]
    assert len(threads) >= 4
    assert threading.main_thread() not in threads
