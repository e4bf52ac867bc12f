"""Reports (issue 19): ``GET /api/v1/reports/{kind}`` as JSON, ``.../{kind}.csv`` as CSV.

Admins (and the API key) see any figures; an operator sees their own. The period is ``from``
and ``to`` (local dates, both included) in ``tz``; ``channel`` (comma-separated tags),
``site_id``, ``team_id`` and ``operator_id`` filter.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import Fields, ok, read_fields
from server.auth import Principal
from server.render.reports import report_csv, report_json
from server.reports import ReportRequest, Reports
from server.services import services

ROOT = "/api/v1/reports"
CSV_SUFFIX = ".csv"
# Seven tags at most are meaningful (four exist); more is a client bug.
CHANNELS_MAX_CHARS = 64


def _request(fields: Fields) -> ReportRequest:
    channels = fields.text("channel", max_chars=CHANNELS_MAX_CHARS)
    return ReportRequest(
        start=fields.require("from"),
        end=fields.require("to"),
        tz=fields.text("tz") or "UTC",
        channels=tuple(c.strip() for c in channels.split(",")) if channels else None,
        site_id=fields.integer("site_id", minimum=1),
        team_id=fields.integer("team_id", minimum=1),
        operator_id=fields.integer("operator_id", minimum=1),
    )


async def report(request: Request) -> Response:
    svc = services(request)
    principal: Principal = await svc.auth.headers(request.headers)
    kind = str(request.path_params["kind"])
    as_csv = kind.endswith(CSV_SUFFIX)
    kind = kind.removesuffix(CSV_SUFFIX)
    chosen, figures = await Reports(svc.store).figures(
        principal.account_id, principal.operator, kind, _request(await read_fields(request))
    )
    if not as_csv:
        return ok(report=kind, **report_json(chosen, figures))
    name = f"{kind}-{chosen.first_day}-{chosen.last_day}.csv"
    return Response(
        report_csv(chosen, figures),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


routes = [Route(f"{ROOT}/{{kind}}", report, methods=["GET"])]
