"""Filing tables and repository (SQLAlchemy Core): the storage ports of
``services.filing.application.ports``. Repositories never commit; the store's transaction does."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncGenerator, Sequence
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
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
    and_,
    false,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.platform import idempotency, outbox
from libs.platform.db import Store
from libs.platform.idempotency import idempotency_table
from libs.platform.outbox import FeedNotifier, outbox_table
from services.filing.application.ports import FilingEvent
from services.filing.domain.model import Channel, Filing, FilingStatus, FilingType, SpecialDisease

metadata = MetaData()

filings = Table(
    "filings",
    metadata,
    Column("filing_id", String(40), primary_key=True),
    Column("person_no", String(40), nullable=False),
    Column("insured_region", String(6), nullable=False),
    Column("treatment_region", String(6), nullable=False),
    Column("filing_type", String(32), nullable=False),
    Column("insurance_type", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("commitment_signed", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=True),
    Column("end_effective_date", Date, nullable=True),
    Column("treatment_start_date", Date, nullable=True),
    Column("retro", Boolean, nullable=False),
    Column("manual_reimbursement", Boolean, nullable=False, server_default=false()),
    Column("special_diseases", Text, nullable=False),
    Column("trauma_declared", Boolean, nullable=False),
    Column("employer_name", String(200), nullable=False),
    Column("superseded_by", String(40), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_filings_person", filings.c.person_no)
Index("ix_filings_treatment_region_status", filings.c.treatment_region, filings.c.status)
Index("ix_filings_insured_region", filings.c.insured_region)
# At most one active filing per person: the database, not only a check, settles races.
Index(
    "ux_filings_one_active_per_person",
    filings.c.person_no,
    unique=True,
    postgresql_where=filings.c.status == "active",
    sqlite_where=filings.c.status == "active",
)

filing_revisions = Table(
    "filing_revisions",
    metadata,
    Column("filing_id", String(40), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("snapshot", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

filing_events = outbox_table(metadata, "filing_events")
idempotency_keys = idempotency_table(metadata)


def _sd_to_json(sds: tuple[SpecialDisease, ...]) -> str:
    return json.dumps([{"disease_code": s.disease_code, "institution_codes": list(s.institution_codes)} for s in sds])


def _sd_from_json(raw: str) -> tuple[SpecialDisease, ...]:
    return tuple(SpecialDisease(d["disease_code"], tuple(d["institution_codes"])) for d in json.loads(raw))


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def to_row(f: Filing) -> dict[str, Any]:
    return {
        "filing_id": f.filing_id,
        "person_no": f.person_no,
        "insured_region": f.insured_region,
        "treatment_region": f.treatment_region,
        "filing_type": f.filing_type.value,
        "insurance_type": f.insurance_type,
        "channel": f.channel.value,
        "commitment_signed": f.commitment_signed,
        "status": f.status.value,
        "start_date": f.start_date,
        "end_date": f.end_date,
        "end_effective_date": f.end_effective_date,
        "treatment_start_date": f.treatment_start_date,
        "retro": f.retro,
        "manual_reimbursement": f.manual_reimbursement,
        "special_diseases": _sd_to_json(f.special_diseases),
        "trauma_declared": f.trauma_declared,
        "employer_name": f.employer_name,
        "superseded_by": f.superseded_by,
        "revision": f.revision,
        "created_at": f.created_at,
        "updated_at": f.updated_at,
    }


def from_row(r: Any) -> Filing:
    return Filing(
        filing_id=r.filing_id,
        person_no=r.person_no,
        insured_region=r.insured_region,
        treatment_region=r.treatment_region,
        filing_type=FilingType(r.filing_type),
        insurance_type=r.insurance_type,
        channel=Channel(r.channel),
        commitment_signed=r.commitment_signed,
        status=FilingStatus(r.status),
        start_date=r.start_date,
        end_date=r.end_date,
        end_effective_date=r.end_effective_date,
        treatment_start_date=r.treatment_start_date,
        retro=r.retro,
        manual_reimbursement=bool(getattr(r, "manual_reimbursement", False)),
        special_diseases=_sd_from_json(r.special_diseases),
        trauma_declared=r.trauma_declared,
        employer_name=r.employer_name,
        superseded_by=r.superseded_by,
        revision=r.revision,
        created_at=_utc(r.created_at),
        updated_at=_utc(r.updated_at),
    )


def snapshot_json(f: Filing) -> str:
    row = to_row(f)
    return json.dumps({k: (v.isoformat() if isinstance(v, dt.date | dt.datetime) else v) for k, v in row.items()})


def from_snapshot(raw: str) -> Filing:
    d = json.loads(raw)
    for k in ("start_date", "end_date", "end_effective_date", "treatment_start_date"):
        d[k] = dt.date.fromisoformat(d[k]) if d[k] else None
    for k in ("created_at", "updated_at"):
        d[k] = dt.datetime.fromisoformat(d[k])
    return from_row(SimpleNamespace(**d))


class FilingRepository:
    def __init__(self, session: AsyncConnection) -> None:
        self.s = session

    async def get(self, filing_id: str, *, for_update: bool = False) -> Filing | None:
        q = select(filings).where(filings.c.filing_id == filing_id)
        if for_update:
            q = q.with_for_update()
        row = (await self.s.execute(q)).first()
        return from_row(row) if row else None

    async def active_for_person(self, person_no: str, *, for_update: bool = False) -> Filing | None:
        q = select(filings).where(and_(filings.c.person_no == person_no, filings.c.status == "active"))
        if for_update:
            q = q.with_for_update()
        row = (await self.s.execute(q)).first()
        return from_row(row) if row else None

    async def append_event(self, event_type: str, f: Filing) -> None:
        await outbox.append(self.s, filing_events, event_type, f.filing_id, snapshot_json(f).encode())

    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        return await idempotency.check(self.s, idempotency_keys, request_id, operation, fingerprint)

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None:
        await idempotency.record(self.s, idempotency_keys, request_id, operation, fingerprint, ref)

    async def add(self, f: Filing, now: dt.datetime) -> None:
        await self.s.execute(insert(filings).values(**to_row(f)))
        await self._revision(f, now)

    async def save(self, f: Filing, now: dt.datetime) -> None:
        row = to_row(f)
        await self.s.execute(update(filings).where(filings.c.filing_id == f.filing_id).values(**row))
        await self._revision(f, now)

    async def _revision(self, f: Filing, now: dt.datetime) -> None:
        await self.s.execute(
            insert(filing_revisions).values(
                filing_id=f.filing_id, revision=f.revision, snapshot=snapshot_json(f), recorded_at=now
            )
        )

    async def history(self, filing_id: str) -> list[Filing]:
        rows = (
            await self.s.execute(
                select(filing_revisions.c.snapshot)
                .where(filing_revisions.c.filing_id == filing_id)
                .order_by(filing_revisions.c.revision)
            )
        ).scalars()
        return [from_snapshot(r) for r in rows]

    async def list(
        self,
        *,
        person_no: str = "",
        treatment_region: str = "",
        status: str = "",
        after_id: str = "",
        limit: int = 100,
        insured_region: str = "",
    ) -> list[Filing]:
        q = select(filings)
        if insured_region:
            q = q.where(filings.c.insured_region == insured_region)
        if person_no:
            q = q.where(filings.c.person_no == person_no)
        if treatment_region:
            q = q.where(filings.c.treatment_region == treatment_region)
        if status:
            q = q.where(filings.c.status == status)
        if after_id:
            q = q.where(filings.c.filing_id > after_id)
        rows = (await self.s.execute(q.order_by(filings.c.filing_id).limit(limit))).all()
        return [from_row(r) for r in rows]


class SqlFilingStore(Store[FilingRepository]):
    """The filing service's own database (``FilingStore``)."""

    repository = FilingRepository

    async def events(
        self, after: int, notifier: FeedNotifier, stopping: asyncio.Event | None = None
    ) -> AsyncGenerator[Sequence[FilingEvent], None]:
        # outbox.follow is an async generator: closed with this one, its feed slot is freed at once
        follow = cast(
            AsyncGenerator[Sequence[Any], None], outbox.follow(self.db, filing_events, after, notifier, stopping)
        )
        async with contextlib.aclosing(follow) as batches:
            async for rows in batches:
                yield [FilingEvent(r.position, r.event_type, from_snapshot(r.payload.decode())) for r in rows]
