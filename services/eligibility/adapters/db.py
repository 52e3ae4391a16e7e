"""Eligibility tables and repository (SQLAlchemy Core): the storage ports of
``services.eligibility.application.ports``. Repositories never commit; the store's transaction does."""

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
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.platform import idempotency
from libs.platform.db import Store, upsert
from libs.platform.idempotency import idempotency_table
from services.eligibility.application.ports import IssuedToken, RegistryRows
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


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class EligibilityRepository:
    """The eligibility tables inside one transaction or read (``EligibilityUnitOfWork``)."""

    def __init__(self, session: AsyncConnection) -> None:
        self.s = session

    async def registry(self) -> RegistryRows:
        return RegistryRows(*await load_all(self.s))

    async def registry_changed_since(self, since: dt.datetime) -> RegistryRows:
        return RegistryRows(*await changed_since(self.s, since))

    async def revoked_tokens(self, expiring_after: dt.datetime) -> set[str]:
        t = issued_tokens
        rows = await self.s.execute(select(t.c.token_id).where(t.c.revoked.is_(True), t.c.expires_at > expiring_after))
        return set(rows.scalars().all())

    async def identity_clash(self, person: InsuredPerson) -> str:
        return await identity_clash(self.s, person)

    async def token(self, token_id: str) -> IssuedToken | None:
        row = (await self.s.execute(select(issued_tokens).where(issued_tokens.c.token_id == token_id))).first()
        if row is None:
            return None
        return IssuedToken(row.token_id, row.person_no, _utc(row.issued_at), _utc(row.expires_at), bool(row.revoked))

    async def token_holder(self, token_id: str) -> str | None:
        holder = (
            await self.s.execute(select(issued_tokens.c.person_no).where(issued_tokens.c.token_id == token_id))
        ).scalar()
        return None if holder is None else str(holder)

    async def put_region(self, region: Region, now: dt.datetime) -> None:
        await upsert(self.s, regions, "region_code", region_row(region, now))

    async def put_institution(self, institution: Institution, now: dt.datetime) -> None:
        await upsert(self.s, institutions, "institution_code", institution_row(institution, now))

    async def put_person(self, person: InsuredPerson, now: dt.datetime) -> None:
        await upsert(self.s, persons, "person_no", person_row(person, now))

    async def add_token(self, token: IssuedToken) -> None:
        await self.s.execute(
            issued_tokens.insert().values(
                token_id=token.token_id,
                person_no=token.person_no,
                revoked=token.revoked,
                issued_at=token.issued_at,
                expires_at=token.expires_at,
            )
        )

    async def revoke_token(self, token_id: str) -> bool:
        result = await self.s.execute(
            update(issued_tokens).where(issued_tokens.c.token_id == token_id).values(revoked=True)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        return await idempotency.check(self.s, idempotency_keys, request_id, operation, fingerprint)

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None:
        await idempotency.record(self.s, idempotency_keys, request_id, operation, fingerprint, ref)


class SqlEligibilityStore(Store[EligibilityRepository]):
    """The eligibility service's own database (``EligibilityStore``)."""

    repository = EligibilityRepository
