"""evolve, the records' fast dataclasses.replace: the same copy, the same refusals."""

from __future__ import annotations

import dataclasses

import pytest

from storage.models import Change, Conversation, Identity, UserInfo, evolve


def _conversation() -> Conversation:
    return Conversation(
        id="c1", account_id="a1", source_app="liveoperator", status="open", mode="bot",
        operator_id=None, team_id=None, user_info=UserInfo("Ann", email="ann@x.test"),
        created=1.0, last_activity=2.0, resolved_at=None, last_seq=3, unread=1,
        operator_read_seq=0, visitor_read_seq=0, site_id=1, session_id=None, block_type=None,
        translate=False, visitor_lang=None, preview="hi", attributes='{"plan": "pro"}',
    )  # fmt: skip


def test_evolve_copies_as_replace_does() -> None:
    convo = _conversation()
    changes = {"status": "active", "operator_id": 7, "unread": 0, "control": "human"}
    evolved = evolve(convo, **changes)  # type: ignore[arg-type]
    assert evolved == dataclasses.replace(convo, **changes)  # type: ignore[arg-type]
    assert evolved is not convo and convo.status == "open"
    assert evolve(convo) == convo


def test_evolve_copies_records_with_defaults_and_of_one_field() -> None:
    change = Change(None, _conversation())
    assert evolve(change, typed=(Identity("email", "ann@x.test"),)).typed == (
        Identity("email", "ann@x.test"),
    )
    assert evolve(change, typed=()) == change

    @dataclasses.dataclass(frozen=True)
    class Single:
        only: int

    assert evolve(Single(1), only=2) == Single(2)
    assert evolve(Single(1)) == Single(1)


def test_evolve_refuses_a_field_the_record_lacks() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        evolve(_conversation(), colour="red")  # type: ignore[call-arg]


def test_evolve_refuses_a_class_whose_init_is_not_its_fields() -> None:
    @dataclasses.dataclass(frozen=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Named:
        a: int

    for refused in (Derived(1), Named(a=1)):
        with pytest.raises(TypeError, match="not a record"):
            evolve(refused, a=2)
