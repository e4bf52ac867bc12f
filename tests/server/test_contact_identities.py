"""How identities are spelt (server/contacts.py): one person's ways of writing a number or an
address meet in one value, and what is not an identity of its kind is refused clearly."""

from __future__ import annotations

import pytest

from server.contacts import normalized, typed_identities
from server.errors import Invalid
from storage.models import Identity, IdentityKind, UserInfo


@pytest.mark.parametrize(
    ("kind", "given", "spelt"),
    [
        ("phone", "+1 (555) 765-4321", "+15557654321"),
        ("phone", " +15557654321 ", "+15557654321"),
        ("phone", "+44 20 7946 0958", "+442079460958"),
        ("phone", "+49-30-1234567", "+49301234567"),
        ("email", "Ada@Example.COM", "Ada@example.com"),
        ("email", " ada@example.com ", "ada@example.com"),
        ("session", "sess_0123456789", "sess_0123456789"),
        ("bot", "7:user-42", "7:user-42"),
    ],
)
def test_one_spelling(kind: IdentityKind, given: str, spelt: str) -> None:
    assert normalized(Identity(kind, given)) == Identity(kind, spelt)


@pytest.mark.parametrize(
    ("kind", "given", "code"),
    [
        ("phone", "555 765 4321", "invalid_phone"),  # no country code: whose number?
        ("phone", "+1 555", "invalid_phone"),
        ("phone", "not a number", "invalid_phone"),
        ("phone", "+" + "9" * 40, "invalid_phone"),
        ("email", "ada", "invalid_email"),
        ("email", "a@b@example.com", "invalid_email"),
        ("session", "", "invalid_identity"),
        ("session", "a\x00b", "invalid_identity"),
        ("session", "s" * 129, "invalid_identity"),
        ("bot", "user-42", "invalid_identity"),
        ("bot", "x:user", "invalid_identity"),
        ("bot", "\u0663:user", "invalid_identity"),  # an Arabic-Indic three is no channel id
        ("bot", "7:", "invalid_identity"),
        ("bot", "7:" + "u" * 300, "invalid_identity"),
    ],
)
def test_what_is_not_an_identity_is_refused(kind: IdentityKind, given: str, code: str) -> None:
    with pytest.raises(Invalid) as refused:
        normalized(Identity(kind, given))
    assert refused.value.code == code


def test_typed_details_yield_only_what_identifies_somebody() -> None:
    info = UserInfo(fname="Ada", email="Ada@Example.com", phone="+1 555 765 4321")
    assert typed_identities(info) == (
        Identity("email", "Ada@example.com"),
        Identity("phone", "+15557654321"),
    )
    # A local number (no country code) and an empty email identify nobody.
    assert typed_identities(UserInfo(phone="555 765 4321")) == ()
