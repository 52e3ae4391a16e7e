"""Registry files: YAML and CSV load into entities; every error names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.core.errors import DomainError, Reason
from services.eligibility.adapters.registry_file import load_registry_file
from services.eligibility.domain.model import PersonStatus, ServiceType

SAMPLES = Path(__file__).resolve().parents[3] / "services" / "eligibility" / "samples"


def test_the_samples_load() -> None:
    data = load_registry_file(SAMPLES / "registry.yaml")
    assert {r.region_code for r in data.regions} >= {"110100", "310100"}
    h = next(i for i in data.institutions if i.institution_code == "H31010400001")
    assert (
        h.level == 3 and ServiceType.CHRONIC_OUTPATIENT in h.networked_services and "M03900" in h.special_disease_codes
    )
    persons = load_registry_file(SAMPLES / "persons.csv").persons
    assert [p.person_no for p in persons] == ["P510100900002", "P510100900003"]
    assert persons[1].hardship and persons[1].assistance_category == "low_income"
    assert load_registry_file(SAMPLES / "institutions.csv").institutions[0].networked_services == {
        ServiceType.INPATIENT,
        ServiceType.GENERAL_OUTPATIENT,
    }


def errors(path: Path) -> list[str]:
    with pytest.raises(DomainError) as exc:
        load_registry_file(path)
    assert exc.value.reason is Reason.REGISTRY_DATA_INVALID
    return [f"{v.field}: {v.description}" for v in exc.value.violations]


def test_yaml_errors_name_the_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "reg.yaml"
    f.write_text(
        "regions:\n"
        "  - {region_code: '1101', name: X}\n"
        "institutions:\n"
        "  - institution_code: H1\n"
        "    region_code: '310100'\n"
        "    level: tier_9\n"
        "    networked_services: [inpatient, dentistry]\n"
        "persons:\n"
        "  - person_no: P1\n"
        "    id_number: '123'\n"
        "    insured_region_code: '110100'\n"
        "    insurance_type: employee\n"
        "    person_type: retired\n"
        "    status: dormant\n"
        "    colour: blue\n"
    )
    got = errors(f)
    assert any(e.startswith("reg.yaml:2.region_code:") for e in got)
    assert any(e.startswith("reg.yaml:4.level:") for e in got)
    assert any(e.startswith("reg.yaml:4.networked_services:") and "dentistry" in e for e in got)
    assert any(e.startswith("reg.yaml:9.id_number:") for e in got)
    assert any(e.startswith("reg.yaml:9.status:") for e in got)
    assert any(e.startswith("reg.yaml:9.colour: unknown field") for e in got)


def test_csv_errors_name_the_line_and_field_and_duplicates(tmp_path: Path) -> None:
    f = tmp_path / "persons.csv"
    f.write_text(
        "person_no,id_number,insured_region_code,insurance_type,person_type,status,account_balance_fen\n"
        "P1,110105195403120027,110100,employee,retired,suspended,10\n"
        "P2,110105195403120028,110100,employee,pilot,active,-5\n"
        "P1,110105195403120027,110100,employee,retired,active,0\n"
    )
    got = errors(f)
    assert any(e.startswith("persons.csv:3.person_type:") for e in got)
    assert any(e.startswith("persons.csv:3.account_balance_fen:") for e in got)
    assert any(e.startswith("persons.csv:4:") and "duplicate" in e for e in got)
    ok = tmp_path / "ok.csv"
    ok.write_text(f.read_text().splitlines()[0] + "\nP1,110105195403120027,110100,employee,retired,suspended,10\n")
    assert load_registry_file(ok).persons[0].status is PersonStatus.SUSPENDED


def test_unreadable_or_unknown_files(tmp_path: Path) -> None:
    assert errors(tmp_path / "missing.yaml")[0].startswith("missing.yaml")
    (tmp_path / "x.txt").write_text("")
    assert "x.txt" in errors(tmp_path / "x.txt")[0]
    (tmp_path / "bad.yaml").write_text("regions: [\n")
    assert errors(tmp_path / "bad.yaml")[0].startswith("bad.yaml:")
