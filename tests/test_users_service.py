"""UserService: registration rules, constant-work authentication, rehash, change hooks."""

from __future__ import annotations

import dataclasses

import argon2
import pytest

from tessera.clock import FakeClock
from tessera.errors import Conflict, InvalidInput, NotFound
from tessera.identity.accounts import UserService
from tessera.identity.events import EventKind, EventLog, MemoryEventStore
from tessera.identity.passwords import FAST_INSECURE_PROFILE, MAX_PASSWORD_BYTES, PasswordHasher
from tessera.identity.users import MemoryUserStore, User

PASSWORD = "correct horse battery"


@pytest.fixture
def events(clock: FakeClock) -> EventLog:
    return EventLog(MemoryEventStore(), clock)


@pytest.fixture
def service(clock: FakeClock, events: EventLog) -> UserService:
    return UserService(
        MemoryUserStore(), PasswordHasher(FAST_INSECURE_PROFILE), clock, events=events
    )


@pytest.fixture
def argon2_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the argon2 operations run (a spy: counts, not wall-clock time)."""
    calls: list[str] = []
    real_verify, real_hash = argon2.PasswordHasher.verify, argon2.PasswordHasher.hash

    def verify(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append("verify")
        return real_verify(self, hash, password)

    def hash_(
        self: argon2.PasswordHasher, password: str | bytes, *, salt: bytes | None = None
    ) -> str:
        calls.append("hash")
        return real_hash(self, password, salt=salt)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    monkeypatch.setattr(argon2.PasswordHasher, "hash", hash_)
    return calls


async def test_register_stores_a_hashed_password_and_normalised_names(
    service: UserService, clock: FakeClock
) -> None:
    user = await service.register("\uff21lice", PASSWORD, email=" Alice@Example.com ")
    assert user.username == "Alice"
    assert user.email == "Alice@Example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert user.created_at == user.password_changed_at == clock.now()
    assert len(user.id) == 32
    assert await service.store.get_by_username("alice") == user


async def test_user_ids_are_random(service: UserService) -> None:
    a = await service.register("a1", PASSWORD)
    b = await service.register("a2", PASSWORD)
    assert a.id != b.id


@pytest.mark.parametrize(
    ("username", "password", "email", "code"),
    [
        ("bad name", PASSWORD, None, "invalid_username"),
        ("\u0430lice", PASSWORD, None, "invalid_username"),
        ("alice", "short", None, "password_too_short"),
        ("alice", "x" * (MAX_PASSWORD_BYTES + 1), None, "password_too_long"),
        ("alice", PASSWORD, "not-an-email", "invalid_email"),
    ],
)
async def test_register_refuses_bad_input_before_hashing(
    service: UserService,
    argon2_work: list[str],
    username: str,
    password: str,
    email: str | None,
    code: str,
) -> None:
    with pytest.raises(InvalidInput) as info:
        await service.register(username, password, email)
    assert info.value.code == code
    assert argon2_work == []


async def test_register_refuses_a_name_taken_in_another_case(service: UserService) -> None:
    await service.register("alice", PASSWORD)
    with pytest.raises(Conflict):
        await service.register("ALICE", PASSWORD)


async def test_authenticate_accepts_the_right_password_in_any_name_case(
    service: UserService,
) -> None:
    user = await service.register("alice", PASSWORD)
    assert await service.authenticate("Alice", PASSWORD) == user
    assert await service.authenticate("alice", PASSWORD + "x") is None


async def test_every_failure_costs_exactly_one_verification(
    service: UserService, argon2_work: list[str]
) -> None:
    """Unknown user, wrong password, disabled user: same argon2 work as a success."""
    user = await service.register("alice", PASSWORD)
    await service.register("carol", PASSWORD)
    await service.disable((await service.store.get_by_username("carol")).id)  # type: ignore[union-attr]
    await service.authenticate("nobody", PASSWORD)  # computes the dummy hash once, lazily
    outcomes = {}
    for name, password in [
        ("alice", PASSWORD),
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("\u0430lice", PASSWORD),  # not even a valid username
        ("carol", PASSWORD),
    ]:
        argon2_work.clear()
        outcomes[(name, password)] = await service.authenticate(name, password)
        assert argon2_work == ["verify"], (name, password)
    assert outcomes.pop(("alice", PASSWORD)) == user
    assert set(outcomes.values()) == {None}


async def test_over_long_passwords_cost_nothing_for_known_and_unknown_users(
    service: UserService, argon2_work: list[str]
) -> None:
    await service.register("alice", PASSWORD)
    argon2_work.clear()
    long = "x" * (MAX_PASSWORD_BYTES + 1)
    assert await service.authenticate("alice", long) is None
    assert await service.authenticate("nobody", long) is None
    assert argon2_work == []


async def test_login_upgrades_a_hash_made_with_old_parameters(
    clock: FakeClock, events: EventLog
) -> None:
    store = MemoryUserStore()
    old = await UserService(store, PasswordHasher(FAST_INSECURE_PROFILE), clock).register(
        "alice", PASSWORD
    )
    changed: list[User] = []

    async def on_change(user: User) -> None:
        changed.append(user)

    newer = PasswordHasher(dataclasses.replace(FAST_INSECURE_PROFILE, time_cost=2))
    service = UserService(store, newer, clock, events=events, on_password_changed=[on_change])
    clock.advance(60)
    user = await service.authenticate("alice", PASSWORD)
    assert user is not None
    assert user.password_hash != old.password_hash
    assert not newer.needs_rehash(user.password_hash)
    assert user.password_changed_at == old.password_changed_at
    assert user.updated_at == clock.now()
    assert changed == []  # same password: sessions stay
    assert await events.list_for_user(user.id) == []
    assert await service.authenticate("alice", PASSWORD) == user  # no second rehash


async def test_change_password_runs_hooks_and_records_an_event(
    service: UserService, clock: FakeClock, events: EventLog
) -> None:
    user = await service.register("alice", PASSWORD)
    revoked: list[str] = []

    async def revoke(u: User) -> None:
        revoked.append(u.id)

    service.on_password_changed.append(revoke)
    clock.advance(30)
    changed = await service.change_password(user.id, "a brand new password")
    assert changed.password_changed_at == clock.now()
    assert revoked == [user.id]
    assert await service.authenticate("alice", PASSWORD) is None
    assert await service.authenticate("alice", "a brand new password") == changed
    [event] = await events.list_for_user(user.id)
    assert event.kind is EventKind.PASSWORD_CHANGED


async def test_change_password_checks_the_new_password_and_the_user(
    service: UserService,
) -> None:
    user = await service.register("alice", PASSWORD)
    with pytest.raises(InvalidInput):
        await service.change_password(user.id, "short")
    with pytest.raises(NotFound):
        await service.change_password("ghost", "long enough password")


async def test_disable_blocks_login_runs_hooks_and_enable_restores(
    service: UserService, events: EventLog
) -> None:
    user = await service.register("alice", PASSWORD)
    seen: list[bool] = []

    async def hook(u: User) -> None:
        seen.append(u.disabled)

    service.on_disabled.append(hook)
    await service.disable(user.id)
    assert seen == [True]
    assert await service.authenticate("alice", PASSWORD) is None
    assert [e.kind for e in await events.list_for_user(user.id)] == [EventKind.USER_DISABLED]
    await service.enable(user.id)
    assert await service.authenticate("alice", PASSWORD) is not None


async def test_a_failing_hook_does_not_stop_the_others_and_is_raised(
    service: UserService,
) -> None:
    user = await service.register("alice", PASSWORD)
    ran: list[str] = []

    async def broken(_: User) -> None:
        ran.append("broken")
        raise RuntimeError("session store down")

    async def fine(_: User) -> None:
        ran.append("fine")

    service.on_password_changed.extend([broken, fine])
    with pytest.raises(RuntimeError, match="session store down"):
        await service.change_password(user.id, "another good password")
    assert ran == ["broken", "fine"]


async def test_set_email_records_an_event(service: UserService, events: EventLog) -> None:
    user = await service.register("alice", PASSWORD)
    assert (await service.set_email(user.id, "a@example.com")).email == "a@example.com"
    assert [e.kind for e in await events.list_for_user(user.id)] == [EventKind.EMAIL_CHANGED]
