"""SignedCookies and EncryptedCookies: round trips, tamper/context/expiry refusals, rotation."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.clock import FakeClock
from tessera.cookies import Cookie, EncryptedCookies, SignedCookies
from tessera.errors import ConfigError
from tessera.keys import HmacKey
from tessera.metrics import Metrics

OLD = HmacKey("k1", b"o" * 32)
NEW = HmacKey("k2", b"n" * 32)
Codec = type[SignedCookies] | type[EncryptedCookies]
CODECS = [SignedCookies, EncryptedCookies]


def seal(codec: SignedCookies | EncryptedCookies, name: str, payload: bytes) -> str:
    if isinstance(codec, SignedCookies):
        return codec.sign(name, payload)
    return codec.encrypt(name, payload)


def open_(codec: SignedCookies | EncryptedCookies, name: str, value: str) -> bytes | None:
    if isinstance(codec, SignedCookies):
        return codec.unsign(name, value)
    return codec.decrypt(name, value)


def make(
    kind: Codec,
    *,
    keys: list[HmacKey] | None = None,
    purpose: str = "prefs",
    clock: FakeClock | None = None,
    metrics: Metrics | None = None,
    max_age: float = 3600,
) -> SignedCookies | EncryptedCookies:
    return kind(
        keys if keys is not None else [NEW, OLD],
        purpose=purpose,
        max_age=max_age,
        clock=clock or FakeClock(),
        metrics=metrics or Metrics(),
    )


# --- properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CODECS)
@given(payload=st.binary(max_size=512), name=st.text(min_size=1, max_size=20))
def test_round_trip_and_the_value_is_a_valid_cookie_value(
    kind: Codec, payload: bytes, name: str
) -> None:
    codec = make(kind)
    value = seal(codec, name, payload)
    assert open_(codec, name, value) == payload
    Cookie("c", value)  # raises if the value were not cookie-safe


@pytest.mark.parametrize("kind", CODECS)
@settings(max_examples=200)
@given(payload=st.binary(max_size=64), data=st.data())
def test_changing_any_character_fails(kind: Codec, payload: bytes, data: st.DataObject) -> None:
    metrics = Metrics()
    codec = make(kind, metrics=metrics)
    value = seal(codec, "c", payload)
    index = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda ch: ch != value[index]))
    tampered = value[:index] + replacement + value[index + 1 :]
    assert open_(codec, "c", tampered) is None
    assert metrics.get("cookies.signature_invalid") == 1


@pytest.mark.parametrize("kind", CODECS)
@given(payload=st.binary(max_size=64), cut=st.integers(min_value=1, max_value=20))
def test_truncated_or_extended_value_fails(kind: Codec, payload: bytes, cut: int) -> None:
    codec = make(kind)
    value = seal(codec, "c", payload)
    assert open_(codec, "c", value[:-cut]) is None
    assert open_(codec, "c", value + "A" * cut) is None


@pytest.mark.parametrize("kind", CODECS)
@given(garbage=st.text(max_size=200))
def test_garbage_never_raises(kind: Codec, garbage: str) -> None:
    assert open_(make(kind), "c", garbage) is None


@pytest.mark.parametrize("kind", CODECS)
@given(other=st.text(min_size=1, max_size=12))
def test_other_cookie_name_or_purpose_fails(kind: Codec, other: str) -> None:
    codec = make(kind, purpose="prefs")
    value = seal(codec, "c", b"payload")
    if other != "c":
        assert open_(codec, other, value) is None
    if other != "prefs":
        assert open_(make(kind, purpose=other), "c", value) is None


# --- context binding is length-prefixed ---------------------------------------------------


@pytest.mark.parametrize("kind", CODECS)
def test_shifting_bytes_between_name_and_purpose_fails(kind: Codec) -> None:
    """Name "ab" + purpose "c" must not verify as name "a" + purpose "bc"."""
    value = seal(make(kind, purpose="c"), "ab", b"x")
    assert open_(make(kind, purpose="bc"), "a", value) is None


def test_signed_payload_is_readable_and_encrypted_is_not() -> None:
    signed = make(SignedCookies).sign("c", b"visible-payload")  # type: ignore[union-attr]
    encrypted = make(EncryptedCookies).encrypt("c", b"hidden-payload")  # type: ignore[union-attr]
    assert base64.urlsafe_b64decode(signed.split(".")[0] + "==") == b"visible-payload"
    assert b"hidden" not in base64.urlsafe_b64decode(encrypted.split(".")[1] + "==")


# --- time ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CODECS)
def test_expiry_from_the_signed_timestamp(kind: Codec) -> None:
    clock, metrics = FakeClock(), Metrics()
    codec = make(kind, clock=clock, metrics=metrics, max_age=100)
    value = seal(codec, "c", b"p")
    clock.advance(100)
    assert open_(codec, "c", value) == b"p"
    clock.advance(1)
    assert open_(codec, "c", value) is None
    assert metrics.get("cookies.expired") == 1
    assert metrics.get("cookies.signature_invalid") == 0


@pytest.mark.parametrize("kind", CODECS)
def test_timestamp_in_the_future_beyond_skew_fails(kind: Codec) -> None:
    start, metrics = 1_800_000_000.0, Metrics()
    future = make(kind, clock=FakeClock(start + 61), metrics=metrics)
    value = seal(future, "c", b"p")
    assert open_(make(kind, clock=FakeClock(start + 1), metrics=metrics), "c", value) == b"p"
    assert open_(make(kind, clock=FakeClock(start), metrics=metrics), "c", value) is None
    assert metrics.get("cookies.issued_in_future") == 1


def test_signed_timestamp_is_eight_bytes_of_clock_seconds() -> None:
    value = make(SignedCookies, clock=FakeClock(1234.9)).sign("c", b"")  # type: ignore[union-attr]
    raw = base64.urlsafe_b64decode(value.split(".")[1] + "=")
    assert struct.unpack(">Q", raw) == (1234,)


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CODECS)
def test_rotation_signs_with_newest_and_verifies_with_all(kind: Codec) -> None:
    old_only = make(kind, keys=[OLD])
    from_old = seal(old_only, "c", b"p")
    rotated = make(kind, keys=[NEW, OLD])
    assert open_(rotated, "c", from_old) == b"p"
    assert "k2" in seal(rotated, "c", b"p").split(".")
    retired = make(kind, keys=[NEW])
    assert open_(retired, "c", from_old) is None


def test_key_source_callable_is_asked_every_time() -> None:
    ring = [OLD]
    codec = SignedCookies(lambda: ring, purpose="p", max_age=60, clock=FakeClock())
    value = codec.sign("c", b"x")
    ring = [NEW]
    assert codec.unsign("c", value) is None
    assert codec.sign("c", b"x").split(".")[2] == "k2"


@pytest.mark.parametrize("kind", CODECS)
@pytest.mark.parametrize(
    "keys",
    [[], [HmacKey("k", b"short")], [HmacKey("bad.kid", b"s" * 32)], [HmacKey("", b"s" * 32)]],
)
def test_bad_key_ring_is_a_config_error(kind: Codec, keys: list[HmacKey]) -> None:
    with pytest.raises(ConfigError):
        seal(make(kind, keys=keys), "c", b"p")


@pytest.mark.parametrize("kind", CODECS)
def test_bad_codec_settings_refused(kind: Codec) -> None:
    with pytest.raises(ConfigError):
        kind([NEW], purpose="", max_age=10)
    with pytest.raises(ConfigError):
        kind([NEW], purpose="p", max_age=0)


def test_encryption_uses_fresh_nonces() -> None:
    codec = make(EncryptedCookies)
    assert seal(codec, "c", b"same") != seal(codec, "c", b"same")


def _same_bytes_other_text(part: str) -> str:
    """Another base64url spelling of the same bytes (only the last char's unused bits differ)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(part[-1])
    return part[:-1] + alphabet[index ^ 1]


@pytest.mark.parametrize("position", [0, 1, 3])
def test_non_canonical_base64_of_the_same_bytes_fails(position: int) -> None:
    """Lenient decoders map two spellings to one value; a changed character must still fail."""
    codec = make(SignedCookies)
    parts = codec.sign("c", b"a").split(".")  # type: ignore[union-attr]
    original = parts[position]
    parts[position] = _same_bytes_other_text(original)
    decode = base64.urlsafe_b64decode
    assert decode(parts[position] + "==") == decode(original + "==")
    assert open_(codec, "c", ".".join(parts)) is None


def test_non_canonical_encrypted_blob_fails() -> None:
    codec = make(EncryptedCookies)
    kid, blob = codec.encrypt("c", b"ab").split(".")  # type: ignore[union-attr]
    assert open_(codec, "c", f"{kid}.{_same_bytes_other_text(blob)}") is None
