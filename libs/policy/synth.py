"""Synthetic but realistic test data: catalogues, people and visits. Deterministic by seed.

Used by the tests, the benchmark, and to produce the shipped sample catalogues under
``libs/policy/data/catalogues/`` (``python -m libs.policy.synth`` rewrites them; they are
checked in so loading needs no generation step).

Person ID numbers are FAKE: 18 digits with a valid ISO 7064 MOD 11-2 check digit, but the
address part is the *city-level* code of the coordinating region (e.g. ``110100``), which is
never issued on a real ID (real IDs carry a county code), and the sequence part starts with 9.
"""

from __future__ import annotations

import datetime
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from libs.policy.model import (
    PERSON_TYPES_OF,
    Catalogue,
    CatalogueItem,
    FeeLine,
    FilingType,
    InsuranceType,
    ItemClass,
    ItemKind,
    PersonType,
    ServiceType,
    Visit,
)
from libs.policy.schema import CATALOGUE_SCHEMA, content_hash, parse_catalogue

REGION_NAMES = {
    "110100": "Beijing",
    "310100": "Shanghai",
    "440100": "Guangzhou",
    "510100": "Chengdu",
    "420100": "Wuhan",
}

_DRUGS = (
    "Amoxicillin",
    "Cefuroxime",
    "Azithromycin",
    "Levofloxacin",
    "Metformin",
    "Insulin glargine",
    "Amlodipine",
    "Nifedipine",
    "Valsartan",
    "Atorvastatin",
    "Rosuvastatin",
    "Aspirin",
    "Clopidogrel",
    "Omeprazole",
    "Pantoprazole",
    "Ibuprofen",
    "Paracetamol",
    "Salbutamol",
    "Budesonide",
    "Heparin",
    "Enoxaparin",
    "Ceftriaxone",
    "Piperacillin-tazobactam",
    "Meropenem",
    "Vancomycin",
    "Furosemide",
    "Spironolactone",
    "Metoprolol",
    "Bisoprolol",
    "Losartan",
    "Gliclazide",
    "Acarbose",
    "Levothyroxine",
    "Prednisone",
    "Methylprednisolone",
    "Dexamethasone",
    "Ondansetron",
    "Morphine",
    "Tramadol",
    "Oseltamivir",
    "Entecavir",
    "Tenofovir",
    "Imatinib",
    "Capecitabine",
    "Oxaliplatin",
    "Paclitaxel",
    "Sodium chloride",
    "Glucose",
    "Potassium chloride",
    "Albumin (human)",
)
_TCM = (
    "Lianhua Qingwen",
    "Banlangen",
    "Danshen dripping pill",
    "Xuesaitong",
    "Niuhuang Jiedu",
    "Liuwei Dihuang",
    "Shufeng Jiedu",
    "Tongxinluo",
    "Xingnaojing",
    "Shenmai",
)
_FORMS = (("tablet", "T"), ("capsule", "C"), ("injection", "I"), ("granules", "G"), ("oral solution", "O"))
_SERVICES = (
    "General consultation",
    "Specialist consultation",
    "Inpatient bed day (ward)",
    "ICU bed day",
    "Level-1 nursing care",
    "Level-2 nursing care",
    "Intravenous infusion",
    "Intramuscular injection",
    "Complete blood count",
    "Liver function panel",
    "Renal function panel",
    "Blood glucose test",
    "Electrocardiogram",
    "Chest X-ray",
    "CT scan (head)",
    "CT scan (chest)",
    "MRI (lumbar)",
    "Ultrasound (abdomen)",
    "Echocardiography",
    "Gastroscopy",
    "Colonoscopy",
    "Appendectomy",
    "Cholecystectomy (laparoscopic)",
    "Coronary angiography",
    "PCI stent placement",
    "Hemodialysis",
    "Physiotherapy session",
    "Acupuncture",
    "Wound dressing",
    "Oxygen therapy (per hour)",
)
_CONSUMABLES = (
    "Infusion set",
    "Syringe 5 ml",
    "Indwelling needle",
    "Urinary catheter",
    "Surgical suture",
    "Hemostatic gauze",
    "Coronary stent (drug-eluting)",
    "Balloon catheter",
    "Artificial hip joint",
    "Intraocular lens",
    "Pacemaker lead",
    "Orthopaedic plate",
    "Hernia mesh",
    "Dialyser",
)
_ATC = "ABCDGHJLMNPRSV"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _drug_code(rng: random.Random, tcm: bool, form_letter: str) -> str:
    return (
        ("Z" if tcm else "X")
        + rng.choice(_ATC)
        + _digits(rng, 2)
        + "".join(rng.choice(_UPPER) for _ in range(3))
        + _digits(rng, 3)
        + form_letter
        + _digits(rng, 12)
    )


def _log_uniform(rng: random.Random, lo_fen: int, hi_fen: int) -> int:
    # integer-only: pick a decade-ish scale, then a value in it
    scale = lo_fen
    while scale * 10 <= hi_fen and rng.random() < 0.55:
        scale *= 10
    return rng.randint(scale, min(scale * 10, hi_fen))


def _make_item(rng: random.Random, kind: ItemKind) -> CatalogueItem:
    if kind is ItemKind.DRUG:
        tcm = rng.random() < 0.2
        form, letter = rng.choice(_FORMS)
        base = rng.choice(_TCM if tcm else _DRUGS)
        name = f"{base} {form}"
        code = _drug_code(rng, tcm, letter)
        cls = rng.choices((ItemClass.A, ItemClass.B, ItemClass.C), (45, 45, 10))[0]
        ceiling = _log_uniform(rng, 100, 300_000) if rng.random() < 0.5 else None
        spf = rng.choice((500, 1000, 1000, 1500, 2000)) if cls is ItemClass.B else 0
    elif kind is ItemKind.SERVICE:
        name = rng.choice(_SERVICES)
        code = "00" + _digits(rng, 13)
        cls = rng.choices((ItemClass.A, ItemClass.B, ItemClass.C), (60, 30, 10))[0]
        ceiling = _log_uniform(rng, 500, 2_000_000) if rng.random() < 0.6 else None
        spf = rng.choice((1000, 2000, 3000)) if cls is ItemClass.B else 0
    else:
        name = rng.choice(_CONSUMABLES)
        code = "C" + _digits(rng, 26)
        cls = rng.choices((ItemClass.A, ItemClass.B, ItemClass.C), (20, 60, 20))[0]
        ceiling = _log_uniform(rng, 1_000, 5_000_000) if rng.random() < 0.7 else None
        spf = rng.choice((1000, 2000, 3000, 5000)) if cls is ItemClass.B else 0
    return CatalogueItem(code, name, kind, cls, ceiling, spf)


def catalogue_data(
    region: str,
    *,
    seed: int,
    n_items: int = 3000,
    version: str | None = None,
    year: int = 2026,
    open_ended: bool = False,
) -> dict[str, object]:
    """The file-shaped data (``medsettle.catalogue/v1``) of a synthetic catalogue, in effect from
    1 January of ``year`` to 31 December, or with no end date when ``open_ended``."""
    rng = random.Random(f"catalogue:{region}:{seed}")
    rows: list[list[object]] = []
    seen: set[str] = set()
    kinds = (ItemKind.DRUG, ItemKind.SERVICE, ItemKind.CONSUMABLE)
    while len(rows) < n_items:
        item = _make_item(rng, rng.choices(kinds, (60, 25, 15))[0])
        if item.code in seen:
            continue
        seen.add(item.code)
        rows.append(
            [
                item.code,
                item.name,
                item.kind.value,
                item.item_class.value,
                item.ceiling_fen,
                item.self_pay_first_bps,
            ]
        )
    # About 3% of items carry a use restriction (women only, children only, the elderly),
    # drawn from a separate stream so the items themselves do not depend on it.
    restrict = random.Random(f"restrictions:{region}:{seed}")
    for row in rows:
        if restrict.random() < 0.03:
            row.append(restrict.choice(({"sex": "F"}, {"sex": "M"}, {"max_age": 14}, {"min_age": 60})))
    data: dict[str, object] = {
        "schema": CATALOGUE_SCHEMA,
        "version": version or f"{region}-catalogue-{year}.1",
        "region": region,
        "region_name": REGION_NAMES.get(region, f"Region {region}"),
        "effective_from": datetime.date(year, 1, 1),
        "effective_to": None if open_ended else datetime.date(year, 12, 31),
        "source": (
            "SYNTHETIC: generated by libs.policy.synth.generate_catalogue "
            f"(seed={seed}, n_items={n_items}); national-style codes, not the region's real list"
        ),
        "generator": {"seed": seed, "n_items": n_items},
        "items": rows,
    }
    if open_ended:
        del data["effective_to"]
    return data


def generate_catalogue(
    region: str, *, seed: int, n_items: int = 3000, version: str | None = None, year: int = 2026
) -> Catalogue:
    """A realistic synthetic catalogue: drugs (~60%), service items (~25%), consumables (~15%)
    with national-style codes, A/B/C classes, price ceilings and class-B self-pay-first ratios."""
    data = catalogue_data(region, seed=seed, n_items=n_items, version=version, year=year)
    return parse_catalogue(data, f"<synthetic {region} seed={seed}>")


def dump_catalogue_yaml(data: dict[str, object]) -> str:
    """Compact, stable YAML text for catalogue data: one flow row per item."""
    out = []
    for key in ("schema", "version", "region", "region_name", "effective_from", "effective_to", "source"):
        if key not in data:
            continue
        value = data[key]
        text = value.isoformat() if isinstance(value, datetime.date) else json.dumps(value, ensure_ascii=False)
        out.append(f"{key}: {text}")
    out.append(f"generator: {json.dumps(data['generator'])}")
    out.append("items:")
    rows = data["items"]
    assert isinstance(rows, list)
    for row in rows:
        out.append("  - " + json.dumps(row, ensure_ascii=False))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- people


@dataclass(frozen=True, slots=True)
class SyntheticPerson:
    person_id: str  # FAKE 18-digit ID number (see module doc)
    name: str
    insured_region: str
    insurance_type: InsuranceType
    person_type: PersonType
    birth_date: datetime.date
    sex: str  # "M" / "F"
    account_balance_fen: int
    assistance_category: str | None
    hardship: bool


_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a Chinese resident ID number."""
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


_SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu")
_GIVEN = ("Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Jun", "Hua", "Ping", "Xin", "Tao", "Li")


def generate_people(n: int, *, seed: int, regions: list[str]) -> list[SyntheticPerson]:
    """``n`` synthetic insured people spread over ``regions`` (deterministic by seed)."""
    rng = random.Random(f"people:{seed}")
    people = []
    for i in range(n):
        region = regions[i % len(regions)]
        insurance = InsuranceType.EMPLOYEE if rng.random() < 0.55 else InsuranceType.RESIDENT
        birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=rng.randint(0, 365 * 84))
        age = 2026 - birth.year
        if insurance is InsuranceType.EMPLOYEE:
            if age < 18:
                birth = birth.replace(year=birth.year - 20)
                age += 20
            person = PersonType.RETIRED if age >= 60 else PersonType.IN_SERVICE
            balance = rng.randint(0, 2_000_000)
        else:
            person = PersonType.RESIDENT_MINOR if age < 18 else PersonType.RESIDENT_ADULT
            balance = 0
        assert person in PERSON_TYPES_OF[insurance]
        sex = rng.choice("MF")
        seq = 900 + (i % 50) * 2 + (1 if sex == "M" else 0)  # odd = male, as on real IDs
        first17 = f"{region[:4]}00{birth:%Y%m%d}{seq:03d}"
        category = rng.choices((None, "low_income", "extreme_poverty"), (90, 8, 2))[0]
        people.append(
            SyntheticPerson(
                person_id=first17 + id_check_digit(first17),
                name=f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)} (synthetic #{i})",
                insured_region=region,
                insurance_type=insurance,
                person_type=person,
                birth_date=birth,
                sex=sex,
                account_balance_fen=balance,
                assistance_category=category,
                hardship=category is not None or rng.random() < 0.02,
            )
        )
    return people


# ----------------------------------------------------------------------------------- visits


def typical_price_fen(item: CatalogueItem) -> int:
    """A plausible charged unit price for an item (deterministic from its code): around the
    ceiling when there is one (sometimes above it), otherwise by kind."""
    rng = random.Random(f"price:{item.code}")
    if item.ceiling_fen is not None:
        return max(1, item.ceiling_fen * rng.randint(70, 115) // 100)
    lo, hi = {
        ItemKind.DRUG: (50, 200_000),
        ItemKind.SERVICE: (300, 500_000),
        ItemKind.CONSUMABLE: (500, 3_000_000),
    }[item.kind]
    return _log_uniform(rng, lo, hi)


def generate_visit(
    catalogue: Catalogue,
    *,
    seed: int,
    n_lines: int,
    service_type: ServiceType = ServiceType.INPATIENT,
    insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
    person_type: PersonType | None = None,
    filing_type: FilingType = FilingType.LONG_TERM_RESIDENT,
    hospital_level: int = 3,
    settle_date: datetime.date | None = None,
    n_refunds: int = 0,
    n_unknown: int = 0,
    use_personal_account: bool = False,
    assistance_category: str | None = None,
    hardship: bool = False,
) -> Visit:
    """A realistic visit of ``n_lines`` fee lines priced near the catalogue (some above the
    ceilings), optionally with refund lines and items that are not in the catalogue."""
    rng = random.Random(f"visit:{catalogue.version}:{seed}")
    codes = sorted(catalogue.items)
    lines: list[FeeLine] = []
    n_normal = max(1, n_lines - n_refunds)
    for i in range(n_normal):
        line_no = i + 1
        if i < n_unknown:
            code = "X" + "Z99ZZZ999Z" + _digits(rng, 12)
            lines.append(FeeLine(line_no, code, 1000 * rng.randint(1, 3), rng.randint(100, 50_000)))
            continue
        item = catalogue.items[rng.choice(codes)]
        if item.kind is ItemKind.DRUG:
            qty = rng.choice((500, 1000, 1000, 2000, 3000, 7000, 14000, 28000))
        elif item.kind is ItemKind.SERVICE:
            qty = 1000 * rng.randint(1, 5)
        else:
            qty = 1000 * rng.randint(1, 2)
        lines.append(FeeLine(line_no, item.code, qty, typical_price_fen(item)))
    for j in range(n_lines - n_normal):
        orig = lines[rng.randrange(n_unknown, n_normal) if n_normal > n_unknown else 0]
        lines.append(
            FeeLine(
                n_normal + j + 1,
                orig.item_code,
                -min(orig.quantity_milli, 500),
                orig.unit_price_fen,
                orig.line_no,
            )
        )
    # the refund of the same line twice could over-refund; keep only safe ones
    left = {ln.line_no: ln.quantity_milli for ln in lines if ln.quantity_milli > 0}
    safe: list[FeeLine] = []
    for ln in lines:
        if ln.refund_of_line_no is not None:
            if left[ln.refund_of_line_no] + ln.quantity_milli < 0:
                continue
            left[ln.refund_of_line_no] += ln.quantity_milli
        safe.append(ln)
    if person_type is None:
        person_type = PERSON_TYPES_OF[insurance_type][0]
    return Visit(
        service_type=service_type,
        hospital_level=hospital_level,
        insurance_type=insurance_type,
        person_type=person_type,
        filing_type=filing_type,
        settle_date=settle_date or catalogue.effective_from,
        lines=tuple(safe),
        use_personal_account=use_personal_account,
        assistance_category=assistance_category,
        hardship=hardship,
    )


SHIPPED_SEED = 20260101
SHIPPED_ITEMS = 300
# The shipped years: 2026 ends on 31 December; the last one has no end date, so the samples
# serve every later date until a bureau publishes a newer catalogue.
SHIPPED_YEARS = (2026, 2027)


def shipped_catalogue_data(region: str, year: int) -> dict[str, object]:
    """The data of one checked-in sample catalogue (the same items every year)."""
    return catalogue_data(
        region, seed=SHIPPED_SEED, n_items=SHIPPED_ITEMS, year=year, open_ended=year == SHIPPED_YEARS[-1]
    )


def write_shipped_catalogues(out_dir: Path) -> list[Path]:
    """(Re)write the checked-in sample catalogues, one per sample region and year."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for region in REGION_NAMES:
        for year in SHIPPED_YEARS:
            path = out_dir / f"{region}-catalogue-{year}.yaml"
            path.write_text(dump_catalogue_yaml(shipped_catalogue_data(region, year)), encoding="utf-8")
            paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data" / "catalogues"
    for written in write_shipped_catalogues(target):
        print(written, content_hash(shipped_catalogue_data(written.name[:6], int(written.stem[-4:]))))
