"""The UserStore contract, run against memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.errors import Conflict, NotFound
from tessera.identity.users import MemoryUserStore, User, UserStore
from tessera.stores.sql_users import SqlUserStore, users_table

T0 = 1_800_000_000.0


def make_user(username: str, email: str | None = None, user_id: str | None = None) -> User:
    return User(
        id=user_id or f"id-{username.lower()}-{email}",
        username=username,
        email=email,
        password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
        disabled=False,
        created_at=T0,
        updated_at=T0,
        password_changed_at=T0,
    )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> UserStore:
    """Each store implementation, on a fresh database."""
    if request.param == "memory":
        return MemoryUserStore()
    return SqlUserStore(request.getfixturevalue(f"{request.param}_engine"))


async def test_store_satisfies_the_protocol(store: UserStore) -> None:
    assert isinstance(store, UserStore)


async def test_created_user_is_found_by_id_name_and_email_in_any_case(store: UserStore) -> None:
    user = make_user("Alice", "Alice@Example.com")
    await store.create(user)
    assert await store.get_by_id(user.id) == user
    assert await store.get_by_username("alice") == user
    assert await store.get_by_username("ALICE") == user
    assert await store.get_by_username("\uff21lice") == user  # full-width A
    assert await store.get_by_email("alice@EXAMPLE.COM") == user
    assert await store.get_by_id("nope") is None
    assert await store.get_by_username("bob") is None


async def test_lookups_with_invalid_text_find_nobody(store: UserStore) -> None:
    await store.create(make_user("admin"))
    assert await store.get_by_username("\u0430dmin") is None  # Cyrillic a
    assert await store.get_by_username("admin\x00") is None
    assert await store.get_by_email("not an email") is None


@pytest.mark.parametrize("second", ["alice", "ALICE", "aLiCe", "\uff41lice"])
async def test_username_taken_in_another_case_is_a_conflict(store: UserStore, second: str) -> None:
    await store.create(make_user("Alice", user_id="u1"))
    with pytest.raises(Conflict) as info:
        await store.create(make_user(second.replace("\uff41", "a"), user_id="u2"))
    assert info.value.code == "username_taken"
    assert info.value.http_status == 409
    assert [u.id for u in await store.list()] == ["u1"]


async def test_email_taken_in_another_case_is_a_conflict(store: UserStore) -> None:
    await store.create(make_user("alice", "alice@example.com"))
    with pytest.raises(Conflict) as info:
        await store.create(make_user("bob", "ALICE@example.com"))
    assert info.value.code == "email_taken"


async def test_conflict_code_does_not_depend_on_the_values(store: UserStore) -> None:
    """A username that reads like a column name still reports the username as taken."""
    await store.create(make_user("email_key", "x@example.com", user_id="u1"))
    with pytest.raises(Conflict) as info:
        await store.create(make_user("EMAIL_KEY", "email_key@example.com", user_id="u2"))
    assert info.value.code == "username_taken"


async def test_many_users_may_have_no_email(store: UserStore) -> None:
    await store.create(make_user("a1"))
    await store.create(make_user("a2"))
    assert [u.username for u in await store.list()] == ["a1", "a2"]


async def test_list_is_ordered_by_name_ignoring_case_and_pages(store: UserStore) -> None:
    for name in ["carol", "Bob", "alice", "Dave"]:
        await store.create(make_user(name))
    assert [u.username for u in await store.list()] == ["alice", "Bob", "carol", "Dave"]
    assert [u.username for u in await store.list(limit=2, offset=1)] == ["Bob", "carol"]


async def test_set_password_hash_moves_password_changed_at(store: UserStore) -> None:
    user = make_user("alice")
    await store.create(user)
    changed = await store.set_password_hash(user.id, "$argon2id$new", T0 + 10)
    assert changed == replace(
        user, password_hash="$argon2id$new", updated_at=T0 + 10, password_changed_at=T0 + 10
    )
    assert await store.get_by_id(user.id) == changed


async def test_rehash_keeps_password_changed_at(store: UserStore) -> None:
    user = make_user("alice")
    await store.create(user)
    rehashed = await store.set_password_hash(
        user.id, "$argon2id$re", T0 + 10, password_changed=False
    )
    assert rehashed.password_changed_at == T0
    assert rehashed.updated_at == T0 + 10
    assert (await store.get_by_id(user.id)) == rehashed


async def test_disable_and_enable(store: UserStore) -> None:
    user = make_user("alice")
    await store.create(user)
    assert (await store.set_disabled(user.id, True, T0 + 1)).disabled
    assert (await store.get_by_username("alice")).disabled  # type: ignore[union-attr]
    assert not (await store.set_disabled(user.id, False, T0 + 2)).disabled


async def test_set_email_changes_clears_and_refuses_taken_addresses(store: UserStore) -> None:
    alice, bob = make_user("alice", "a@example.com"), make_user("bob", "b@example.com")
    await store.create(alice)
    await store.create(bob)
    with pytest.raises(Conflict) as info:
        await store.set_email(bob.id, "A@EXAMPLE.com", T0 + 1)
    assert info.value.code == "email_taken"
    assert (await store.get_by_id(bob.id)).email == "b@example.com"  # type: ignore[union-attr]
    moved = await store.set_email(alice.id, " New@Example.com ", T0 + 2)
    assert moved.email == "New@Example.com"
    assert await store.get_by_email("new@example.com") == moved
    assert await store.get_by_email("a@example.com") is None
    # The freed address can be taken by someone else now.
    await store.set_email(bob.id, "a@example.com", T0 + 3)
    cleared = await store.set_email(alice.id, None, T0 + 4)
    assert cleared.email is None
    assert await store.get_by_email("new@example.com") is None
    assert (await store.set_email(alice.id, "alice@example.com", T0 + 5)).email


async def test_setting_your_own_email_again_is_no_conflict(store: UserStore) -> None:
    alice = make_user("alice", "a@example.com")
    await store.create(alice)
    assert (await store.set_email(alice.id, "A@example.com", T0 + 1)).email == "A@example.com"


async def test_updates_of_unknown_users_raise_not_found(store: UserStore) -> None:
    for update in (
        store.set_password_hash("ghost", "h", T0),
        store.set_disabled("ghost", True, T0),
        store.set_email("ghost", "g@example.com", T0),
    ):
        with pytest.raises(NotFound):
            await update


async def test_concurrent_registrations_of_one_name_let_exactly_one_win(
    store: UserStore,
) -> None:
    results = await asyncio.gather(
        *(store.create(make_user(n, user_id=n)) for n in ["Zed", "zed", "ZED", "zeD"]),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if r is not None)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> AsyncEngine:
    """Each SQL database."""
    sql_engine: AsyncEngine = request.getfixturevalue(f"{request.param}_engine")
    return sql_engine


async def test_the_database_itself_refuses_case_duplicates(engine: AsyncEngine) -> None:
    """Uniqueness is a constraint, not a Python check: a raw INSERT is refused too."""
    await SqlUserStore(engine).create(make_user("Alice"))
    row = {
        "id": "raw",
        "username": "ALICE",
        "username_key": "alice",
        "password_hash": "h",
        "disabled": False,
        "created_at": T0,
        "updated_at": T0,
        "password_changed_at": T0,
    }
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(users_table).values(**row))
