"""Shipped data loads; broken copies name file and field; books find and replay by version."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from libs.core.errors import DomainError, Reason
from libs.policy import (
    Accumulators,
    InsuranceType,
    default_books,
    generate_catalogue,
    generate_people,
    generate_visit,
    load_catalogue,
    load_policy,
    settle,
)
from libs.policy.codes import kind_of_code
from libs.policy.loader import DATA_DIR, load_books
from libs.policy.schema import content_hash
from libs.policy.synth import SHIPPED_ITEMS, id_check_digit, shipped_catalogue_data

REGIONS = ["110100", "310100", "440100", "510100", "420100"]
DAY = datetime.date(2026, 7, 1)


@pytest.mark.parametrize("path", sorted((DATA_DIR / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_policy_loads_and_names_its_source(path: Path) -> None:
    p = load_policy(path)
    assert p.source and p.version.startswith(p.label + "@")
    assert path.name.startswith(f"{p.insured_region}-{p.insurance_type}")


@pytest.mark.parametrize("path", sorted((DATA_DIR / "catalogues").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_catalogue_loads_and_a_generated_one_matches_its_generator(path: Path) -> None:
    """A bureau's own catalogue (no ``generator`` header) only has to load; the synthetic samples
    must still be exactly what the generator writes."""
    c = load_catalogue(path)
    if "SYNTHETIC" not in c.source:
        return
    assert len(c.items) == SHIPPED_ITEMS
    assert c.content_hash == content_hash(shipped_catalogue_data(c.region, c.effective_from.year))


@pytest.mark.parametrize(
    "day",
    [datetime.date(2026, 1, 1), datetime.date(2026, 12, 31), datetime.date(2027, 1, 4), datetime.date(2030, 6, 30)],
)
def test_the_samples_cover_every_date_from_2026_on(day: datetime.date) -> None:
    policies, catalogues = default_books()
    for region in REGIONS:
        assert catalogues.find(region, day).in_effect(day)
        for it in InsuranceType:
            p = policies.find(region, it, day)
            assert p.in_effect(day)
            assert p.label.endswith(f"-{min(day.year, 2027)}.1")


def test_default_books_cover_five_regions_both_schemes() -> None:
    policies, catalogues = default_books()
    for region in REGIONS:
        for it in InsuranceType:
            assert policies.find(region, it, DAY).insured_region == region
        assert catalogues.find(region, DAY).region == region
    assert default_books() is default_books()  # cached


def test_books_refuse_a_date_nothing_covers() -> None:
    policies, catalogues = default_books()
    with pytest.raises(DomainError) as info:
        policies.find("999999", InsuranceType.EMPLOYEE, DAY)
    assert info.value.reason is Reason.NO_POLICY_IN_EFFECT
    assert info.value.metadata == {"region": "999999", "insurance_type": "employee", "date": DAY.isoformat()}
    with pytest.raises(DomainError) as info:
        policies.find("110100", InsuranceType.EMPLOYEE, datetime.date(2019, 1, 1))
    assert info.value.reason is Reason.NO_POLICY_IN_EFFECT
    with pytest.raises(DomainError) as info:
        catalogues.find("110100", datetime.date(2019, 1, 1))
    assert info.value.reason is Reason.NO_CATALOGUE_IN_EFFECT
    assert info.value.metadata == {"region": "110100", "date": "2019-01-01"}
    with pytest.raises(DomainError) as info:
        catalogues.by_version("nope")
    assert info.value.reason is Reason.CATALOGUE_NOT_FOUND


def test_a_result_replays_from_its_versions() -> None:
    policies, catalogues = default_books()
    policy = policies.find("440100", InsuranceType.EMPLOYEE, DAY)
    cat = catalogues.find("110100", DAY)
    v = generate_visit(cat, seed=3, n_lines=30, n_refunds=2, settle_date=DAY, use_personal_account=True)
    acc = Accumulators(2026, account_balance_fen=100_000)
    first = settle(policy, cat, v, acc)
    again = settle(policies.by_version(first.policy_version), catalogues.by_version(first.catalogue_version), v, acc)
    assert again == first
    assert policies.by_version(policy.label) is policy


def test_a_broken_policy_copy_names_file_and_field(tmp_path: Path) -> None:
    src = DATA_DIR / "policies" / "110100-employee-2026.yaml"
    text = src.read_text().replace("in_service: [9000, 9000, 8700, 8500]", "in_service: [9000, 9000, 8700, 18500]", 1)
    broken = tmp_path / "broken-policy.yaml"
    broken.write_text(text)
    with pytest.raises(DomainError) as info:
        load_policy(broken)
    assert info.value.reason is Reason.POLICY_DATA_INVALID
    assert info.value.violations[0].field == "broken-policy.yaml:services.inpatient.segments[0].ratio_bps.in_service[3]"
    assert str(broken) in info.value.message


def test_a_broken_catalogue_copy_names_file_and_field(tmp_path: Path) -> None:
    src = DATA_DIR / "catalogues" / "510100-catalogue-2026.yaml"
    lines = src.read_text().splitlines()
    first_item = lines.index("items:") + 1
    lines[first_item + 4] = '  - ["X1", "broken", "drug", "A", null, 0]'
    broken = tmp_path / "broken-catalogue.yaml"
    broken.write_text("\n".join(lines))
    with pytest.raises(DomainError) as info:
        load_catalogue(broken)
    assert info.value.reason is Reason.CATALOGUE_DATA_INVALID
    assert info.value.violations[0].field == "broken-catalogue.yaml:items[4].code"


def test_invalid_yaml_and_missing_files_are_classified(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("schema: [unclosed\n")
    with pytest.raises(DomainError) as info:
        load_policy(bad)
    assert info.value.reason is Reason.POLICY_DATA_INVALID and info.value.violations[0].field.startswith("x.yaml")
    with pytest.raises(DomainError) as info:
        load_catalogue(tmp_path / "missing.yaml")
    assert info.value.reason is Reason.CATALOGUE_DATA_INVALID


def test_a_data_dir_copy_loads_like_the_shipped_one(tmp_path: Path) -> None:
    shutil.copytree(DATA_DIR, tmp_path / "data")
    policies, _ = load_books(tmp_path / "data")
    assert {p.version for p in policies.policies} == {p.version for p in default_books()[0].policies}


def test_synthetic_catalogues_are_deterministic_realistic_and_well_coded() -> None:
    a = generate_catalogue("420100", seed=5, n_items=3000)
    b = generate_catalogue("420100", seed=5, n_items=3000)
    assert a.version == b.version and a.items == b.items
    assert generate_catalogue("420100", seed=6, n_items=3000).version != a.version
    kinds = [kind_of_code(code) for code in a.items]
    assert None not in kinds
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert len(counts) == 3 and min(counts.values()) > 300


def test_synthetic_people_have_fake_but_checksum_valid_ids() -> None:
    people = generate_people(200, seed=1, regions=REGIONS)
    assert people == generate_people(200, seed=1, regions=REGIONS)
    for p in people:
        assert len(p.person_id) == 18 and p.person_id[:6] == p.insured_region  # city-level code: never issued
        assert p.person_id[14] == "9"
        assert id_check_digit(p.person_id[:17]) == p.person_id[17]
        assert p.person_type.value.startswith("resident") == (p.insurance_type is InsuranceType.RESIDENT)
