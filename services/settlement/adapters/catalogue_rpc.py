"""CatalogueService servicer (catalogue download for hospitals): proto -> query -> proto."""

from __future__ import annotations

from typing import Any

import grpc

from libs.core.errors import DomainError, Reason, Violations
from libs.platform.convert import date_from_proto, date_to_proto
from libs.platform.identity import caller_institution
from libs.policy import Catalogue, CatalogueItem, ItemClass, ItemKind
from medsettle.settlement.v1 import catalogue_pb2 as pb
from medsettle.settlement.v1 import catalogue_pb2_grpc
from services.settlement.adapters.rpc import ITEM_CLASS_IN, ITEM_CLASS_OUT, is_region_code
from services.settlement.application import queries
from services.settlement.application.service import SettlementService

KIND_OUT = {
    ItemKind.DRUG: pb.ITEM_KIND_DRUG,
    ItemKind.SERVICE: pb.ITEM_KIND_SERVICE,
    ItemKind.CONSUMABLE: pb.ITEM_KIND_CONSUMABLE,
}
KIND_IN = {v: k for k, v in KIND_OUT.items()}
MAX_CODE = 50
MAX_PAGE = 1000
DEFAULT_PAGE = 100


def item_to_proto(item: CatalogueItem) -> pb.CatalogueItem:
    msg = pb.CatalogueItem(
        code=item.code,
        name=item.name,
        kind=KIND_OUT[item.kind],
        item_class=item.item_class.value,
        item_class_enum=ITEM_CLASS_OUT[item.item_class],
        self_pay_first_bps=item.self_pay_first_bps,
    )
    if item.ceiling_fen is not None:
        msg.ceiling_fen = item.ceiling_fen
    r = item.restriction
    if r is not None:
        msg.restriction.sex = r.sex or ""
        if r.min_age is not None:
            msg.restriction.min_age = r.min_age
        if r.max_age is not None:
            msg.restriction.max_age = r.max_age
    return msg


def catalogue_to_proto(c: Catalogue) -> pb.CatalogueInfo:
    msg = pb.CatalogueInfo(
        version=c.version,
        label=c.label,
        region_code=c.region,
        region_name=c.region_name,
        source=c.source,
        item_count=len(c.items),
    )
    date_to_proto(c.effective_from, msg.effective_from)
    date_to_proto(c.effective_to, msg.effective_to)
    return msg


def _authenticated() -> None:
    if caller_institution() is None:
        raise DomainError(Reason.INSTITUTION_IDENTITY_MISSING, "the calling institution is not authenticated")


class CatalogueServicer(catalogue_pb2_grpc.CatalogueServiceServicer):
    def __init__(self, service: SettlementService) -> None:
        self.service = service

    async def ListCatalogueItems(
        self, request: pb.ListCatalogueItemsRequest, context: Any
    ) -> pb.ListCatalogueItemsResponse:
        v = Violations()
        v.check(is_region_code(request.treatment_region_code), "treatment_region_code", "required, 6 digits")
        day = date_from_proto(request.date if request.HasField("date") else None, "date", v, required=False)
        v.check(len(request.code_prefix) <= MAX_CODE, "code_prefix", f"at most {MAX_CODE} characters")
        v.check(request.item_class in ("", "A", "B", "C"), "item_class", '"", "A", "B" or "C"')
        by_enum = ITEM_CLASS_IN.get(request.item_class_enum)
        v.check(request.item_class_enum == 0 or by_enum is not None, "item_class_enum", "unknown item class")
        v.check(
            not (by_enum and request.item_class and by_enum.value != request.item_class),
            "item_class_enum",
            "names another class than item_class",
        )
        v.check(request.kind == 0 or request.kind in KIND_IN, "kind", "unknown item kind")
        v.check(0 <= request.page_size <= MAX_PAGE, "page_size", f"0..{MAX_PAGE} (0 = {DEFAULT_PAGE})")
        v.raise_if_any()
        _authenticated()
        page = queries.list_catalogue_items(
            self.service.ctx,
            region=request.treatment_region_code,
            day=day,
            code_prefix=request.code_prefix,
            item_class=ItemClass(request.item_class) if request.item_class else by_enum,
            kind=KIND_IN.get(request.kind),
            page_size=request.page_size or DEFAULT_PAGE,
            page_token=request.page_token,
        )
        return pb.ListCatalogueItemsResponse(
            catalogue=catalogue_to_proto(page.catalogue),
            items=[item_to_proto(i) for i in page.items],
            next_page_token=page.next_token,
        )

    async def GetCatalogueItem(self, request: pb.GetCatalogueItemRequest, context: Any) -> pb.GetCatalogueItemResponse:
        v = Violations()
        v.check(is_region_code(request.treatment_region_code), "treatment_region_code", "required, 6 digits")
        v.check(0 < len(request.item_code) <= MAX_CODE, "item_code", f"required, at most {MAX_CODE} characters")
        day = date_from_proto(request.date if request.HasField("date") else None, "date", v, required=False)
        v.raise_if_any()
        _authenticated()
        catalogue, item = queries.get_catalogue_item(
            self.service.ctx, region=request.treatment_region_code, day=day, code=request.item_code
        )
        return pb.GetCatalogueItemResponse(catalogue=catalogue_to_proto(catalogue), item=item_to_proto(item))


def register(server: grpc.aio.Server, servicer: CatalogueServicer) -> None:
    catalogue_pb2_grpc.add_CatalogueServiceServicer_to_server(servicer, server)
