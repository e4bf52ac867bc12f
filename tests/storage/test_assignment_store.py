"""Issue 18 in the Store, on SQLite and PostgreSQL: a team's round robin (its settings, the
cursor moved in the transaction that creates the conversation, two stores over one database
taking turns) and operators' personal canned responses."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.conversations import round_robin
from server.events import announce
from storage import create_store
from storage.base import CannedPatch, OperatorPatch, Store, TeamPatch, UnknownReference
from storage.models import Change, Committed, Conversation, Roster, UserInfo
from tests.conftest import TEST_PASSWORD_HASH
from tests.storage.conftest import BACKENDS


async def _account(store: Store) -> str:
    account_id = secrets.token_hex(8)
    await store.create_account(account_id, "acme", secrets.token_hex(32))
    return account_id


async def _operators(store: Store, account_id: str, n: int) -> list[int]:
    return [
        (
            await store.create_operator(
                account_id, f"Op {i}", f"op{i}@{account_id}.test", TEST_PASSWORD_HASH, False
            )
        ).id
        for i in range(n)
    ]


def _fresh(account_id: str, team_id: int) -> Conversation:
    return Conversation(
        id=secrets.token_urlsafe(16), account_id=account_id, source_app="liveoperator",
        status="open", mode="bot", operator_id=None, team_id=team_id, user_info=UserInfo(),
        created=1000.0, last_activity=1000.0, resolved_at=None,
    )  # fmt: skip


async def _create(
    store: Store, account_id: str, team_id: int, available: frozenset[int]
) -> tuple[Committed, Roster | None]:
    """A new conversation routed to the team, through the engine's round robin; also returns
    the roster the decision saw."""
    seen: list[Roster | None] = []

    def decide(current: Conversation | None, roster: Roster | None) -> Change:
        assert current is None
        seen.append(roster)
        return announce(round_robin(Change(None, _fresh(account_id, team_id)), roster, available))

    committed = await store.write_routed(account_id, team_id, decide)
    return committed, seen[-1]


async def test_team_settings_are_kept_and_patched(store: Store) -> None:
    account = await _account(store)
    ops = await _operators(store, account, 2)
    team = await store.create_team(account, "Sales", ops, auto_assign=True, assign_limit=3)
    assert (team.auto_assign, team.assign_limit, team.member_ids) == (True, 3, tuple(ops))
    assert await store.list_teams(account) == [team]
    off = await store.update_team(account, team.id, TeamPatch(auto_assign=False, assign_limit=0))
    assert off is not None and (off.auto_assign, off.assign_limit) == (False, 0)
    # A patch that leaves the settings out leaves them alone.
    renamed = await store.update_team(account, team.id, TeamPatch(name="Deals"))
    assert renamed is not None and (renamed.name, renamed.auto_assign) == ("Deals", False)
    plain = await store.create_team(account, "Support", [])
    assert (plain.auto_assign, plain.assign_limit) == (False, 0)


async def test_the_round_robin_takes_turns_and_passes_over_who_is_away_or_full(
    store: Store,
) -> None:
    account = await _account(store)
    a, b, c = await _operators(store, account, 3)
    team = await store.create_team(account, "Sales", [a, b, c], auto_assign=True, assign_limit=2)
    everyone = frozenset({a, b, c})

    owners = [(await _create(store, account, team.id, everyone))[0] for _ in range(3)]
    assert [o.conversation.operator_id for o in owners] == [a, b, c]
    # Announced like any owner: the new conversation's event carries it.
    assert f'"operator_id":{a}' in (owners[0].events[0].data or "")

    # b is away: the turn after c goes to a, then to c (b skipped), who is then full.
    committed, roster = await _create(store, account, team.id, frozenset({a, c}))
    assert committed.conversation.operator_id == a
    assert roster is not None and roster.last_assigned == c and roster.load == {a: 1, b: 1, c: 1}
    assert (await _create(store, account, team.id, frozenset({a, c})))[
        0
    ].conversation.operator_id == c
    # a and c own two open conversations each: only b can take one, and then nobody.
    assert (await _create(store, account, team.id, everyone))[0].conversation.operator_id == b
    nobody, roster = await _create(store, account, team.id, everyone)
    assert nobody.conversation.operator_id is None
    assert roster is not None and roster.load == {a: 2, b: 2, c: 2}

    # Resolved conversations do not count toward the limit.
    def resolve(current: Conversation | None) -> Change:
        assert current is not None
        return announce(Change(current, dataclasses.replace(current, status="resolved")))

    await store.write(account, owners[0].conversation.id, resolve)
    assert (await _create(store, account, team.id, everyone))[0].conversation.operator_id == a


async def test_a_team_that_does_not_auto_assign_leaves_the_queue_alone(store: Store) -> None:
    account = await _account(store)
    (a,) = await _operators(store, account, 1)
    team = await store.create_team(account, "Sales", [a])
    committed, roster = await _create(store, account, team.id, frozenset({a}))
    assert committed.conversation.operator_id is None
    assert roster is not None and not roster.auto_assign
    # A deleted team has no roster: the conversation is simply created.
    await store.delete_team(account, team.id)
    committed, roster = await _create(store, account, team.id, frozenset({a}))
    assert roster is None and committed.conversation.operator_id is None


async def test_deactivated_members_are_not_on_the_roster(store: Store) -> None:
    account = await _account(store)
    a, b = await _operators(store, account, 2)
    team = await store.create_team(account, "Sales", [a, b], auto_assign=True)
    await store.update_operator(account, a, OperatorPatch(active=False))
    committed, roster = await _create(store, account, team.id, frozenset({a, b}))
    assert roster is not None and roster.members == (b,)
    assert committed.conversation.operator_id == b


@pytest.fixture(params=BACKENDS)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def two_stores(shared_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores over one database, as two processes have."""
    first, second = create_store(shared_url), create_store(shared_url)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("limit", [0, 2])
async def test_two_stores_creating_at_once_take_turns(
    two_stores: tuple[Store, Store], limit: int
) -> None:
    first, second = two_stores
    account = await _account(first)
    ops = await _operators(first, account, 3)
    team = await first.create_team(account, "Sales", ops, auto_assign=True, assign_limit=limit)
    everyone = frozenset(ops)

    created = await asyncio.gather(
        *(_create((first, second)[i % 2], account, team.id, everyone) for i in range(12))
    )
    # In commit order (the account's event seq), the owners go round one after another.
    in_order = sorted((c.events[0].seq, c.conversation.operator_id) for c, _ in created)
    owners = [owner for _, owner in in_order]
    if limit == 0:
        assert owners == ops * 4
    else:
        assert owners == ops * 2 + [None] * 6
    assert Counter(o for o in owners if o is not None) == Counter(
        {o: 4 if limit == 0 else 2 for o in ops}
    )


async def test_personal_canned_responses_belong_to_their_operator(store: Store) -> None:
    account = await _account(store)
    a, b = await _operators(store, account, 2)
    shared = await store.create_canned(account, "Hi", "", "Hello")
    mine = await store.create_canned(account, "Mine", "own", "Hi {fname}", a)
    theirs = await store.create_canned(account, "Theirs", "", "Yo", b)
    # One numbering for all of an account's responses.
    assert (shared.id, mine.id, theirs.id) == (1, 2, 3)
    assert mine.owner == a and shared.owner is None

    assert await store.list_canned(account) == [shared]
    assert await store.list_canned(account, a) == [mine]
    assert await store.get_canned(account, mine.id) == mine

    # Each changes only their own; the account's are not anybody's own.
    assert await store.update_canned(account, theirs.id, CannedPatch(name="X"), a) is None
    assert await store.update_canned(account, shared.id, CannedPatch(name="X"), a) is None
    assert await store.update_canned(account, mine.id, CannedPatch(name="X")) is None
    updated = await store.update_canned(account, mine.id, CannedPatch(message="Hey"), a)
    assert updated is not None and (updated.name, updated.message, updated.owner) == (
        "Mine",
        "Hey",
        a,
    )
    assert not await store.delete_canned(account, theirs.id, a)
    assert not await store.delete_canned(account, theirs.id)
    assert await store.delete_canned(account, mine.id, a)
    assert await store.list_canned(account, a) == []

    with pytest.raises(UnknownReference):
        await store.create_canned(account, "Ghost", "", "Boo", 99)
    # An operator's responses go with them.
    await store.delete_operator(account, b)
    assert await store.get_canned(account, theirs.id) is None
    assert await store.list_canned(account) == [shared]


async def test_a_waiting_conversation_takes_its_turn_and_an_unchanged_one_moves_nothing(
    store: Store,
) -> None:
    account = await _account(store)
    a, b = await _operators(store, account, 2)
    team = await store.create_team(account, "Sales", [a, b], auto_assign=True)
    waiting, _ = await _create(store, account, team.id, frozenset())
    assert waiting.conversation.operator_id is None
    seen: list[Roster | None] = []

    def take(current: Conversation | None, roster: Roster | None) -> Change | None:
        assert current is not None
        seen.append(roster)
        change = round_robin(Change(current, current), roster, frozenset({b}))
        return None if change.after == current else announce(change)

    taken = await store.write_routed(account, team.id, take, convo_id=waiting.conversation.id)
    assert taken.conversation.operator_id == b and taken.before is not None
    # Owned now: the same decision changes nothing, and the turn stays where it was.
    again = await store.write_routed(account, team.id, take, convo_id=waiting.conversation.id)
    assert again.events == () and again.conversation.operator_id == b
    assert [r.last_assigned if r else None for r in seen] == [0, b]
    assert (await _create(store, account, team.id, frozenset({a, b})))[
        0
    ].conversation.operator_id == a
