"""Eligibility tables and repository (SQLAlchemy Core). Repositories never commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.platform.idempotency import idempotency_table
from services.eligibility.domain.model import Institution, InsuredPerson, PersonStatus, Region, ServiceType

metadata = MetaData()

regions = Table(
    "regions",
    metadata,
    Column("region_code", String(6), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
institutions = Table(
    "institutions",
    metadata,
    Column("institution_code", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region_code", String(6), nullable=False),
    Column("level", Integer, nullable=False),
    Column("networked_services", Text, nullable=False),  # comma list
    Column("special_disease_codes", Text, nullable=False),  # comma list
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_institutions_updated", institutions.c.updated_at)
persons = Table(
    "insured_persons",
    metadata,
    Column("person_no", String(40), primary_key=True),
    Column("id_number", String(18), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("insured_region", String(6), nullable=False),
    Column("insurance_type", String(16), nullable=False),
    Column("person_type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("assistance_category", String(32), nullable=False),
    Column("hardship", Boolean, nullable=False),
    Column("has_personal_account", Boolean, nullable=False),
    Column("card_number", String(32), nullable=True, unique=True),
    Column("card_serial", String(64), nullable=False),
    Column("sex", String(1), nullable=False),
    Column("birth_date", Date, nullable=True),
    Column("account_balance_fen", BigInteger, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("employer_name", String(200), nullable=False, server_default=""),
)
Index("ix_insured_persons_updated", persons.c.updated_at)
issued_tokens = Table(
    "issued_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("person_no", String(40), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)
idempotency_keys = idempotency_table(metadata)


def region_row(r: Region, now: dt.datetime) -> dict[str, Any]:
    return {"region_code": r.region_code, "name": r.name, "updated_at": now}


def institution_row(i: Institution, now: dt.datetime) -> dict[str, Any]:
    return {
        "institution_code": i.institution_code,
        "name": i.name,
        "region_code": i.region_code,
        "level": i.level,
        "networked_services": ",".join(sorted(s.value for s in i.networked_services)),
        "special_disease_codes": ",".join(sorted(i.special_disease_codes)),
        "updated_at": now,
    }


def institution_from_row(r: Any) -> Institution:
    return Institution(
        institution_code=r.institution_code,
        name=r.name,
        region_code=r.region_code,
        level=r.level,
        networked_services=frozenset(ServiceType(s) for s in r.networked_services.split(",") if s),
        special_disease_codes=frozenset(c for c in r.special_disease_codes.split(",") if c),
    )


def person_row(p: InsuredPerson, now: dt.datetime) -> dict[str, Any]:
    return {
        "person_no": p.person_no,
        "id_number": p.id_number,
        "name": p.name,
        "insured_region": p.insured_region,
        "insurance_type": p.insurance_type,
        "person_type": p.person_type,
        "status": p.status.value,
        "assistance_category": p.assistance_category,
        "hardship": p.hardship,
        "has_personal_account": p.has_personal_account,
        "card_number": p.card_number or None,
        "card_serial": p.card_serial,
        "sex": p.sex,
        "birth_date": p.birth_date,
        "account_balance_fen": p.account_balance_fen,
        "updated_at": now,
        "employer_name": p.employer_name,
    }


def person_from_row(r: Any) -> InsuredPerson:
    return InsuredPerson(
        person_no=r.person_no,
        id_number=r.id_number,
        name=r.name,
        insured_region=r.insured_region,
        insurance_type=r.insurance_type,
        person_type=r.person_type,
        status=PersonStatus(r.status),
        assistance_category=r.assistance_category,
        hardship=r.hardship,
        has_personal_account=r.has_personal_account,
        card_number=r.card_number or "",
        card_serial=r.card_serial,
        sex=r.sex,
        birth_date=r.birth_date,
        account_balance_fen=r.account_balance_fen,
        employer_name=r.employer_name,
    )


async def load_all(session: AsyncConnection) -> tuple[list[Region], list[Institution], list[InsuredPerson]]:
    regs = [Region(r.region_code, r.name) for r in (await session.execute(select(regions))).all()]
    insts = [institution_from_row(r) for r in (await session.execute(select(institutions))).all()]
    ps = [person_from_row(r) for r in (await session.execute(select(persons))).all()]
    return regs, insts, ps


async def changed_since(
    session: AsyncConnection, since: dt.datetime
) -> tuple[list[Region], list[Institution], list[InsuredPerson]]:
    regs = [
        Region(r.region_code, r.name)
        for r in (await session.execute(select(regions).where(regions.c.updated_at >= since))).all()
    ]
    insts = [
        institution_from_row(r)
        for r in (await session.execute(select(institutions).where(institutions.c.updated_at >= since))).all()
    ]
    ps = [
        person_from_row(r) for r in (await session.execute(select(persons).where(persons.c.updated_at >= since))).all()
    ]
    return regs, insts, ps


async def identity_clash(session: AsyncConnection, p: InsuredPerson) -> str:
    """The name of the field (id_number, card_number) another person already holds, or ""."""
    others = persons.c.person_no != p.person_no
    if (await session.execute(select(persons.c.person_no).where(others, persons.c.id_number == p.id_number))).first():
        return "id_number"
    if (
        p.card_number
        and (
            await session.execute(select(persons.c.person_no).where(others, persons.c.card_number == p.card_number))
        ).first()
    ):
        return "card_number"
    return ""
