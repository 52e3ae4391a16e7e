"""medsettle policy engine: pure settlement math (POLICY.md). See README.md.

Public API re-exported here; import from ``libs.policy``.
"""

from libs.policy.engine import check_identities, reverse, settle, split_lines, validate_visit
from libs.policy.loader import (
    CatalogueBook,
    PolicyBook,
    default_books,
    load_books,
    load_catalogue,
    load_policy,
)
from libs.policy.model import (
    Accumulators,
    Catalogue,
    CatalogueItem,
    FeeLine,
    FilingType,
    Fund,
    FundDetail,
    InsuranceType,
    ItemClass,
    ItemKind,
    LineSplit,
    PersonType,
    Policy,
    ServiceType,
    SettlementResult,
    TraceStep,
    Visit,
)
from libs.policy.money import round_half_up
from libs.policy.schema import parse_catalogue, parse_policy
from libs.policy.synth import SyntheticPerson, generate_catalogue, generate_people, generate_visit

__all__ = [
    "Accumulators",
    "Catalogue",
    "CatalogueBook",
    "CatalogueItem",
    "FeeLine",
    "FilingType",
    "Fund",
    "FundDetail",
    "InsuranceType",
    "ItemClass",
    "ItemKind",
    "LineSplit",
    "PersonType",
    "Policy",
    "PolicyBook",
    "ServiceType",
    "SettlementResult",
    "SyntheticPerson",
    "TraceStep",
    "Visit",
    "check_identities",
    "default_books",
    "generate_catalogue",
    "generate_people",
    "generate_visit",
    "load_books",
    "load_catalogue",
    "load_policy",
    "parse_catalogue",
    "parse_policy",
    "reverse",
    "round_half_up",
    "settle",
    "split_lines",
    "validate_visit",
]
