"""How /api/v1 renders the people and settings of an account (seed 001's snake_case)."""

from __future__ import annotations

from typing import Any

from storage.models import CannedResponse, Operator, Team


def operator_json(o: Operator) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, "email": o.email, "is_admin": o.is_admin}


def team_json(t: Team) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "member_ids": list(t.member_ids)}


def canned_json(c: CannedResponse) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "tag": c.tag, "message": c.message}
