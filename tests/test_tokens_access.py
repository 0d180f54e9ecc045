"""Access tokens: issue, verify, and one test per attack the verifier must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from tessera.clock import FakeClock
from tessera.errors import InvalidToken
from tessera.keys import KeyRing, SigningKey, new_key
from tessera.metrics import Metrics
from tessera.stores.revocations import MemoryRevocationStore
from tessera.tokens import (
    AccessClaims,
    RevocationView,
    TokenIssuer,
    TokenVerifier,
    VerifiedTokenCache,
    www_authenticate,
)

ISS = "https://id.example"
AUD = "https://api.example"
TTL = 600


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ring_for(clock: FakeClock, alg: str = "EdDSA") -> KeyRing:
    return KeyRing([new_key("sign", alg, clock.now() - 60)], clock)


def forge(key: SigningKey, payload: dict[str, Any] | bytes, **header: Any) -> str:
    """A token signed correctly by ``key`` with whatever header and payload a test wants."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"kid": key.kid, "typ": "at+jwt", **header}
    return jwt.api_jws.encode(body, key.material, algorithm=key.alg, headers=headers)


def good_payload(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now())
    claims = {
        "iss": ISS,
        "sub": "user-1",
        "aud": AUD,
        "exp": now + TTL,
        "iat": now,
        "jti": "j1",
        "sid": "sid-1",
        "client_id": "app",
        "scope": "read",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def ring(clock: FakeClock) -> KeyRing:
    return ring_for(clock)


@pytest.fixture
def key(ring: KeyRing) -> SigningKey:
    return ring.signing_key()


@pytest.fixture
def issuer(ring: KeyRing, clock: FakeClock) -> TokenIssuer:
    return TokenIssuer(ring, ISS, AUD, TTL, clock)


@pytest.fixture
def verifier(ring: KeyRing, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(ring, ISS, AUD, clock)


def reason(verifier: TokenVerifier, token: str | bytes) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.code == "invalid_token"
    assert caught.value.http_status == 401
    return caught.value.reason


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256", "HS256"])
def test_issued_tokens_verify_to_the_same_claims(clock: FakeClock, alg: str) -> None:
    ring = ring_for(clock, alg)
    token, claims = TokenIssuer(ring, ISS, AUD, TTL, clock).issue(
        "user-1", "sid-1", ["read", "write", "read"], "app"
    )
    assert TokenVerifier(ring, ISS, AUD, clock).verify(token) == claims
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": ring.signing_key().kid, "typ": "at+jwt"}
    assert claims.scope == "read write"
    assert claims.has_scope("read", "write")
    assert not claims.has_scope("admin")
    assert claims.exp - claims.iat == TTL


def test_claims_carry_the_rfc9068_set(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("user-1", "sid-1", "read", "app")
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "sub", "aud", "exp", "iat", "jti", "sid", "client_id", "scope"}


def test_jti_is_unique_per_token(issuer: TokenIssuer) -> None:
    jtis = {issuer.issue("u", "s", "", "app")[1].jti for _ in range(50)}
    assert len(jtis) == 50


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_is_matched_case_insensitively_with_or_without_prefix(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock, typ: str
) -> None:
    assert verifier.verify(forge(key, good_payload(clock), typ=typ)).sub == "user-1"


def test_a_list_audience_containing_ours_is_accepted(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    token = forge(key, good_payload(clock, aud=["other", AUD]))
    assert verifier.verify(token).aud == ("other", AUD)


# --- attacks -------------------------------------------------------------------------------


def test_alg_none_is_rejected(verifier: TokenVerifier, key: SigningKey, clock: FakeClock) -> None:
    """An unsigned token (alg none), with or without a signature part, never verifies."""
    header = b64(json.dumps({"alg": "none", "kid": key.kid, "typ": "at+jwt"}).encode())
    body = b64(json.dumps(good_payload(clock)).encode())
    assert reason(verifier, f"{header}.{body}.") == "malformed"
    assert reason(verifier, f"{header}.{body}.AAAA") == "algorithm_mismatch"


def test_missing_kid_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    """A token that names no key is refused even when a single key would fit."""
    token = jwt.api_jws.encode(
        json.dumps(good_payload(clock)).encode(),
        key.material,
        algorithm="EdDSA",
        headers={"typ": "at+jwt"},
    )
    assert reason(verifier, token) == "missing_kid"


def test_unknown_kid_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    assert reason(verifier, forge(key, good_payload(clock), kid="not-ours")) == "unknown_key"


def test_kid_of_the_wrong_type_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    header = b64(json.dumps({"alg": "EdDSA", "kid": 7, "typ": "at+jwt"}).encode())
    body = b64(json.dumps(good_payload(clock)).encode())
    assert reason(verifier, f"{header}.{body}.AAAA") == "malformed"


@pytest.mark.parametrize("alg", ["EdDSA", "RS256", "ES256"])
def test_hs256_signed_with_the_public_key_is_rejected(clock: FakeClock, alg: str) -> None:
    """Key confusion: an HMAC "signature" keyed with our published public key is refused."""
    ring = ring_for(clock, alg)
    key = ring.signing_key()
    public = key.verification_material
    assert not isinstance(public, bytes)
    for secret in (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(key.public_jwk()).encode(),
    ):
        header = b64(json.dumps({"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}).encode())
        body = b64(json.dumps(good_payload(clock)).encode())
        mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        token = f"{header}.{body}.{b64(mac)}"
        assert reason(TokenVerifier(ring, ISS, AUD, clock), token) == "algorithm_mismatch"


def test_rs256_header_on_an_eddsa_kid_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    """The header's alg must be the key's: another algorithm is refused before any crypto."""
    rsa_key = SigningKey.generate("RS256")
    token = jwt.api_jws.encode(
        json.dumps(good_payload(clock)).encode(),
        rsa_key.material,
        algorithm="RS256",
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    assert reason(verifier, token) == "algorithm_mismatch"


def test_token_signed_by_another_key_with_our_kid_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    impostor = SigningKey("x", "EdDSA", SigningKey.generate("EdDSA").material)
    assert reason(verifier, forge(impostor, good_payload(clock), kid=key.kid)) == "bad_signature"


def test_tampered_payload_is_rejected(verifier: TokenVerifier, issuer: TokenIssuer) -> None:
    token, claims = issuer.issue("user-1", "sid-1", "read", "app")
    header, _, signature = token.split(".")
    body = b64(json.dumps({**claims.to_payload(), "scope": "read admin"}).encode())
    assert reason(verifier, f"{header}.{body}.{signature}") == "bad_signature"


def test_modified_signature_is_rejected(verifier: TokenVerifier, issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("user-1", "sid-1", "read", "app")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert reason(verifier, flipped) == "bad_signature"


def test_wrong_issuer_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    token = forge(key, good_payload(clock, iss="https://evil.example"))
    assert reason(verifier, token) == "wrong_issuer"


def test_wrong_audience_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    assert reason(verifier, forge(key, good_payload(clock, aud="other-api"))) == "wrong_audience"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt2", "application/jwt", None])
def test_wrong_or_missing_typ_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock, typ: str | None
) -> None:
    """An ID token or any other JWT signed by the same key is not an access token."""
    assert reason(verifier, forge(key, good_payload(clock), typ=typ)) == "wrong_type"


def test_expired_token_is_rejected_after_the_leeway(
    verifier: TokenVerifier, issuer: TokenIssuer, clock: FakeClock
) -> None:
    token, _ = issuer.issue("user-1", "sid-1", "read", "app")
    clock.advance(TTL + 29)
    assert verifier.verify(token).sub == "user-1"
    clock.advance(1)
    assert reason(verifier, token) == "expired"


def test_expired_error_says_so_to_the_client(
    verifier: TokenVerifier, issuer: TokenIssuer, clock: FakeClock
) -> None:
    token, _ = issuer.issue("user-1", "sid-1", "read", "app")
    clock.advance(TTL + 30)
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert www_authenticate(caught.value) == (
        'Bearer error="invalid_token", error_description="token expired"'
    )


def test_iat_in_the_future_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    now = int(clock.now())
    assert verifier.verify(forge(key, good_payload(clock, iat=now + 30))).sub == "user-1"
    assert reason(verifier, forge(key, good_payload(clock, iat=now + 31))) == "not_yet_valid"


def test_nbf_in_the_future_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    now = int(clock.now())
    assert verifier.verify(forge(key, good_payload(clock, nbf=now + 30))).nbf == now + 30
    assert reason(verifier, forge(key, good_payload(clock, nbf=now + 31))) == "not_yet_valid"


def test_oversized_token_is_rejected_before_parsing(verifier: TokenVerifier) -> None:
    """Over 8 KiB is refused on length alone, whatever the bytes are."""
    assert reason(verifier, "\x00" * 8193) == "oversized"
    assert reason(verifier, b"a." * 4097) == "oversized"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "eyJhbGciOiJFZERTQSJ9..",
        "e30.e30.AAAA",  # header {} has no alg
        "W10.e30.AAAA",  # header is an array
        "!!!.e30.AAAA",
        "eyJhbGciOiJFZERTQSJ9 .e30.AAAA",
        "eyJhbGciOiJFZERTQSJ9=.e30.AAAA",
        "/w.e30.AAAA",  # header bytes are not UTF-8
        "W1tb" * 1500 + ".e30.AAAA",  # header "[[[..." nested past json's recursion limit
    ],
)
def test_malformed_tokens_are_rejected(verifier: TokenVerifier, token: str) -> None:
    assert reason(verifier, token) in {"malformed", "wrong_type"}


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "1900000000"},
        {"exp": True},
        {"exp": None},
        {"iat": [1]},
        {"nbf": "soon"},
        {"aud": 5},
        {"aud": []},
        {"sub": 42},
        {"sub": ""},
        {"sid": None},
        {"client_id": None},
        {"jti": None},
        {"scope": ["read"]},
    ],
)
def test_claims_of_the_wrong_type_are_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock, changes: dict[str, Any]
) -> None:
    payload = good_payload(clock)
    payload.update(changes)
    payload = {k: v for k, v in payload.items() if v is not None}
    assert reason(verifier, forge(key, payload)) == "malformed"


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"exp": NaN}', b'"string"', b"1e400"])
def test_non_object_or_non_json_payload_is_rejected(
    verifier: TokenVerifier, key: SigningKey, body: bytes
) -> None:
    assert reason(verifier, forge(key, body)) == "malformed"


def test_infinite_exp_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    body = json.dumps(good_payload(clock)).replace('"exp": ', '"exp": 1e400, "x": ').encode()
    assert reason(verifier, forge(key, body)) == "malformed"


def test_crit_header_is_rejected(
    verifier: TokenVerifier, key: SigningKey, clock: FakeClock
) -> None:
    token = forge(key, good_payload(clock), crit=["exp"])
    assert reason(verifier, token) == "unsupported_header"


def test_retired_key_stops_verifying(clock: FakeClock) -> None:
    """After a rotation, the old key verifies during the overlap, then nothing it signed does."""
    ring = ring_for(clock)
    holder = {"ring": ring}
    cache = VerifiedTokenCache()
    verifier = TokenVerifier(lambda: holder["ring"], ISS, AUD, clock, cache=cache, leeway=0)
    token, _ = TokenIssuer(ring, ISS, AUD, 10 * TTL, clock).issue("u", "s", "", "app")
    verifier.verify(token)
    holder["ring"] = ring.rotate("sign", "EdDSA", overlap=60).ring
    clock.advance(30)
    assert verifier.verify(token).sub == "u"  # retiring: still verifies (from the cache)
    clock.advance(31)
    assert reason(verifier, token) == "unknown_key"  # retired: the cache does not save it


# --- cache, revocation, metrics ------------------------------------------------------------


def test_cache_serves_repeated_verifications(
    ring: KeyRing, issuer: TokenIssuer, clock: FakeClock
) -> None:
    cache = VerifiedTokenCache(max_entries=2)
    verifier = TokenVerifier(ring, ISS, AUD, clock, cache=cache)
    tokens = [issuer.issue("u", f"s{i}", "", "app")[0] for i in range(3)]
    for token in tokens:
        verifier.verify(token)
    assert len(cache) == 2  # bounded: the least recently used went
    verifier.verify(tokens[2])
    assert cache.hits == 1
    assert cache.evictions == 1


def test_cached_token_still_expires(ring: KeyRing, issuer: TokenIssuer, clock: FakeClock) -> None:
    verifier = TokenVerifier(ring, ISS, AUD, clock, cache=VerifiedTokenCache())
    token, _ = issuer.issue("u", "s", "", "app")
    verifier.verify(token)
    clock.advance(TTL + 30)
    assert reason(verifier, token) == "expired"


async def test_revocation_overrides_the_cache(
    ring: KeyRing, issuer: TokenIssuer, clock: FakeClock
) -> None:
    """A token verified (and cached) before its session was revoked is refused right after."""
    view = RevocationView(MemoryRevocationStore(), clock, max_token_lifetime=TTL)
    cache = VerifiedTokenCache()
    verifier = TokenVerifier(ring, ISS, AUD, clock, cache=cache, revocations=view)
    token, claims = issuer.issue("user-1", "sid-1", "", "app")
    other, _ = issuer.issue("user-1", "sid-2", "", "app")
    assert verifier.verify(token) == claims
    await view.revoke_session("sid-1")
    assert reason(verifier, token) == "revoked"
    assert verifier.verify(other).sid == "sid-2"
    await view.revoke_user("user-1")
    assert reason(verifier, other) == "revoked"
    clock.advance(1)
    fresh, _ = issuer.issue("user-1", "sid-3", "", "app")  # after the revocation: fine
    assert verifier.verify(fresh).sid == "sid-3"


def test_rejections_are_counted_by_reason(ring: KeyRing, clock: FakeClock, key: SigningKey) -> None:
    metrics = Metrics()
    verifier = TokenVerifier(ring, ISS, AUD, clock, metrics=metrics)
    reason(verifier, "x")
    reason(verifier, forge(key, good_payload(clock, aud="nope")))
    assert metrics.get("tokens.invalid.malformed") == 1
    assert metrics.get("tokens.invalid.wrong_audience") == 1


# --- parsers never crash -------------------------------------------------------------------


@given(st.text(max_size=300))
def test_verify_refuses_arbitrary_text_with_invalid_token_only(text: str) -> None:
    clock = FakeClock()
    verifier = TokenVerifier(ring_for(clock), ISS, AUD, clock)
    with pytest.raises(InvalidToken):
        verifier.verify(text)


@given(st.lists(st.text(alphabet="ABCDEFabcdef0123456789-_", max_size=40), min_size=3, max_size=3))
def test_verify_refuses_arbitrary_three_part_tokens(parts: list[str]) -> None:
    clock = FakeClock()
    verifier = TokenVerifier(ring_for(clock), ISS, AUD, clock)
    with pytest.raises(InvalidToken):
        verifier.verify(".".join(parts))


@given(
    st.dictionaries(
        st.sampled_from(["exp", "iat", "nbf", "aud", "sub", "sid"]),
        st.from_type(object) | st.integers() | st.floats() | st.text(),
        max_size=6,
    )
)
def test_claims_parser_refuses_any_mistyped_claims(changes: dict[str, Any]) -> None:
    """Whatever the claim values, the verifier answers with claims or InvalidToken."""
    clock = FakeClock()
    ring = ring_for(clock, "HS256")
    key = ring.signing_key()
    payload = good_payload(clock)
    payload.update(changes)
    try:
        body = json.dumps(payload, allow_nan=True).encode()
    except (TypeError, ValueError):
        return
    try:
        result = TokenVerifier(ring, ISS, AUD, clock).verify(forge(key, body))
    except InvalidToken:
        return
    assert isinstance(result, AccessClaims)


# --- WWW-Authenticate ----------------------------------------------------------------------


def test_challenge_without_error_names_no_error() -> None:
    assert www_authenticate() == "Bearer"
    assert www_authenticate(realm="api") == 'Bearer realm="api"'


def test_challenge_neutralizes_quotes_and_line_breaks() -> None:
    header = www_authenticate(InvalidToken("malformed", 'bad "x"\r\nSet-Cookie: a=b\\'))
    assert "\r" not in header
    assert "\n" not in header
    assert header == (
        'Bearer error="invalid_token", error_description="bad \'x\'??Set-Cookie: a=b/"'
    )


@given(st.text(max_size=100), st.text(max_size=30))
def test_challenge_values_stay_inside_the_rfc6750_grammar(message: str, realm: str) -> None:
    header = www_authenticate(InvalidToken("malformed", message or "x"), realm=realm)
    assert header.isascii()
    assert all(0x20 <= ord(c) <= 0x7E for c in header)
    # Every quoted value is free of quotes and backslashes: exactly the delimiting quotes.
    assert header.count('"') == 6
    assert "\\" not in header


# --- interoperability ----------------------------------------------------------------------


# joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name in favour of "Ed25519";
# the token is still verified, which is what this test pins.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_joserfc_verifies_our_tokens_from_the_public_jwks(clock: FakeClock, alg: str) -> None:
    """A consumer that knows only our JWKS (and uses another library) accepts our tokens."""
    ring = ring_for(clock, alg)
    token, claims = TokenIssuer(ring, ISS, AUD, TTL, clock).issue("user-1", "sid-1", "read", "app")
    jwks = json.loads(json.dumps(ring.public_jwks()))  # as served over HTTP
    assert all("d" not in jwk for jwk in jwks["keys"])
    decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[alg])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["kid"] == claims.kid
    assert decoded.claims == claims.to_payload()
