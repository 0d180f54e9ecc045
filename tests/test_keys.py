"""The key ring: key material per algorithm, lifetimes, selection, rotation, and no leaks."""

from __future__ import annotations

import base64
import logging
from typing import Literal

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwk as joserfc_jwk

from tessera.clock import FakeClock
from tessera.errors import ConfigError, KeyNotFound
from tessera.keys import (
    HmacKey,
    KeyRing,
    KeyState,
    KeyUse,
    ManagedKey,
    SigningKey,
    new_key,
)
from tessera.keys_material import private_pem

ASYMMETRIC = ["EdDSA", "ES256", "RS256"]
ALL_ALGS = [*ASYMMETRIC, "HS256"]
DAY = 86400.0
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


@pytest.fixture(scope="module")
def keys_by_alg() -> dict[str, SigningKey]:
    """One generated key per algorithm (RSA generation is slow enough to share)."""
    return {alg: SigningKey.generate(alg) for alg in ALL_ALGS}


def secret_forms(secret: bytes) -> list[str]:
    """Every way a secret could show up in text."""
    return [
        secret.hex(),
        repr(secret),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        base64.b64encode(secret).decode().rstrip("="),
    ]


def private_forms(key: SigningKey) -> list[str]:
    """The PEM body, private JWK members, or the secret of ``key``."""
    if isinstance(key.material, bytes):
        return secret_forms(key.material)
    pem = key.private_pem()
    body = "".join(pem.splitlines()[1:-1])
    private = key.private_jwk()
    return [pem, body[:40], *(str(private[m]) for m in private if m in PRIVATE_JWK_MEMBERS)]


# --- material per algorithm ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_asymmetric_key_round_trips_through_pem(
    keys_by_alg: dict[str, SigningKey], alg: str
) -> None:
    key = keys_by_alg[alg]
    again = SigningKey.from_pem(key.private_pem(), alg)
    assert again.kid == key.kid
    assert again.private_pem() == key.private_pem()


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_key_round_trips_through_private_jwk(keys_by_alg: dict[str, SigningKey], alg: str) -> None:
    key = keys_by_alg[alg]
    again = SigningKey.from_jwk(key.private_jwk(), alg)
    assert again.kid == key.kid
    assert again.private_jwk() == key.private_jwk()


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_key_round_trips_through_a_record(keys_by_alg: dict[str, SigningKey], alg: str) -> None:
    managed = ManagedKey(keys_by_alg[alg], created_at=1.0, activated_at=2.0, retiring_at=3.0)
    again = ManagedKey.from_record(managed.to_record())
    assert again == managed
    assert again.to_record() == managed.to_record()
    assert again.to_record().material == managed.to_record().material


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_asymmetric_kid_is_the_rfc7638_thumbprint(
    keys_by_alg: dict[str, SigningKey], alg: str
) -> None:
    """Checked against joserfc's independent implementation."""
    key = keys_by_alg[alg]
    kty: dict[str, Literal["OKP", "EC", "RSA"]] = {"EdDSA": "OKP", "ES256": "EC", "RS256": "RSA"}
    imported = joserfc_jwk.import_key(key.private_pem().encode(), kty[alg])
    assert key.kid == imported.thumbprint()


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_tokens_signed_with_a_key_verify_with_its_verification_material(
    keys_by_alg: dict[str, SigningKey], alg: str
) -> None:
    """What the token layer will do: sign with the private part, verify with key.alg."""
    key = keys_by_alg[alg]
    signing = key.material if key.is_symmetric else key.private_key
    token = jwt.encode({"sub": "u1"}, signing, algorithm=alg, headers={"kid": key.kid})
    claims = jwt.decode(token, key.verification_material, algorithms=[key.alg])
    assert claims == {"sub": "u1"}


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_public_jwk_verifies_tokens(keys_by_alg: dict[str, SigningKey], alg: str) -> None:
    """A third party holding only the published JWK can verify the key's tokens."""
    key = keys_by_alg[alg]
    token = jwt.encode({"sub": "u1"}, key.private_key, algorithm=alg)
    published = key.public_jwk()
    assert published is not None
    public = jwt.PyJWK(published)
    assert jwt.decode(token, public, algorithms=[alg]) == {"sub": "u1"}


def test_hs256_key_has_no_private_key_and_no_public_jwk(keys_by_alg: dict[str, SigningKey]) -> None:
    key = keys_by_alg["HS256"]
    assert key.public_key is None
    assert key.public_jwk() is None
    with pytest.raises(KeyNotFound):
        _ = key.private_key
    with pytest.raises(KeyNotFound):
        key.private_pem()


def test_pem_of_the_wrong_type_for_the_algorithm_is_refused(
    keys_by_alg: dict[str, SigningKey],
) -> None:
    with pytest.raises(ConfigError, match="cannot be used for ES256"):
        SigningKey.from_pem(keys_by_alg["EdDSA"].private_pem(), "ES256")


def test_ec_key_on_another_curve_is_refused_for_es256() -> None:
    pem = private_pem(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ConfigError, match="P-256"):
        SigningKey.from_pem(pem, "ES256")


def test_rsa_key_under_2048_bits_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  (the point of the test)
    with pytest.raises(ConfigError, match="at least 2048 bits"):
        SigningKey.from_pem(private_pem(small), "RS256")


def test_encrypted_pem_is_refused_without_echoing_it() -> None:
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
        .decode()
    )
    with pytest.raises(ConfigError) as info:
        SigningKey.from_pem(pem, "EdDSA")
    assert "BEGIN" not in str(info.value)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported signing algorithm 'none'"):
        SigningKey.generate("none")


def test_short_hs256_jwk_secret_is_refused() -> None:
    jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(b"x" * 16).decode().rstrip("=")}
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        SigningKey.from_jwk(jwk, "HS256")


@given(st.text(max_size=200))
def test_pem_parser_only_raises_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        SigningKey.from_pem(text, "EdDSA")


# --- no leaks ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_repr_str_and_logs_of_keys_and_ring_hold_no_private_material(
    keys_by_alg: dict[str, SigningKey], alg: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = keys_by_alg[alg]
    clock = FakeClock()
    managed = ManagedKey(key, created_at=clock.now(), activated_at=clock.now())
    hmac = new_key(KeyUse.HMAC, None, clock.now())
    ring = KeyRing([managed, hmac], clock)
    rotation = ring.rotate(KeyUse.SIGN, alg, overlap=DAY)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("tessera.test").info(
            "%s %r %s %r %s %s", key, key, managed, ring, rotation, managed.to_record()
        )
    text = " ".join(
        [repr(key), str(key), repr(managed), str(ring), repr(rotation), repr(managed.to_record())]
    )
    text += caplog.text
    assert key.kid in text
    assert isinstance(hmac.key, HmacKey)
    for form in [*private_forms(key), *secret_forms(hmac.key.secret)]:
        assert form not in text
    assert "PRIVATE KEY" not in text


# --- lifetimes -----------------------------------------------------------------------------


def managed_hmac(activated_at: float, **times: float | None) -> ManagedKey:
    return ManagedKey(HmacKey(f"k{activated_at}", b"s" * 32), activated_at, activated_at, **times)


def test_state_follows_the_times() -> None:
    key = managed_hmac(10.0, retiring_at=20.0, retired_at=30.0)
    assert [key.state(t) for t in (9.9, 10.0, 19.9, 20.0, 29.9, 30.0)] == [
        KeyState.PENDING,
        KeyState.ACTIVE,
        KeyState.ACTIVE,
        KeyState.RETIRING,
        KeyState.RETIRING,
        KeyState.RETIRED,
    ]


@given(
    st.lists(st.floats(0, 1e10), min_size=3, max_size=3).map(sorted),
    st.booleans(),
    st.booleans(),
    st.lists(st.floats(0, 1e10), min_size=2, max_size=20).map(sorted),
)
def test_state_never_goes_back_in_time(
    times: list[float], has_retiring: bool, has_retired: bool, instants: list[float]
) -> None:
    order = list(KeyState)
    key = managed_hmac(
        times[0],
        retiring_at=times[1] if has_retiring else None,
        retired_at=times[2] if has_retired else None,
    )
    states = [order.index(key.state(t)) for t in instants]
    assert states == sorted(states)


def test_times_out_of_order_are_refused() -> None:
    with pytest.raises(ConfigError, match="activated_at <= retiring_at <= retired_at"):
        managed_hmac(10.0, retiring_at=30.0, retired_at=20.0)
    with pytest.raises(ConfigError):
        managed_hmac(10.0, retiring_at=5.0)


def test_rotation_timeline_active_retiring_retired(clock: FakeClock) -> None:
    ring = KeyRing([new_key(KeyUse.SIGN, "EdDSA", clock.now())], clock)
    first = ring.signing_key()
    clock.advance(DAY)
    rotation = ring.rotate(KeyUse.SIGN, "ES256", overlap=7 * DAY)
    ring = rotation.ring
    second = ring.signing_key()

    assert rotation.new.kid == second.kid != first.kid
    assert second.alg == "ES256"
    assert [k.kid for k in rotation.retiring] == [first.kid]
    assert rotation.retiring[0].retiring_at == clock.now()
    assert rotation.retiring[0].retired_at == clock.now() + 7 * DAY
    assert ring.state_of(first.kid) is KeyState.RETIRING
    # Retiring: signs nothing, still verifies and is still published.
    assert [k.kid for k in ring.verification_keys()] == [second.kid, first.kid]
    assert ring.key_for_kid(first.kid) == first
    assert {j["kid"] for j in ring.public_jwks()["keys"]} == {first.kid, second.kid}

    clock.advance(7 * DAY - 1)
    assert ring.key_for_kid(first.kid) == first
    clock.advance(1)
    assert ring.state_of(first.kid) is KeyState.RETIRED
    assert ring.key_for_kid(first.kid) is None
    assert [k.kid for k in ring.verification_keys()] == [second.kid]
    assert [j["kid"] for j in ring.public_jwks()["keys"]] == [second.kid]
    assert ring.signing_key() == second


def test_hmac_keys_are_newest_active_first_then_retiring(clock: FakeClock) -> None:
    ring = KeyRing([new_key(KeyUse.HMAC, None, clock.now())], clock)
    kids = [ring.hmac_keys()[0].kid]
    for _ in range(2):
        clock.advance(DAY)
        rotation = ring.rotate(KeyUse.HMAC, overlap=7 * DAY)
        ring = rotation.ring
        kids.insert(0, rotation.new.kid)
    assert [k.kid for k in ring.hmac_keys()] == kids
    clock.advance(6 * DAY)  # the first rotated-out key is now past its overlap
    assert [k.kid for k in ring.hmac_keys()] == kids[:2]


def test_rotation_of_one_use_leaves_the_other_alone(clock: FakeClock) -> None:
    hmac = new_key(KeyUse.HMAC, None, clock.now())
    ring = KeyRing([hmac, new_key(KeyUse.SIGN, "EdDSA", clock.now())], clock)
    rotation = ring.rotate(KeyUse.SIGN, overlap=DAY)
    assert all(k.use is KeyUse.SIGN for k in rotation.retiring)
    assert rotation.ring.hmac_keys()[0].kid == hmac.kid
    assert rotation.new.alg == "EdDSA"


def test_zero_overlap_retires_at_once(clock: FakeClock) -> None:
    ring = KeyRing([new_key(KeyUse.SIGN, "EdDSA", clock.now())], clock)
    old = ring.signing_key().kid
    ring = ring.rotate(KeyUse.SIGN, overlap=0).ring
    assert ring.key_for_kid(old) is None


def test_rotation_leaves_the_original_ring_unchanged(clock: FakeClock) -> None:
    ring = KeyRing([new_key(KeyUse.SIGN, "EdDSA", clock.now())], clock)
    before = ring.signing_key()
    ring.rotate(KeyUse.SIGN, overlap=DAY)
    assert ring.signing_key() == before
    assert len(ring) == 1


def test_two_active_keys_of_one_use_newest_signs_and_both_verify(clock: FakeClock) -> None:
    """What two instances generating at once would leave behind: resolved the same everywhere."""
    older = new_key(KeyUse.SIGN, "EdDSA", clock.now())
    newer = new_key(KeyUse.SIGN, "EdDSA", clock.now() + 1)
    clock.advance(2)
    for order in ([older, newer], [newer, older]):
        ring = KeyRing(order, clock)
        assert ring.signing_key().kid == newer.kid
        assert {k.kid for k in ring.verification_keys()} == {older.kid, newer.kid}


def test_rotation_retires_every_active_key_of_the_use(clock: FakeClock) -> None:
    keys = [new_key(KeyUse.SIGN, "EdDSA", clock.now()) for _ in range(2)]
    rotation = KeyRing(keys, clock).rotate(KeyUse.SIGN, overlap=DAY)
    assert {k.kid for k in rotation.retiring} == {k.kid for k in keys}
    assert rotation.ring.signing_key().kid == rotation.new.kid


def test_pending_key_neither_signs_nor_verifies_until_activated(clock: FakeClock) -> None:
    current = new_key(KeyUse.SIGN, "EdDSA", clock.now())
    pending = ManagedKey(
        SigningKey.generate("EdDSA"), created_at=clock.now(), activated_at=clock.now() + DAY
    )
    ring = KeyRing([current, pending], clock)
    assert ring.signing_key().kid == current.kid
    assert ring.key_for_kid(pending.kid) is None
    clock.advance(DAY)
    assert ring.signing_key().kid == pending.kid


def test_empty_ring_raises_key_not_found(clock: FakeClock) -> None:
    ring = KeyRing([], clock)
    with pytest.raises(KeyNotFound, match="--use sign"):
        ring.signing_key()
    with pytest.raises(KeyNotFound, match="--use hmac"):
        ring.hmac_keys()
    assert ring.verification_keys() == []
    assert ring.public_jwks() == {"keys": []}


def test_only_retiring_hmac_keys_raise_rather_than_sign_with_a_dying_key(clock: FakeClock) -> None:
    ring = KeyRing([managed_hmac(0.0, retiring_at=clock.now())], clock)
    with pytest.raises(KeyNotFound):
        ring.hmac_keys()


def test_duplicate_kids_are_refused(clock: FakeClock) -> None:
    key = new_key(KeyUse.HMAC, None, clock.now())
    with pytest.raises(ConfigError, match="share the kid"):
        KeyRing([key, key], clock)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_public_jwks_has_only_public_members(keys_by_alg: dict[str, SigningKey], alg: str) -> None:
    clock = FakeClock()
    ring = KeyRing([ManagedKey(keys_by_alg[alg], clock.now(), clock.now())], clock)
    jwks = ring.public_jwks()
    if alg == "HS256":
        assert jwks == {"keys": []}
        return
    [published] = jwks["keys"]
    assert not PRIVATE_JWK_MEMBERS & published.keys()
    assert published["kid"] == keys_by_alg[alg].kid
    assert published["alg"] == alg
    assert published["use"] == "sig"
    assert "key_ops" not in published


def test_hmac_key_with_a_signing_alg_is_refused() -> None:
    with pytest.raises(ConfigError, match="hmac keys are HS256"):
        new_key(KeyUse.HMAC, "EdDSA", 0.0)


def test_unknown_use_is_refused() -> None:
    with pytest.raises(ConfigError, match="'hmac' or 'sign'"):
        new_key("cookies", None, 0.0)


def test_negative_overlap_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="negative"):
        KeyRing([], clock).rotate(KeyUse.HMAC, overlap=-1)
