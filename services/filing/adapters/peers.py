"""The designated-institution registry, read from eligibility over gRPC (GetInstitution).

Called before the filing transaction, never inside it. In all-in-one mode the target is the
host's own port; the cycle filing -> eligibility (GetInstitution) and eligibility -> filing
(WatchFilings) is harmless because both are serving before either calls the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import grpc

from libs.platform.errors import peer_error
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2, eligibility_pb2_grpc
from services.filing.domain.model import InstitutionInfo

TIMEOUT_SECONDS = 2.0


class GrpcInstitutionDirectory:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)

    async def _one(self, code: str) -> InstitutionInfo | None:
        try:
            resp = await self._stub.GetInstitution(
                eligibility_pb2.GetInstitutionRequest(institution_code=code), timeout=TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise peer_error(
                exc, "eligibility", "the institution registry (eligibility) is unavailable; retry"
            ) from exc
        i = resp.institution
        return InstitutionInfo(
            institution_code=i.institution_code,
            region_code=i.region_code,
            chronic_outpatient_networked=types_pb2.SERVICE_TYPE_CHRONIC_OUTPATIENT in i.networked_services,
            special_disease_codes=frozenset(i.special_disease_codes),
        )

    async def lookup(self, codes: Iterable[str]) -> Mapping[str, InstitutionInfo | None]:
        wanted = list(dict.fromkeys(codes))
        found = await asyncio.gather(*(self._one(c) for c in wanted))
        return dict(zip(wanted, found, strict=True))
