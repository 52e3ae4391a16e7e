"""Registry rows from plain data (a YAML mapping or a CSV row) -> entities, pure.

Every problem is reported as a field violation named ``<where>.<field>`` (the loader puts the
file and line in ``where``), all of them at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from libs.core.errors import FieldViolation
from services.eligibility.domain.model import Institution, InsuredPerson, PersonStatus, Region, ServiceType

LEVELS = {"unrated": 0, "tier_1": 1, "tier_2": 2, "tier_3": 3}
INSURANCE_TYPES = ("employee", "resident")
PERSON_TYPES = ("in_service", "retired", "resident_adult", "resident_minor")
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}

REGION_FIELDS = frozenset({"region_code", "name"})
INSTITUTION_FIELDS = frozenset(
    {"institution_code", "name", "region_code", "level", "networked_services", "special_disease_codes"}
)
PERSON_FIELDS = frozenset(
    {
        "person_no",
        "id_number",
        "name",
        "insured_region_code",
        "insurance_type",
        "person_type",
        "status",
        "assistance_category",
        "hardship",
        "has_personal_account",
        "card_number",
        "card_serial",
        "sex",
        "birth_date",
        "account_balance_fen",
    }
)


def is_region_code(code: str) -> bool:
    return len(code) == 6 and code.isdigit() and code[:2] != "00"


def is_id_number(value: str) -> bool:
    """18 characters: 17 digits and a digit or X check character."""
    return len(value) == 18 and value[:17].isdigit() and (value[17].isdigit() or value[17] in "xX")


class _Row:
    def __init__(self, data: Mapping[str, object], where: str, known: frozenset[str]) -> None:
        self.data = data
        self.where = where
        self.problems: list[FieldViolation] = []
        for key in sorted(set(map(str, data)) - known):
            self.bad(key, "unknown field")

    def bad(self, name: str, description: str) -> None:
        self.problems.append(FieldViolation(f"{self.where}.{name}" if self.where else name, description))

    def text(self, name: str, *, required: bool = False, max_len: int = 200) -> str:
        raw = self.data.get(name)
        value = "" if raw is None else str(raw).strip()
        if required and not value:
            self.bad(name, "required")
        elif len(value) > max_len:
            self.bad(name, f"at most {max_len} characters")
        return value

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        value = self.text(name).lower()
        if value not in options:
            self.bad(name, f"one of {', '.join(options)}")
        return value

    def flag(self, name: str) -> bool:
        raw = self.data.get(name)
        if isinstance(raw, bool):
            return raw
        value = "" if raw is None else str(raw).strip().lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self.bad(name, "true or false")
        return False

    def items(self, name: str) -> tuple[str, ...]:
        """A YAML list, or a string separated by ';' or ',' (CSV)."""
        raw = self.data.get(name)
        if raw is None:
            return ()
        if isinstance(raw, list | tuple):
            return tuple(str(x).strip() for x in raw if str(x).strip())
        return tuple(x.strip() for x in str(raw).replace(",", ";").split(";") if x.strip())


def parse_region(data: Mapping[str, object], where: str = "") -> tuple[Region | None, list[FieldViolation]]:
    r = _Row(data, where, REGION_FIELDS)
    code = r.text("region_code", required=True)
    if code and not is_region_code(code):
        r.bad("region_code", "a 6-digit administrative division code")
    name = r.text("name", required=True, max_len=100)
    return (None if r.problems else Region(code, name)), r.problems


def parse_institution(data: Mapping[str, object], where: str = "") -> tuple[Institution | None, list[FieldViolation]]:
    r = _Row(data, where, INSTITUTION_FIELDS)
    code = r.text("institution_code", required=True, max_len=32)
    name = r.text("name", max_len=200)
    region = r.text("region_code", required=True)
    if region and not is_region_code(region):
        r.bad("region_code", "a 6-digit administrative division code")
    level_raw = r.text("level", required=True).lower()
    level = LEVELS.get(level_raw, -1)
    if level_raw and level < 0:
        r.bad("level", f"one of {', '.join(LEVELS)}")
    services: set[ServiceType] = set()
    for s in r.items("networked_services"):
        try:
            services.add(ServiceType(s.lower()))
        except ValueError:
            r.bad("networked_services", f"unknown service type {s!r}; one of {', '.join(t.value for t in ServiceType)}")
    diseases = frozenset(r.items("special_disease_codes"))
    if r.problems:
        return None, r.problems
    return Institution(code, name, region, level, frozenset(services), diseases), []


def parse_person(data: Mapping[str, object], where: str = "") -> tuple[InsuredPerson | None, list[FieldViolation]]:
    r = _Row(data, where, PERSON_FIELDS)
    person_no = r.text("person_no", required=True, max_len=40)
    id_number = r.text("id_number", required=True).upper()
    if id_number and not is_id_number(id_number):
        r.bad("id_number", "an 18-character resident ID number")
    region = r.text("insured_region_code", required=True)
    if region and not is_region_code(region):
        r.bad("insured_region_code", "a 6-digit administrative division code")
    insurance = r.choice("insurance_type", INSURANCE_TYPES)
    person_type = r.choice("person_type", PERSON_TYPES)
    status_raw = r.text("status").lower() or "active"
    if status_raw not in ("active", "suspended"):
        r.bad("status", "active or suspended")
    sex = r.text("sex").upper()
    if sex not in ("", "F", "M"):
        r.bad("sex", "F, M or empty")
    birth: dt.date | None = None
    birth_raw = r.data.get("birth_date")
    if isinstance(birth_raw, dt.date):
        birth = birth_raw
    elif birth_raw not in (None, ""):
        try:
            birth = dt.date.fromisoformat(str(birth_raw).strip())
        except ValueError:
            r.bad("birth_date", "a date YYYY-MM-DD")
    balance_raw = r.text("account_balance_fen") or "0"
    balance = 0
    try:
        balance = int(balance_raw)
        if balance < 0:
            r.bad("account_balance_fen", "an integer number of fen, >= 0")
    except ValueError:
        r.bad("account_balance_fen", "an integer number of fen, >= 0")
    person = InsuredPerson(
        person_no=person_no,
        id_number=id_number,
        name=r.text("name", max_len=100),
        insured_region=region,
        insurance_type=insurance,
        person_type=person_type,
        status=PersonStatus.SUSPENDED if status_raw == "suspended" else PersonStatus.ACTIVE,
        assistance_category=r.text("assistance_category", max_len=32),
        hardship=r.flag("hardship"),
        has_personal_account=r.flag("has_personal_account"),
        card_number=r.text("card_number", max_len=32),
        card_serial=r.text("card_serial", max_len=64),
        sex=sex,
        birth_date=birth,
        account_balance_fen=balance,
    )
    return (None if r.problems else person), r.problems
