"""The contracts' shared enums as the lowercase names the services' domains use.

``FILING_TYPE_RELOCATED_RETIREE`` is ``"relocated_retiree"`` in every domain (filing's
``FilingType``, libs.policy's ``FilingType``, eligibility's plain strings), so each table is
derived from the proto enum once, here, instead of being written out by hand in every adapter.
A service turns a name into its own enum type: ``{n: FilingType(s) for n, s in FILING_TYPES.items()}``.
"""

from __future__ import annotations

from typing import Any

from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2


def lowercase_names(enum_type: Any, prefix: str) -> dict[int, str]:
    """number -> lowercase name without the prefix, for every value but ``_UNSPECIFIED``."""
    return {v.number: v.name.removeprefix(prefix).lower() for v in enum_type.DESCRIPTOR.values if v.number}


INSURANCE_TYPES = lowercase_names(types_pb2.InsuranceType, "INSURANCE_TYPE_")
PERSON_TYPES = lowercase_names(types_pb2.PersonType, "PERSON_TYPE_")
SERVICE_TYPES = lowercase_names(types_pb2.ServiceType, "SERVICE_TYPE_")
FILING_TYPES = lowercase_names(types_pb2.FilingType, "FILING_TYPE_")
CLEARING_CATEGORIES = lowercase_names(types_pb2.ClearingCategory, "CLEARING_CATEGORY_")
# Hospital level as the policies index it: 0 unrated, then tiers 1 to 3.
INSTITUTION_LEVELS = {
    eligibility_pb2.INSTITUTION_LEVEL_UNRATED: 0,
    eligibility_pb2.INSTITUTION_LEVEL_TIER_1: 1,
    eligibility_pb2.INSTITUTION_LEVEL_TIER_2: 2,
    eligibility_pb2.INSTITUTION_LEVEL_TIER_3: 3,
}


def inverse(table: dict[int, Any]) -> dict[Any, int]:
    return {v: k for k, v in table.items()}
