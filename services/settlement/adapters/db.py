"""Settlement tables and repository (SQLAlchemy Core). Repositories never commit."""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import asdict, fields, replace
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
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.platform import idempotency
from libs.platform.idempotency import idempotency_table
from libs.platform.outbox import append as outbox_append
from libs.platform.outbox import outbox_table
from libs.policy import Accumulators, FeeLine, FilingType, InsuranceType, PersonType, ServiceType, SettlementResult
from libs.policy.money import round_half_up
from services.settlement.domain.model import (
    ClaimStatus,
    ClearingCategory,
    Decision,
    ManualClaim,
    MonitoringFlag,
    SettlementKind,
    SettlementRecord,
    StayRef,
    UploadedLine,
    VisitRecord,
    VisitStatus,
)
from services.settlement.domain.monitoring import Stay

metadata = MetaData()

visits = Table(
    "visits",
    metadata,
    Column("visit_id", String(40), primary_key=True),
    Column("institution_code", String(32), nullable=False),
    Column("hospital_visit_no", String(64), nullable=False),
    Column("service_type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("person_no", String(40), nullable=False),
    Column("decision", Text, nullable=False),
    Column("admission_date", Date, nullable=False),
    Column("discharge_date", Date, nullable=True),
    Column("diagnosis_codes", Text, nullable=False),
    Column("special_disease_code", String(32), nullable=False),
    Column("emergency", Boolean, nullable=False, default=False),
    Column("trauma_declared", Boolean, nullable=False, default=False),
    Column("fee_line_count", Integer, nullable=False, default=0),
    Column("fee_total_fen", BigInteger, nullable=False, default=0),
    Column("settled_stays", Integer, nullable=False, default=0),
    Column("opened_at", DateTime(timezone=True), nullable=False),
)
Index("ux_visits_institution_visit_no", visits.c.institution_code, visits.c.hospital_visit_no, unique=True)
Index("ix_visits_person", visits.c.person_no, visits.c.service_type)

fee_lines = Table(
    "fee_lines",
    metadata,
    Column("visit_id", String(40), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("item_code", String(64), nullable=False),
    Column("item_name", String(200), nullable=False),
    Column("quantity_milli", BigInteger, nullable=False),
    Column("unit_price_fen", BigInteger, nullable=False),
    Column("fee_date", Date, nullable=True),
    Column("refund_of_line_no", Integer, nullable=True),
    # The settlement (interim or final) that settled this line; NULL while unsettled.
    Column("settlement_id", String(40), nullable=True),
)
# No index on settlement_id (migration 0002): lines are always found through their visit. On
# PostgreSQL the table keeps half of each page free (fillfactor 50, migration 0003) so that
# marking a line settled is a heap-only update that leaves the primary key alone.

settlements = Table(
    "settlements",
    metadata,
    Column("settlement_id", String(40), primary_key=True),
    Column("request_id", String(128), nullable=False, unique=True),
    Column("visit_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    # A settlement can be cancelled once: the database refuses a second cancellation.
    Column("cancels_settlement_id", String(40), nullable=True, unique=True),
    Column("institution_code", String(32), nullable=False),
    Column("person_no", String(40), nullable=False),
    Column("insured_region", String(6), nullable=False),
    Column("treatment_region", String(6), nullable=False),
    Column("service_type", String(32), nullable=False),
    Column("clearing_category", String(16), nullable=False),
    Column("settle_date", Date, nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=False),
    Column("interim", Boolean, nullable=False),
    Column("total_fen", BigInteger, nullable=False),
    Column("deductible_fen", BigInteger, nullable=False),
    Column("fund_total_fen", BigInteger, nullable=False),
    Column("personal_account_fen", BigInteger, nullable=False),
    Column("cash_fen", BigInteger, nullable=False),
    Column("result", Text, nullable=False),
    Column("flags", Text, nullable=False),
)
Index("ix_settlements_visit", settlements.c.visit_id)
Index("ix_settlements_institution_date", settlements.c.institution_code, settlements.c.settle_date)

_ACC_FIELDS = tuple(f.name for f in fields(Accumulators) if f.name not in ("year", "account_balance_fen"))
accumulators = Table(
    "person_year_accumulators",
    metadata,
    Column("person_no", String(40), primary_key=True),
    Column("year", Integer, primary_key=True),
    *[Column(name, BigInteger, nullable=False, default=0) for name in _ACC_FIELDS],
)
accounts = Table(
    "personal_accounts",
    metadata,
    Column("person_no", String(40), primary_key=True),
    Column("balance_fen", BigInteger, nullable=False),
)

manual_claims = Table(
    "manual_claims",
    metadata,
    Column("claim_id", String(40), primary_key=True),
    Column("institution_code", String(32), nullable=False),
    Column("hospital_visit_no", String(64), nullable=False),
    Column("person_no", String(40), nullable=False),
    Column("insured_region", String(6), nullable=False),
    Column("service_type", String(32), nullable=False),
    Column("decision", Text, nullable=False),
    Column("admission_date", Date, nullable=False),
    Column("discharge_date", Date, nullable=False),
    Column("diagnosis_codes", Text, nullable=False),
    Column("lines", Text, nullable=False),
    Column("failure_reason", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("result", Text, nullable=False),
    Column("reimbursed_fen", BigInteger, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=True),
)
Index("ux_manual_claims_visit", manual_claims.c.institution_code, manual_claims.c.hospital_visit_no, unique=True)
Index("ix_manual_claims_region_status", manual_claims.c.insured_region, manual_claims.c.status)

# Every policy and catalogue version this service has had in force, as the text of its file, so a
# settlement names a version that stays addressable (RecomputeSettlement) after the file changed,
# was removed, or the service restarted.
policy_versions = Table(
    "policy_versions",
    metadata,
    Column("version", String(120), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("source_text", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# The insured place's own spending, one row per movement its bureau reported (HomeMovementService).
home_movements = Table(
    "home_movements",
    metadata,
    Column("insured_region", String(6), primary_key=True),
    Column("movement_id", String(64), primary_key=True),
    Column("person_no", String(40), nullable=False),
    Column("year", Integer, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("delta", Text, nullable=False),
    Column("account_delta_fen", BigInteger, nullable=False),
    Column("occurred_on", Date, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_home_movements_person_year", "person_no", "year"),
)

settlement_events = outbox_table(metadata, "settlement_events")
idempotency_keys = idempotency_table(metadata)

# -- the hot path's statements, built once ---------------------------------------------------
# Statement objects built per call make SQLAlchemy regenerate their cache keys (and coerce every
# literal) each time: profiling Settle showed that as the largest single cost. These are built at
# import with bind parameters, so each call only binds values. Parameter names never equal a
# column name (SQLAlchemy reserves those in UPDATE ... SET).
_B = bindparam
_VISIT = select(visits).where(visits.c.visit_id == _B("b_visit"))
_VISIT_FOR_UPDATE = _VISIT.with_for_update()
_LINES = select(fee_lines).where(fee_lines.c.visit_id == _B("b_visit")).order_by(fee_lines.c.line_no)
_UNSETTLED_LINES = (
    select(fee_lines)
    .where(and_(fee_lines.c.visit_id == _B("b_visit"), fee_lines.c.settlement_id.is_(None)))
    .order_by(fee_lines.c.line_no)
)
_MARK_SETTLED = (
    update(fee_lines)
    .where(and_(fee_lines.c.visit_id == _B("b_visit"), fee_lines.c.line_no.in_(_B("b_nos", expanding=True))))
    .values(settlement_id=_B("b_settlement"))
)
_STAY_DEDUCTIBLE = select(func.coalesce(func.sum(settlements.c.deductible_fen), 0)).where(
    settlements.c.visit_id == _B("b_visit")
)
_SET_STATUS = (
    update(visits)
    .where(visits.c.visit_id == _B("b_visit"))
    .values(status=_B("b_status"), settled_stays=visits.c.settled_stays + _B("b_delta"))
)
_SET_STATUS_DISCHARGED = _SET_STATUS.values(discharge_date=_B("b_discharge"))
_INSERT_SETTLEMENT = settlements.insert()
_LOCK_ACCUMULATORS = (
    select(accumulators, accounts.c.balance_fen)
    .join(accounts, accounts.c.person_no == accumulators.c.person_no)
    .where(and_(accumulators.c.person_no == _B("b_person"), accumulators.c.year == _B("b_year")))
    .with_for_update()
)
_SAVE_ACCUMULATORS = (
    update(accumulators)
    .where(and_(accumulators.c.person_no == _B("b_person"), accumulators.c.year == _B("b_year")))
    .values({name: _B(f"b_{name}") for name in _ACC_FIELDS})
)
_VISITS_FOR_UPDATE = (
    select(visits)
    .where(visits.c.visit_id.in_(_B("b_ids", expanding=True)))
    .order_by(visits.c.visit_id)
    .with_for_update()
)
_UNSETTLED_LINES_OF = (
    select(fee_lines)
    .where(and_(fee_lines.c.visit_id.in_(_B("b_ids", expanding=True)), fee_lines.c.settlement_id.is_(None)))
    .order_by(fee_lines.c.visit_id, fee_lines.c.line_no)
)
_STAY_DEDUCTIBLES = (
    select(settlements.c.visit_id, func.sum(settlements.c.deductible_fen))
    .where(settlements.c.visit_id.in_(_B("b_ids", expanding=True)))
    .group_by(settlements.c.visit_id)
)
_INPATIENT_STAYS_OF = select(
    visits.c.person_no, visits.c.visit_id, visits.c.institution_code, visits.c.admission_date, visits.c.discharge_date
).where(
    and_(
        visits.c.person_no.in_(_B("b_persons", expanding=True)),
        visits.c.service_type == "inpatient",
        visits.c.status != "cancelled",
    )
)
_LOCK_ACCUMULATORS_OF = (
    select(accumulators, accounts.c.balance_fen)
    .join(accounts, accounts.c.person_no == accumulators.c.person_no)
    .where(accumulators.c.person_no.in_(_B("b_persons", expanding=True)))
    .order_by(accumulators.c.person_no, accumulators.c.year)
    .with_for_update()
)
_MARK_VISIT_LINES = (
    update(fee_lines)
    .where(and_(fee_lines.c.visit_id == _B("b_visit"), fee_lines.c.settlement_id.is_(None)))
    .values(settlement_id=_B("b_settlement"))
)
_SAVE_BALANCE = update(accounts).where(accounts.c.person_no == _B("b_person")).values(balance_fen=_B("b_balance"))


# -- mapping -------------------------------------------------------------------------------
def decision_to_json(d: Decision) -> str:
    doc = asdict(d)
    doc["birth_date"] = d.birth_date.isoformat() if d.birth_date else None
    doc["reasons"] = list(d.reasons)
    return json.dumps(doc, separators=(",", ":"))


def decision_from_json(raw: str) -> Decision:
    d = json.loads(raw)
    d["reasons"] = tuple(d["reasons"])
    d["birth_date"] = dt.date.fromisoformat(d["birth_date"]) if d["birth_date"] else None
    d["insurance_type"] = InsuranceType(d["insurance_type"]) if d["insurance_type"] else None
    d["person_type"] = PersonType(d["person_type"]) if d["person_type"] else None
    d["filing_type"] = FilingType(d["filing_type"]) if d["filing_type"] else None
    return Decision(**d)


def _utc(v: dt.datetime) -> dt.datetime:
    return v if v.tzinfo else v.replace(tzinfo=dt.UTC)


def visit_from_row(r: Any) -> VisitRecord:
    """From a mapping of the visits columns: a SQLAlchemy row's ``_mapping`` or an asyncpg record."""
    return VisitRecord(
        visit_id=r["visit_id"],
        institution_code=r["institution_code"],
        hospital_visit_no=r["hospital_visit_no"],
        service_type=ServiceType(r["service_type"]),
        status=VisitStatus(r["status"]),
        decision=decision_from_json(r["decision"]),
        admission_date=r["admission_date"],
        discharge_date=r["discharge_date"],
        diagnosis_codes=tuple(json.loads(r["diagnosis_codes"])),
        special_disease_code=r["special_disease_code"],
        opened_at=_utc(r["opened_at"]),
        fee_line_count=r["fee_line_count"],
        fee_total_fen=r["fee_total_fen"],
        settled_stays=r["settled_stays"],
        emergency=r["emergency"],
        trauma_declared=r["trauma_declared"],
    )


def visit_row(v: VisitRecord) -> dict[str, Any]:
    """The visits row of a record: every column of ``visits`` (a test checks the two agree)."""
    return {
        "visit_id": v.visit_id,
        "institution_code": v.institution_code,
        "hospital_visit_no": v.hospital_visit_no,
        "service_type": v.service_type.value,
        "status": v.status.value,
        "person_no": v.decision.person_no,
        "decision": decision_to_json(v.decision),
        "admission_date": v.admission_date,
        "discharge_date": v.discharge_date,
        "diagnosis_codes": json.dumps(list(v.diagnosis_codes)),
        "special_disease_code": v.special_disease_code,
        "emergency": v.emergency,
        "trauma_declared": v.trauma_declared,
        "fee_line_count": v.fee_line_count,
        "fee_total_fen": v.fee_total_fen,
        "settled_stays": v.settled_stays,
        "opened_at": v.opened_at,
    }


def settlement_from_row(r: Any) -> SettlementRecord:
    return SettlementRecord(
        settlement_id=r.settlement_id,
        request_id=r.request_id,
        visit_id=r.visit_id,
        kind=SettlementKind(r.kind),
        cancels_settlement_id=r.cancels_settlement_id or "",
        institution_code=r.institution_code,
        person_no=r.person_no,
        insured_region=r.insured_region,
        treatment_region=r.treatment_region,
        service_type=ServiceType(r.service_type),
        category=ClearingCategory(r.clearing_category),
        settle_date=r.settle_date,
        settled_at=_utc(r.settled_at),
        interim=r.interim,
        result_json=r.result,
        flags=tuple(MonitoringFlag(**f) for f in json.loads(r.flags)),
    )


def _lines_json(lines: tuple[UploadedLine, ...]) -> str:
    return json.dumps(
        [
            [
                u.line.line_no,
                u.line.item_code,
                u.line.quantity_milli,
                u.line.unit_price_fen,
                u.line.refund_of_line_no,
                u.item_name,
                u.fee_date.isoformat() if u.fee_date else None,
            ]
            for u in lines
        ],
        separators=(",", ":"),
    )


def _lines_from_json(raw: str) -> tuple[UploadedLine, ...]:
    return tuple(
        UploadedLine(FeeLine(n, code, q, p, ref), name, dt.date.fromisoformat(d) if d else None)
        for n, code, q, p, ref, name, d in json.loads(raw)
    )


def claim_from_row(r: Any) -> ManualClaim:
    return ManualClaim(
        claim_id=r.claim_id,
        institution_code=r.institution_code,
        hospital_visit_no=r.hospital_visit_no,
        service_type=ServiceType(r.service_type),
        decision=decision_from_json(r.decision),
        admission_date=r.admission_date,
        discharge_date=r.discharge_date,
        diagnosis_codes=tuple(json.loads(r.diagnosis_codes)),
        lines=_lines_from_json(r.lines),
        failure_reason=r.failure_reason,
        status=ClaimStatus(r.status),
        submitted_at=_utc(r.submitted_at),
        result_json=r.result,
        processed_at=_utc(r.processed_at) if r.processed_at else None,
    )


_FLAG_FIELDS = tuple(f.name for f in fields(MonitoringFlag))  # plain values: no deep-copying asdict()


def settlement_row(rec: SettlementRecord, result: SettlementResult) -> dict[str, Any]:
    """The settlements row of a record: every column of ``settlements`` (a test checks)."""
    return {
        "settlement_id": rec.settlement_id,
        "request_id": rec.request_id,
        "visit_id": rec.visit_id,
        "kind": rec.kind.value,
        "cancels_settlement_id": rec.cancels_settlement_id or None,
        "institution_code": rec.institution_code,
        "person_no": rec.person_no,
        "insured_region": rec.insured_region,
        "treatment_region": rec.treatment_region,
        "service_type": rec.service_type.value,
        "clearing_category": rec.category.value,
        "settle_date": rec.settle_date,
        "settled_at": rec.settled_at,
        "interim": rec.interim,
        "total_fen": result.total_fen,
        "deductible_fen": result.deductible_fen,
        "fund_total_fen": result.fund_total_fen,
        "personal_account_fen": result.personal_account_fen,
        "cash_fen": result.cash_fen,
        "result": rec.result_json,
        "flags": json.dumps([{n: getattr(f, n) for n in _FLAG_FIELDS} for f in rec.flags], separators=(",", ":")),
    }


class SettlementRepository:
    """Implements ``application.ports.SettlementRepo`` inside one unit of work."""

    def __init__(self, session: AsyncConnection) -> None:
        self.s = session

    # idempotency keys
    async def check_key(self, request_id: str, operation: str, fp: str) -> str | None:
        return await idempotency.check(self.s, idempotency_keys, request_id, operation, fp)

    async def lookup_key(self, request_id: str) -> tuple[str, str] | None:
        return await idempotency.lookup(self.s, idempotency_keys, request_id)

    async def record_key(self, request_id: str, operation: str, fp: str, ref: str) -> None:
        await idempotency.record(self.s, idempotency_keys, request_id, operation, fp, ref)

    # the archive of policy and catalogue versions
    async def record_policy_versions(self, sources: dict[str, tuple[str, str]], now: dt.datetime) -> int:
        return await record_policy_versions(self.s, sources, now)

    async def archived_policy_version(self, version: str) -> tuple[str, str] | None:
        return await archived_policy_version(self.s, version)

    # visits
    async def add_visit(self, v: VisitRecord) -> None:
        await self.s.execute(insert(visits), visit_row(v))

    async def visit(self, visit_id: str, *, for_update: bool = False) -> VisitRecord | None:
        row = (await self.s.execute(_VISIT_FOR_UPDATE if for_update else _VISIT, {"b_visit": visit_id})).first()
        return visit_from_row(row._mapping) if row else None

    # -- bulk reads and writes for a batch of settlements (one transaction for many) --------
    async def visits_for_update(self, visit_ids: list[str]) -> dict[str, VisitRecord]:
        """Row-locks the visits in id order (a fixed order: concurrent batches cannot deadlock)."""
        rows = (await self.s.execute(_VISITS_FOR_UPDATE, {"b_ids": sorted(set(visit_ids))})).all()
        return {r.visit_id: visit_from_row(r._mapping) for r in rows}

    async def unsettled_lines_of(self, visit_ids: list[str]) -> dict[str, list[FeeLine]]:
        out: dict[str, list[FeeLine]] = {v: [] for v in visit_ids}
        for r in (await self.s.execute(_UNSETTLED_LINES_OF, {"b_ids": visit_ids})).all():
            out[r.visit_id].append(
                FeeLine(r.line_no, r.item_code, r.quantity_milli, r.unit_price_fen, r.refund_of_line_no)
            )
        return out

    async def stay_deductibles(self, visit_ids: list[str]) -> dict[str, int]:
        if not visit_ids:
            return {}
        return {v: int(n or 0) for v, n in (await self.s.execute(_STAY_DEDUCTIBLES, {"b_ids": visit_ids})).all()}

    async def inpatient_stays_of(self, persons: list[str]) -> dict[str, list[Stay]]:
        """Every non-cancelled inpatient stay of these persons: (visit, institution, admitted, discharged)."""
        out: dict[str, list[Stay]] = {}
        if persons:
            for r in (await self.s.execute(_INPATIENT_STAYS_OF, {"b_persons": sorted(set(persons))})).all():
                out.setdefault(r.person_no, []).append(
                    (r.visit_id, r.institution_code, r.admission_date, r.discharge_date)
                )
        return out

    async def lock_accumulators_of(
        self, wanted: dict[tuple[str, int], int], *, create: bool = True
    ) -> dict[tuple[str, int], Accumulators]:
        """Locks every wanted (person, year) row with its account, creating missing ones first
        (``wanted`` maps each key to the balance that seeds a new account); with ``create``
        false, locks and returns only those that exist."""
        persons = sorted({p for p, _ in wanted})
        found: dict[tuple[str, int], Accumulators] = {}
        for attempt in range(2):
            rows = (await self.s.execute(_LOCK_ACCUMULATORS_OF, {"b_persons": persons})).all()
            found = {
                (r.person_no, r.year): Accumulators(
                    year=r.year, account_balance_fen=r.balance_fen, **{n: getattr(r, n) for n in _ACC_FIELDS}
                )
                for r in rows
                if (r.person_no, r.year) in wanted
            }
            missing = [k for k in wanted if k not in found]
            if not missing or not create:
                return found
            if attempt:
                break
            for person, year in missing:
                await self._insert_missing(
                    accumulators, {"person_no": person, "year": year, **dict.fromkeys(_ACC_FIELDS, 0)}
                )
                await self._insert_missing(accounts, {"person_no": person, "balance_fen": wanted[(person, year)]})
        raise AssertionError("accumulator rows vanished")

    async def write_batch(
        self,
        records: list[tuple[SettlementRecord, SettlementResult]],
        accs: dict[tuple[str, int], Accumulators],
        balances: dict[str, int],
        statuses: list[dict[str, Any]],
        keys: list[dict[str, Any]],
        outbox_table: Table,
    ) -> None:
        """Every write of a batch as one statement per table (multi-row INSERT / executemany)."""
        await self.s.execute(_INSERT_SETTLEMENT, [settlement_row(rec, result) for rec, result in records])
        await self.s.execute(
            outbox_table.insert(),
            [
                {"event_type": r[0].kind.value, "entity_id": r[0].settlement_id, "payload": r[0].settlement_id.encode()}
                for r in records
            ],
        )
        await self.s.execute(
            _MARK_VISIT_LINES, [{"b_visit": r[0].visit_id, "b_settlement": r[0].settlement_id} for r in records]
        )
        await self.s.execute(
            _SAVE_ACCUMULATORS,
            [
                {"b_person": p, "b_year": y, **{f"b_{n}": getattr(a, n) for n in _ACC_FIELDS}}
                for (p, y), a in accs.items()
            ],
        )
        await self.s.execute(_SAVE_BALANCE, [{"b_person": p, "b_balance": b} for p, b in balances.items()])
        plain = [st for st in statuses if "b_discharge" not in st]
        discharged = [st for st in statuses if "b_discharge" in st]
        if plain:
            await self.s.execute(_SET_STATUS, plain)
        if discharged:
            await self.s.execute(_SET_STATUS_DISCHARGED, discharged)
        await self.s.execute(idempotency_keys.insert(), keys)

    async def visit_by_hospital_no(self, institution: str, visit_no: str) -> VisitRecord | None:
        row = (
            await self.s.execute(
                select(visits).where(
                    and_(visits.c.institution_code == institution, visits.c.hospital_visit_no == visit_no)
                )
            )
        ).first()
        return visit_from_row(row._mapping) if row else None

    async def set_visit_status(
        self, visit_id: str, status: VisitStatus, *, discharge_date: dt.date | None = None, settled_stays_delta: int = 0
    ) -> None:
        params: dict[str, Any] = {"b_visit": visit_id, "b_status": status.value, "b_delta": settled_stays_delta}
        if discharge_date is None:
            await self.s.execute(_SET_STATUS, params)
        else:
            await self.s.execute(_SET_STATUS_DISCHARGED, {**params, "b_discharge": discharge_date})

    # fee lines
    async def replace_lines(self, visit_id: str, lines: list[UploadedLine]) -> None:
        numbers = [u.line.line_no for u in lines]
        await self.s.execute(
            fee_lines.delete().where(and_(fee_lines.c.visit_id == visit_id, fee_lines.c.line_no.in_(numbers)))
        )
        await self.s.execute(
            insert(fee_lines),
            [
                {
                    "visit_id": visit_id,
                    "line_no": u.line.line_no,
                    "item_code": u.line.item_code,
                    "item_name": u.item_name,
                    "quantity_milli": u.line.quantity_milli,
                    "unit_price_fen": u.line.unit_price_fen,
                    "fee_date": u.fee_date,
                    "refund_of_line_no": u.line.refund_of_line_no,
                }
                for u in lines
            ],
        )
        count, total = await self._line_totals(visit_id)
        await self.s.execute(
            update(visits).where(visits.c.visit_id == visit_id).values(fee_line_count=count, fee_total_fen=total)
        )

    async def _line_totals(self, visit_id: str) -> tuple[int, int]:
        rows = (
            await self.s.execute(
                select(fee_lines.c.quantity_milli, fee_lines.c.unit_price_fen).where(fee_lines.c.visit_id == visit_id)
            )
        ).all()
        # display only: the policy engine computes the exact per-line amounts
        return len(rows), sum(round_half_up(q * p, 1000) for q, p in rows)

    async def lines(self, visit_id: str, *, unsettled_only: bool = False) -> list[UploadedLine]:
        rows = (await self.s.execute(_UNSETTLED_LINES if unsettled_only else _LINES, {"b_visit": visit_id})).all()
        return [
            UploadedLine(
                FeeLine(r.line_no, r.item_code, r.quantity_milli, r.unit_price_fen, r.refund_of_line_no),
                r.item_name,
                r.fee_date,
                r.settlement_id or "",
            )
            for r in rows
        ]

    async def mark_lines_settled(self, visit_id: str, line_nos: list[int], settlement_id: str) -> None:
        await self.s.execute(_MARK_SETTLED, {"b_visit": visit_id, "b_nos": line_nos, "b_settlement": settlement_id})

    async def unmark_lines(self, visit_id: str, settlement_id: str) -> None:
        await self.s.execute(
            update(fee_lines)
            .where(and_(fee_lines.c.visit_id == visit_id, fee_lines.c.settlement_id == settlement_id))
            .values(settlement_id=None)
        )

    async def deductible_borne_in_stay(self, visit_id: str) -> int:
        """Deductible already borne by this stay's live interim settlements (cancellations negate)."""
        return int((await self.s.execute(_STAY_DEDUCTIBLE, {"b_visit": visit_id})).scalar_one())

    async def update_visit(self, visit_id: str, **values: object) -> None:
        codes = values.get("diagnosis_codes")
        if isinstance(codes, tuple | list):
            values["diagnosis_codes"] = json.dumps(list(codes))
        await self.s.execute(update(visits).where(visits.c.visit_id == visit_id).values(**values))

    # settlements
    async def add_settlement(self, rec: SettlementRecord, result: SettlementResult) -> None:
        """The settlement and its outbox event."""
        await self.s.execute(_INSERT_SETTLEMENT, settlement_row(rec, result))
        await outbox_append(self.s, settlement_events, rec.kind.value, rec.settlement_id, rec.settlement_id.encode())

    async def settlement(self, settlement_id: str) -> SettlementRecord | None:
        row = (await self.s.execute(select(settlements).where(settlements.c.settlement_id == settlement_id))).first()
        if row is None:
            return None
        rec = settlement_from_row(row)
        cancel_id = (
            await self.s.execute(
                select(settlements.c.settlement_id).where(settlements.c.cancels_settlement_id == settlement_id)
            )
        ).scalar()
        if cancel_id:
            rec = replace(rec, cancelled_by=cancel_id)
        return rec

    async def settlements_by_ids(self, ids: list[str]) -> dict[str, SettlementRecord]:
        rows = (await self.s.execute(select(settlements).where(settlements.c.settlement_id.in_(ids)))).all()
        return {r.settlement_id: settlement_from_row(r) for r in rows}

    async def settlement_by_request(self, request_id: str) -> SettlementRecord | None:
        row = (await self.s.execute(select(settlements).where(settlements.c.request_id == request_id))).first()
        return settlement_from_row(row) if row else None

    async def settlements_of_visit(self, visit_id: str) -> list[SettlementRecord]:
        rows = (
            await self.s.execute(
                select(settlements).where(settlements.c.visit_id == visit_id).order_by(settlements.c.settled_at)
            )
        ).all()
        return [settlement_from_row(r) for r in rows]

    # manual claims
    async def add_claim(self, c: ManualClaim) -> None:
        await self.s.execute(
            insert(manual_claims).values(
                claim_id=c.claim_id,
                institution_code=c.institution_code,
                hospital_visit_no=c.hospital_visit_no,
                person_no=c.decision.person_no,
                insured_region=c.decision.insured_region,
                service_type=c.service_type.value,
                decision=decision_to_json(c.decision),
                admission_date=c.admission_date,
                discharge_date=c.discharge_date,
                diagnosis_codes=json.dumps(list(c.diagnosis_codes)),
                lines=_lines_json(c.lines),
                failure_reason=c.failure_reason,
                status=c.status.value,
                result="",
                reimbursed_fen=0,
                submitted_at=c.submitted_at,
            )
        )

    async def claim(self, claim_id: str, *, for_update: bool = False) -> ManualClaim | None:
        q = select(manual_claims).where(manual_claims.c.claim_id == claim_id)
        if for_update:
            q = q.with_for_update()
        row = (await self.s.execute(q)).first()
        return claim_from_row(row) if row else None

    async def lock_stays_of(self, person_no: str, institution: str, service_type: str) -> None:
        """Serialises the same-stay check of OpenVisit and SubmitManualClaim for one person at one
        institution until the transaction ends, so the two cannot both pass it and both write
        (PostgreSQL transaction advisory lock; SQLite's BEGIN IMMEDIATE has one writer already)."""
        if self.s.dialect.name == "sqlite":
            return
        key = zlib.crc32(f"stay|{person_no}|{institution}|{service_type}".encode()) - 2**31
        await self.s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    async def stays_of(self, person_no: str, institution: str, service_type: str) -> list[StayRef]:
        """The person's visits at the institution of one service type that are not cancelled,
        each with its live (not cancelled) settlement id or ""."""
        v, st = visits.c, settlements.c
        cancelled = settlements.alias("cancelled")
        live = (
            select(st.settlement_id)
            .where(
                st.visit_id == v.visit_id,
                st.kind == "settlement",
                ~exists().where(cancelled.c.cancels_settlement_id == st.settlement_id),
            )
            .order_by(st.settled_at.desc())
            .limit(1)
            .scalar_subquery()
        )
        q = select(v.visit_id, v.hospital_visit_no, v.admission_date, v.discharge_date, live.label("live")).where(
            v.person_no == person_no,
            v.institution_code == institution,
            v.service_type == service_type,
            v.status != "cancelled",
        )
        return [
            StayRef(r.visit_id, r.hospital_visit_no, r.admission_date, r.discharge_date, str(r.live or ""))
            for r in (await self.s.execute(q)).all()
        ]

    async def claims_of(self, person_no: str, institution: str, service_type: str) -> list[StayRef]:
        c = manual_claims.c
        q = select(c.claim_id, c.hospital_visit_no, c.admission_date, c.discharge_date).where(
            c.person_no == person_no, c.institution_code == institution, c.service_type == service_type
        )
        return [StayRef(*r) for r in (await self.s.execute(q)).all()]

    async def claim_by_visit_no(self, institution: str, visit_no: str) -> ManualClaim | None:
        row = (
            await self.s.execute(
                select(manual_claims).where(
                    and_(manual_claims.c.institution_code == institution, manual_claims.c.hospital_visit_no == visit_no)
                )
            )
        ).first()
        return claim_from_row(row) if row else None

    async def mark_claim_processed(
        self, claim_id: str, result_json: str, reimbursed_fen: int, now: dt.datetime
    ) -> None:
        await self.s.execute(
            update(manual_claims)
            .where(manual_claims.c.claim_id == claim_id)
            .values(
                status=ClaimStatus.PROCESSED.value, result=result_json, reimbursed_fen=reimbursed_fen, processed_at=now
            )
        )

    async def claims(self, insured_region: str, status: str, after_id: str, limit: int) -> list[ManualClaim]:
        q = select(manual_claims)
        if insured_region:
            q = q.where(manual_claims.c.insured_region == insured_region)
        if status:
            q = q.where(manual_claims.c.status == status)
        if after_id:
            q = q.where(manual_claims.c.claim_id > after_id)
        rows = (await self.s.execute(q.order_by(manual_claims.c.claim_id).limit(limit))).all()
        return [claim_from_row(r) for r in rows]

    # accumulators: locked for the whole unit of work (row lock on PostgreSQL; SQLite has one writer)
    async def lock_accumulators(self, person_no: str, year: int, seed_balance_fen: int) -> Accumulators:
        """The person's year accumulators and account balance, row-locked until the unit of work
        ends (PostgreSQL FOR UPDATE; SQLite has one writer). Rows are created on first use."""
        for _ in range(2):
            row = (await self.s.execute(_LOCK_ACCUMULATORS, {"b_person": person_no, "b_year": year})).first()
            if row is not None:
                return Accumulators(
                    year=year, account_balance_fen=row.balance_fen, **{n: getattr(row, n) for n in _ACC_FIELDS}
                )
            await self._insert_missing(
                accumulators, {"person_no": person_no, "year": year, **dict.fromkeys(_ACC_FIELDS, 0)}
            )
            await self._insert_missing(accounts, {"person_no": person_no, "balance_fen": seed_balance_fen})
        raise AssertionError("accumulator rows vanished")

    async def _insert_missing(self, table: Table, row: dict[str, Any]) -> None:
        """INSERT unless the row exists; a concurrent creator wins harmlessly (both dialects
        support ON CONFLICT DO NOTHING)."""
        dialect_insert = pg_insert if self.s.dialect.name == "postgresql" else sqlite_insert
        await self.s.execute(dialect_insert(table).values(**row).on_conflict_do_nothing())

    async def read_accumulators(self, person_no: str, year: int, seed_balance_fen: int) -> Accumulators:
        acc = (
            await self.s.execute(
                select(accumulators).where(and_(accumulators.c.person_no == person_no, accumulators.c.year == year))
            )
        ).first()
        balance = (
            await self.s.execute(select(accounts.c.balance_fen).where(accounts.c.person_no == person_no))
        ).scalar()
        values = {n: getattr(acc, n) for n in _ACC_FIELDS} if acc else {}
        return Accumulators(year=year, account_balance_fen=seed_balance_fen if balance is None else balance, **values)

    async def save_accumulators(self, person_no: str, acc: Accumulators) -> None:
        await self.s.execute(
            _SAVE_ACCUMULATORS,
            {"b_person": person_no, "b_year": acc.year, **{f"b_{n}": getattr(acc, n) for n in _ACC_FIELDS}},
        )
        await self.s.execute(_SAVE_BALANCE, {"b_person": person_no, "b_balance": acc.account_balance_fen})

    # queries (national 5203 / 5206) --------------------------------------------------------
    async def list_settlements(
        self,
        *,
        institution: str | None,
        person_no: str | None,
        insured_region: str | None,
        date_from: dt.date,
        date_to: dt.date,
        kind: str | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[SettlementRecord]:
        """Settlements newest first (settled_at, then settlement_id, both descending), keyset
        paged after ``after``; ``cancelled_by`` filled. A None filter does not filter."""
        c = settlements.c
        q = select(settlements).where(and_(c.settle_date >= date_from, c.settle_date <= date_to))
        if institution is not None:
            q = q.where(c.institution_code == institution)
        if person_no is not None:
            q = q.where(c.person_no == person_no)
        if insured_region is not None:
            q = q.where(c.insured_region == insured_region)
        if kind is not None:
            q = q.where(c.kind == kind)
        if after is not None:
            at, sid = after
            q = q.where(or_(c.settled_at < at, and_(c.settled_at == at, c.settlement_id < sid)))
        rows = (await self.s.execute(q.order_by(c.settled_at.desc(), c.settlement_id.desc()).limit(limit))).all()
        found = [settlement_from_row(r) for r in rows]
        if not found:
            return found
        cancels = dict(
            (
                await self.s.execute(
                    select(c.cancels_settlement_id, c.settlement_id).where(
                        c.cancels_settlement_id.in_([r.settlement_id for r in found])
                    )
                )
            ).all()
        )
        return [replace(r, cancelled_by=cancels[r.settlement_id]) if r.settlement_id in cancels else r for r in found]

    async def latest_visit_of(self, person_no: str, institution: str | None) -> VisitRecord | None:
        """The person's most recently opened visit (at ``institution`` when given)."""
        q = select(visits).where(visits.c.person_no == person_no)
        if institution is not None:
            q = q.where(visits.c.institution_code == institution)
        row = (await self.s.execute(q.order_by(visits.c.opened_at.desc(), visits.c.visit_id.desc()).limit(1))).first()
        return visit_from_row(row._mapping) if row else None


async def record_policy_versions(conn: AsyncConnection, sources: dict[str, tuple[str, str]], now: dt.datetime) -> int:
    """Archive the versions not archived yet (replicas racing on one version: the first wins)."""
    if not sources:
        return 0
    known = set(
        (
            await conn.execute(select(policy_versions.c.version).where(policy_versions.c.version.in_(list(sources))))
        ).scalars()
    )
    missing = [v for v in sources if v not in known]
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for version in missing:
        kind, text = sources[version]
        await conn.execute(
            dialect_insert(policy_versions)
            .values(version=version, kind=kind, source_text=text, recorded_at=now)
            .on_conflict_do_nothing()
        )
    return len(missing)


async def archived_policy_version(conn: AsyncConnection, version: str) -> tuple[str, str] | None:
    row = (
        await conn.execute(
            select(policy_versions.c.kind, policy_versions.c.source_text).where(policy_versions.c.version == version)
        )
    ).first()
    return None if row is None else (row.kind, row.source_text)
