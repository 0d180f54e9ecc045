"""Consent: registry, the signed consent cookie, enforcement of Set-Cookies and withdrawals."""

from __future__ import annotations

import logging

import pytest

from tessera.clock import FakeClock
from tessera.consent import (
    Category,
    ConsentManager,
    ConsentState,
    CookieDeclaration,
    CookieRegistry,
)
from tessera.cookies import Cookie, CookiePolicy, SignedCookies
from tessera.errors import ConfigError, ConsentRequired, CookieError
from tessera.keys import HmacKey
from tessera.metrics import Metrics

KEY = HmacKey("k1", b"k" * 32)
DECLARATIONS = [
    CookieDeclaration("consent", Category.ESSENTIAL, "Remembers your cookie choices."),
    CookieDeclaration("session", Category.ESSENTIAL, "Keeps you signed in."),
    CookieDeclaration("theme", Category.PREFERENCES, "Remembers light or dark mode."),
    CookieDeclaration("_stats", Category.ANALYTICS, "Counts visits.", domain="example.org"),
    CookieDeclaration("ads", Category.ADVERTISING, "Ad frequency.", path="/shop"),
]


def manager(
    *,
    version: int = 1,
    clock: FakeClock | None = None,
    metrics: Metrics | None = None,
    policy: CookiePolicy | None = None,
) -> ConsentManager:
    return ConsentManager(
        CookieRegistry(DECLARATIONS, consent_version=version),
        [KEY],
        policy=policy or CookiePolicy(),
        clock=clock or FakeClock(),
        metrics=metrics or Metrics(),
    )


# --- declarations and registry -------------------------------------------------------------


def test_lookup_ignores_prefix_in_any_case_but_not_name_case() -> None:
    registry = CookieRegistry(DECLARATIONS)
    assert registry.lookup("__Host-session") is registry.lookup("session")
    assert registry.lookup("__secure-theme") is registry.lookup("theme")
    assert registry.lookup("Session") is None
    assert registry.lookup("unknown") is None
    assert [d.name for d in registry.in_category(Category.ESSENTIAL)] == ["consent", "session"]
    assert len(registry) == len(list(registry)) == 5


def test_declaration_rules() -> None:
    with pytest.raises(ConsentRequired):
        CookieDeclaration("x", "analytics", "p")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        CookieDeclaration("__Host-x", Category.ESSENTIAL, "p")
    with pytest.raises(ConfigError):
        CookieDeclaration("x", Category.ESSENTIAL, "  ")
    with pytest.raises(CookieError):
        CookieDeclaration("bad name", Category.ESSENTIAL, "p")
    with pytest.raises(CookieError):
        CookieDeclaration("", Category.ESSENTIAL, "p")


def test_registry_rules() -> None:
    with pytest.raises(ConfigError):
        CookieRegistry([DECLARATIONS[0], DECLARATIONS[0]])
    with pytest.raises(ConfigError):
        CookieRegistry(DECLARATIONS, consent_version=0)


def test_consent_cookie_must_be_declared_essential() -> None:
    with pytest.raises(ConfigError):
        ConsentManager(CookieRegistry(DECLARATIONS[1:]), [KEY], policy=CookiePolicy())


def test_essential_is_always_granted() -> None:
    state = ConsentState(1, frozenset({Category.ANALYTICS}), 5.0)
    assert state.allows(Category.ESSENTIAL)
    assert state.allows(Category.ANALYTICS)
    assert not state.allows(Category.ADVERTISING)
    assert ConsentState.undecided(1).granted == {Category.ESSENTIAL}
    assert not ConsentState.undecided(1).decided


# --- the consent cookie --------------------------------------------------------------------


def test_consent_cookie_round_trip_and_attributes() -> None:
    consent = manager(clock=FakeClock(1000.0)).cookie
    state = consent.decide([Category.ANALYTICS])
    cookie = consent.cookie(state)
    assert cookie.name == "__Host-consent"
    assert (cookie.secure, cookie.http_only, cookie.max_age) == (True, True, 180 * 86400)
    assert consent.read({"__Host-consent": cookie.value}) == state
    assert state.decided_at == 1000.0


def test_development_mode_consent_cookie_has_no_prefix() -> None:
    consent = manager(policy=CookiePolicy.development()).cookie
    cookie = consent.cookie(consent.decide([]))
    assert (cookie.name, cookie.secure) == ("consent", False)


def test_missing_forged_or_expired_consent_reads_as_undecided() -> None:
    clock, metrics = FakeClock(), Metrics()
    consent = manager(clock=clock, metrics=metrics).cookie
    value = consent.cookie(consent.decide([Category.ANALYTICS])).value
    assert not consent.read({}).decided
    assert not consent.read({"__Host-consent": value[:-2] + "xx"}).decided
    assert metrics.get("cookies.signature_invalid") == 1
    clock.advance(180 * 86400 + 1)
    assert not consent.read({"__Host-consent": value}).decided
    assert metrics.get("cookies.expired") == 1


def test_older_consent_version_reads_as_undecided() -> None:
    old = manager(version=1).cookie
    value = old.cookie(old.decide([Category.ANALYTICS])).value
    assert manager(version=1).cookie.read({"__Host-consent": value}).decided
    assert not manager(version=2).cookie.read({"__Host-consent": value}).decided


def test_a_value_signed_for_another_purpose_is_not_consent() -> None:
    other = SignedCookies([KEY], purpose="prefs", max_age=60, clock=FakeClock())
    forged = other.sign("__Host-consent", b'{"v":1,"g":["analytics"],"t":1}')
    assert not manager().cookie.read({"__Host-consent": forged}).decided


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"v":1,"g":["cookies"],"t":1}',
        b'{"v":true,"g":[],"t":1}',
        b'{"v":1,"g":"analytics","t":1}',
        b'{"v":1,"g":[],"t":1.5}',
        b'{"v":1}',
    ],
)
def test_genuine_but_unreadable_payload_reads_as_undecided(payload: bytes) -> None:
    """A correctly signed payload that is not a current state is ignored, never an error."""
    signer = SignedCookies([KEY], purpose="consent", max_age=60, clock=FakeClock())
    value = signer.sign("__Host-consent", payload)
    assert not manager().cookie.read({"__Host-consent": value}).decided


def test_undecided_state_is_not_written() -> None:
    with pytest.raises(ConfigError):
        manager().cookie.cookie(ConsentState.undecided(1))


# --- enforcement ---------------------------------------------------------------------------


def test_non_consented_and_undeclared_cookies_dropped(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    enforcer = manager(metrics=metrics).enforcer
    consent = ConsentState(1, frozenset({Category.PREFERENCES}), 1.0)
    outgoing: list[Cookie | str] = [
        Cookie("__Host-session", "s"),
        "theme=dark; Path=/",
        "_stats=1; Domain=example.org; Path=/",
        Cookie("ads", "7", path="/shop"),
        "tracker=secret-value; Path=/",
    ]
    with caplog.at_level(logging.INFO, logger="tessera.consent"):
        kept = enforcer.filter(outgoing, consent=consent)
    assert kept == outgoing[:2]
    assert metrics.get("consent.cookie_dropped") == 3
    assert metrics.get("consent.cookie_undeclared") == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'tracker'" in warnings[0].getMessage()
    assert all("secret-value" not in r.getMessage() for r in caplog.records)


def test_undecided_visitor_gets_only_essential_cookies() -> None:
    kept = manager().enforcer.filter(
        ["__Host-session=s", "theme=dark", "_stats=1"], consent=ConsentState.undecided(1)
    )
    assert kept == ["__Host-session=s"]


def test_deletions_always_pass_even_undeclared() -> None:
    outgoing = ["tracker=; Max-Age=0", Cookie("_stats", "x", domain="example.org").deletion()]
    assert manager().enforcer.filter(outgoing, consent=ConsentState.undecided(1)) == outgoing


def test_new_decision_deletes_refused_cookies_present_in_request() -> None:
    enforcer = manager().enforcer
    request = {"__Host-session": "s", "_stats": "1", "ads": "2", "theme": "t", "other": "o"}
    new = ConsentState(1, frozenset({Category.PREFERENCES}), 1.0)
    kept = enforcer.filter(["ads=; Max-Age=0; Path=/shop"], consent=new, request_cookies=request)
    assert kept[0] == "ads=; Max-Age=0; Path=/shop"
    (stats,) = kept[1:]  # ads already deleted by the response: not deleted twice
    assert isinstance(stats, Cookie)
    assert stats.serialize() == (
        "_stats=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Domain=example.org; "
        "Path=/; Secure; HttpOnly; SameSite=Lax"
    )


def test_prefixed_request_cookie_deletion_keeps_prefix_rules() -> None:
    registry = CookieRegistry([*DECLARATIONS, CookieDeclaration("pref", Category.PREFERENCES, "p")])
    dev = ConsentManager(registry, [KEY], policy=CookiePolicy.development())
    (deletion,) = dev.enforcer.refused_deletions(
        ConsentState.undecided(1), {"__Host-pref": "x", "__Host-session": "s"}
    )
    assert (deletion.name, deletion.secure, deletion.path, deletion.max_age) == (
        "__Host-pref",
        True,
        "/",
        0,
    )


def test_consent_response_cookies_sets_consent_and_deletes_withdrawn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consent_manager = manager()
    old = consent_manager.cookie.decide([Category.ANALYTICS, Category.PREFERENCES])
    new = consent_manager.cookie.decide([Category.PREFERENCES])
    with caplog.at_level(logging.INFO, logger="tessera.consent"):
        cookies = consent_manager.consent_response_cookies(
            old, new, {"_stats": "1", "theme": "dark", "__Host-consent": "old"}
        )
    assert [c.name for c in cookies] == ["__Host-consent", "_stats"]
    assert consent_manager.cookie.read({"__Host-consent": cookies[0].value}) == new
    assert cookies[1].max_age == 0
    assert any("withdrawn for analytics" in r.getMessage() for r in caplog.records)
