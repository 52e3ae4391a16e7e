"""HomeMovementService servicer (the insured bureau's own spending): proto -> command -> proto."""

from __future__ import annotations

import re
from typing import Any

import grpc

from libs.core.errors import Violations
from libs.platform.convert import check_request_id, date_from_proto, fingerprint
from libs.platform.identity import scoped_request_id
from medsettle.settlement.v1 import home_pb2 as pb
from medsettle.settlement.v1 import home_pb2_grpc
from services.settlement.adapters.rpc import accumulators_from_proto, accumulators_to_proto, is_region_code
from services.settlement.application.home import HomeMovements, PersonYear, ReportHomeMovements
from services.settlement.domain.home import MAX_MOVEMENTS, HomeMovement, MovementKind, movement_violations

KIND_IN = {
    pb.HOME_MOVEMENT_KIND_SETTLEMENT: MovementKind.SETTLEMENT,
    pb.HOME_MOVEMENT_KIND_CANCELLATION: MovementKind.CANCELLATION,
    pb.HOME_MOVEMENT_KIND_ACCOUNT_CREDIT: MovementKind.ACCOUNT_CREDIT,
    pb.HOME_MOVEMENT_KIND_ACCOUNT_DEBIT: MovementKind.ACCOUNT_DEBIT,
}
_MOVEMENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_PERSON_NO = 40


def _region_code(region: str, v: Violations) -> None:
    """A well-formed region code. That it is the calling bureau's own is the access rule's to
    check (``libs/platform/access.py``: ``insured="insured_region_code"``), before this runs."""
    v.check(is_region_code(region), "insured_region_code", "a 6-digit region code")
    v.raise_if_any()


def _person_year_fields(person_no: str, year: int, at: str, v: Violations) -> None:
    v.check(0 < len(person_no) <= MAX_PERSON_NO and person_no.isprintable(), f"{at}person_no", "1..40 characters")
    v.check(2000 <= year <= 2100, f"{at}year", "2000..2100")


def movement_from_proto(m: pb.HomeMovement, at: str, v: Violations) -> HomeMovement | None:
    v.check(bool(_MOVEMENT_ID.fullmatch(m.movement_id)), f"{at}.movement_id", "1..64 of [A-Za-z0-9._:-]")
    _person_year_fields(m.person_no, m.year, f"{at}.", v)
    kind = KIND_IN.get(m.kind)
    v.check(kind is not None, f"{at}.kind", "required")
    day = date_from_proto(m.occurred_on if m.HasField("occurred_on") else None, f"{at}.occurred_on", v)
    if kind is None or day is None or not 2000 <= m.year <= 2100:
        return None
    v.check(day.year == m.year, f"{at}.occurred_on", "must be in the movement's year")
    movement = HomeMovement(
        movement_id=m.movement_id,
        person_no=m.person_no,
        year=m.year,
        kind=kind,
        delta=accumulators_from_proto(m.delta, m.year),
        account_delta_fen=m.account_delta_fen,
        home_balance_after_fen=m.home_balance_after_fen if m.HasField("home_balance_after_fen") else None,
        occurred_on=day,
        expected=accumulators_from_proto(m.expected, m.year) if m.HasField("expected") else None,
    )
    for violation in movement_violations(movement, at):
        v.add(violation.field, violation.description)
    return movement


def _person_year_to_proto(py: PersonYear, out: pb.PersonYearTotals) -> None:
    out.person_no = py.person_no
    out.totals.CopyFrom(accumulators_to_proto(py.totals))
    out.account_known = py.account_known


class HomeMovementServicer(home_pb2_grpc.HomeMovementServiceServicer):
    def __init__(self, use_cases: HomeMovements) -> None:
        self.use_cases = use_cases

    async def ReportHomeMovements(
        self, request: pb.ReportHomeMovementsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportHomeMovementsResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(0 < len(request.movements) <= MAX_MOVEMENTS, "movements", f"1..{MAX_MOVEMENTS} movements")
        v.raise_if_any()
        _region_code(request.insured_region_code, v)
        movements = [movement_from_proto(m, f"movements[{i}]", v) for i, m in enumerate(request.movements)]
        v.raise_if_any()
        cmd = ReportHomeMovements(
            request_id=scoped_request_id(request.request_id),
            fingerprint=fingerprint(request),
            region=request.insured_region_code,
            movements=tuple(m for m in movements if m is not None),
        )
        done = await self.use_cases.report(cmd)
        out = pb.ReportHomeMovementsResponse(applied=done.applied, skipped=done.skipped)
        for py in done.totals:
            _person_year_to_proto(py, out.totals.add())
        return out

    async def GetPersonYear(
        self, request: pb.GetPersonYearRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetPersonYearResponse:
        v = Violations()
        _person_year_fields(request.person_no, request.year, "", v)
        v.raise_if_any()
        _region_code(request.insured_region_code, v)
        py = await self.use_cases.person_year(request.insured_region_code, request.person_no, request.year)
        out = pb.GetPersonYearResponse()
        _person_year_to_proto(py, out.person_year)
        return out


def register(server: grpc.aio.Server, servicer: HomeMovementServicer) -> None:
    home_pb2_grpc.add_HomeMovementServiceServicer_to_server(servicer, server)
