"""The secrets file and TESSERA_SECRET_KEY: parsing, validation, errors naming the problem."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.errors import ConfigError
from tessera.keys import HmacKey, KeyUse, ManagedKey, SigningKey, new_key
from tessera.keys_file import dump_secrets_file, env_hmac_key, parse_secrets_file
from tessera.keys_material import b64url_decode, b64url_encode

SECRET = b64url_encode(b"0123456789abcdef0123456789abcdef")


@pytest.fixture(scope="module")
def ed_pem() -> str:
    return SigningKey.generate("EdDSA").private_pem()


@pytest.fixture(scope="module")
def es_key() -> SigningKey:
    return SigningKey.generate("ES256")


def document(*entries: dict[str, Any]) -> str:
    return json.dumps({"keys": list(entries)})


def test_file_with_every_kind_of_key_loads(ed_pem: str, es_key: SigningKey) -> None:
    text = document(
        {"use": "hmac", "secret": SECRET, "activated_at": 100},
        {"use": "sign", "alg": "EdDSA", "pem": ed_pem, "activated_at": "2027-01-01T00:00:00Z"},
        {"use": "sign", "alg": "ES256", "jwk": es_key.private_jwk(), "retiring_at": 5e9},
        {"use": "sign", "alg": "HS256", "secret": SECRET, "kid": "shared"},
    )
    hmac, ed, es, hs = parse_secrets_file(text)
    assert isinstance(hmac.key, HmacKey)
    assert hmac.key.secret == b64url_decode(SECRET)
    assert (hmac.activated_at, hmac.created_at) == (100.0, 100.0)
    assert ed.alg == "EdDSA"
    assert ed.activated_at == 1798761600.0
    assert ed.kid == SigningKey.from_pem(ed_pem, "EdDSA").kid
    assert es.kid == es_key.kid
    assert (es.activated_at, es.retiring_at, es.retired_at) == (0.0, 5e9, None)
    assert (hs.kid, hs.alg, hs.use) == ("shared", "HS256", KeyUse.SIGN)


def test_bare_list_is_accepted() -> None:
    [key] = parse_secrets_file(json.dumps([{"use": "hmac", "secret": SECRET}]))
    assert key.use is KeyUse.HMAC


def test_derived_kids_are_stable_across_loads(ed_pem: str) -> None:
    text = document(
        {"use": "hmac", "secret": SECRET}, {"use": "sign", "alg": "EdDSA", "pem": ed_pem}
    )
    assert [k.kid for k in parse_secrets_file(text)] == [k.kid for k in parse_secrets_file(text)]


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256", "HS256"])
def test_dump_then_parse_round_trips(alg: str) -> None:
    keys = [
        new_key(KeyUse.HMAC, None, 10.0),
        ManagedKey(SigningKey.generate(alg), 1.0, 2.0, retiring_at=3.0, retired_at=4.0),
    ]
    parsed = parse_secrets_file(dump_secrets_file(keys))
    assert [k.to_record() for k in parsed] == [k.to_record() for k in keys]


BAD_ENTRIES: list[tuple[Any, str]] = [
    ({"use": "hmac"}, "keys[0]: needs exactly one of 'secret', 'pem', 'jwk'"),
    ({"use": "hmac", "secret": SECRET, "pem": "x"}, "needs exactly one"),
    ({"use": "cookie", "secret": SECRET}, "keys[0].use: must be 'hmac' or 'sign'"),
    ({"use": "hmac", "secret": SECRET, "retierd_at": 1}, "keys[0]: unknown member 'retierd_at'"),
    ({"use": "hmac", "secret": "c2hvcnQ"}, "keys[0].secret: an HMAC secret needs at least 32"),
    ({"use": "hmac", "secret": "not base64!"}, "keys[0].secret: not an unpadded base64url"),
    ({"use": "hmac", "secret": SECRET, "alg": "HS512"}, "keys[0].alg: hmac keys are HS256"),
    ({"use": "sign", "secret": SECRET}, "keys[0].alg: required for signing keys"),
    (
        {"use": "sign", "alg": "none", "secret": SECRET},
        "keys[0].alg: unsupported signing algorithm 'none'",
    ),
    ({"use": "sign", "alg": "EdDSA", "secret": SECRET}, "only HS256 signing keys are secrets"),
    ({"use": "sign", "alg": "EdDSA", "pem": "-----BEGIN"}, "keys[0].pem: not an unencrypted PEM"),
    ({"use": "sign", "alg": "ES256", "jwk": "{}"}, "keys[0].jwk: must be a JSON object"),
    ({"use": "sign", "alg": "ES256", "jwk": {"kty": "EC"}}, "keys[0].jwk: not a valid ES256 JWK"),
    ({"use": "hmac", "secret": SECRET, "kid": ""}, "keys[0].kid: must be a string"),
    ({"use": "hmac", "secret": SECRET, "activated_at": True}, "keys[0].activated_at: must be"),
    ({"use": "hmac", "secret": SECRET, "retired_at": -1}, "keys[0].retired_at: must be a finite"),
    ({"use": "hmac", "secret": SECRET, "retired_at": "tomorrow"}, "not an ISO 8601 date"),
    ({"use": "hmac", "secret": SECRET, "retired_at": "2027-01-01T00:00"}, "needs a UTC offset"),
    ({"use": "hmac", "secret": SECRET, "activated_at": 5, "retired_at": 4}, "times must satisfy"),
    ("a string", "keys[0]: expected an object"),
]


@pytest.mark.parametrize(("entry", "message"), BAD_ENTRIES)
def test_invalid_entry_raises_config_error_naming_the_problem(entry: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_secrets_file(document(entry), "secrets.json")
    assert info.value.message.startswith("secrets.json: ")
    assert message in info.value.message
    assert SECRET not in info.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        ('{"key": []}', 'expected {"keys": [...]}'),
        ("42", 'expected {"keys": [...]}'),
        ('{"keys": []}', "holds no keys"),
    ],
)
def test_invalid_document_raises_config_error(text: str | bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^secrets file: "):
        parse_secrets_file(text)
    with pytest.raises(ConfigError) as info:
        parse_secrets_file(text)
    assert message in info.value.message


def test_duplicate_kid_is_refused() -> None:
    entry = {"use": "hmac", "secret": SECRET}
    with pytest.raises(ConfigError, match=r"keys\[1\]\.kid: .* appears twice"):
        parse_secrets_file(document(entry, entry))


def test_pem_is_never_echoed_in_errors(ed_pem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_secrets_file(document({"use": "sign", "alg": "ES256", "pem": ed_pem}))
    assert "PRIVATE KEY" not in info.value.message
    assert "keys[0].pem: a Ed25519PrivateKey private key cannot be used for ES256" in str(
        info.value
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json_document_loads_or_raises_config_error(value: Any) -> None:
    try:
        keys = parse_secrets_file(json.dumps(value))
    except ConfigError:
        return
    assert all(isinstance(k, ManagedKey) for k in keys)


entry_values = st.one_of(
    st.sampled_from(["hmac", "sign", "HS256", "EdDSA", "ES256", SECRET, "2027-01-01T00:00:00Z"]),
    st.none(),
    st.integers(-10, 10**20),
    st.floats(),
    st.text(max_size=10),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)
entries = st.dictionaries(
    st.sampled_from(
        ["kid", "use", "alg", "secret", "pem", "jwk", "activated_at", "retiring_at", "retired_at"]
    ),
    entry_values,
)


@given(st.lists(entries, min_size=1, max_size=3))
def test_near_valid_entries_load_or_raise_config_error(items: list[dict[str, Any]]) -> None:
    """Entries built from the real member names, so the fuzzing reaches the member checks."""
    try:
        keys = parse_secrets_file(json.dumps({"keys": items}, allow_nan=True))
    except ConfigError:
        return
    assert len(keys) == len(items)


@given(st.binary(min_size=1, max_size=64))
def test_b64url_round_trips(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert "=" not in encoded
    assert b64url_decode(encoded) == data


@given(st.text(max_size=30))
def test_b64url_decoder_only_raises_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        b64url_decode(text)


def test_env_secret_gives_one_always_active_hmac_key_with_a_stable_kid() -> None:
    secret = "x" * 40
    key = env_hmac_key(secret)
    assert key.use is KeyUse.HMAC
    assert key.state(0.0).value == "active"
    assert key.kid == env_hmac_key(secret).kid != env_hmac_key("y" * 40).kid
    assert secret not in key.kid
    assert secret not in repr(key)


def test_short_env_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        env_hmac_key("short")
