"""``medsettle policy validate | diff | explain`` (libs/policy/tools.py and the CLI group)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from libs.core.errors import DomainError
from libs.policy import Accumulators, FeeLine, Visit, default_books, load_catalogue, load_policy, settle
from libs.policy.loader import DATA_DIR
from libs.policy.model import FilingType, InsuranceType, PersonType, ServiceType
from libs.policy.tools import (
    diff_catalogues,
    diff_files,
    diff_policies,
    explain_lines,
    explain_visit,
    money,
    parse_visit,
    percent,
    to_jsonable,
    validate_files,
)
from services.cli import main

ROOT = Path(__file__).resolve().parents[3]
POLICIES = DATA_DIR / "policies"
CATALOGUES = DATA_DIR / "catalogues"
BEIJING_EMP = POLICIES / "110100-employee-2026.yaml"
SHANGHAI_CAT = CATALOGUES / "310100-catalogue-2026.yaml"
EXAMPLE_VISIT = ROOT / "docs" / "examples" / "visit-inpatient-shanghai.json"


def _data(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["policy", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------- formatting


def test_money_and_percent_formatting() -> None:
    assert money(130000) == "1300.00 yuan (130000 fen)"
    assert money(-5) == "-0.05 yuan (-5 fen)"
    assert percent(8500) == "85.00%"
    assert percent(9220) == "92.20%"
    assert percent(1) == "0.01%"


# --------------------------------------------------------------------------------- validate


def test_every_shipped_file_validates_with_its_version_and_dates(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted(POLICIES.glob("*.yaml")) + sorted(CATALOGUES.glob("*.yaml"))]
    rc, out, _ = _run(capsys, "validate", *files)
    assert rc == 0
    lines = out.splitlines()
    p = load_policy(BEIJING_EMP)
    assert (
        f"{BEIJING_EMP}: OK policy {p.version}, region 110100 Beijing, employee, effective 2026-01-01 to 2026-12-31"
        in lines
    )
    p27 = load_policy(POLICIES / "110100-employee-2027.yaml")
    assert "effective 2027-01-01, open-ended" in next(line for line in lines if p27.version in line)
    c = load_catalogue(SHANGHAI_CAT)
    assert any(
        line.startswith(f"{SHANGHAI_CAT}: OK catalogue {c.version}, region 310100 Shanghai, 300 items")
        for line in lines
    )
    assert lines[-1] == f"{len(files)} file(s): {len(files)} valid, 0 invalid; 0 problem(s)"


def test_validate_lists_every_problem_of_every_file_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _data(BEIJING_EMP)
    bad["effective_to"] = datetime.date(2025, 12, 31)
    bad["temporary_reduction_bps"]["other_temporary"] = 3000
    bad["services"]["inpatient"]["segments"][0]["ratio_bps"]["in_service"][3] = 18500
    bad["services"]["pharmacy"]["segments"][0]["ratio_bps"].pop("retired")
    a = _write(tmp_path / "a.yaml", bad)
    shape = _data(BEIJING_EMP)
    shape["supplementary"]["threshold_fen"] = "lots"
    b = _write(tmp_path / "b.yaml", shape)
    c = tmp_path / "c.yaml"
    c.write_text("schema: medsettle.policy/v1\nversion: [1\n", encoding="utf-8")
    d = tmp_path / "d.yaml"
    d.write_text("foo: 1\n", encoding="utf-8")
    cat = _data(SHANGHAI_CAT)
    cat["items"] = [list(cat["items"][0]), ["BAD", "x", "drug", "B", None, 500]]
    cat["items"][0][3], cat["items"][0][5] = "A", 2000  # class A with a self-pay-first ratio
    e = _write(tmp_path / "e.yaml", cat)

    f = tmp_path / "f.yaml"
    f.write_text("", encoding="utf-8")
    g = tmp_path / "g.yaml"
    g.write_text("- schema\n", encoding="utf-8")

    rc, out, _ = _run(capsys, "validate", str(a), str(b), str(c), str(d), str(e), str(f), str(g), str(BEIJING_EMP))
    assert rc == 1
    lines = out.splitlines()
    problems = [line for line in lines if ": OK " not in line][:-1]
    assert problems == [
        f"{a}:effective_to: must not be before effective_from",
        f"{a}:temporary_reduction_bps.other_temporary: must be 0..2000 bps (national limit)",
        f"{a}:services.inpatient.segments[0].ratio_bps.in_service[3]: ratio must be from 0 to 10000 bps (100%)",
        f"{a}:services.pharmacy.segments[0].ratio_bps.retired: missing: every person type of the scheme needs a value",
        f"{b}:supplementary.threshold_fen: Input should be a valid integer",
        f"{c}:line 3: not valid YAML (did not find expected ',' or ']')",
        f"{d}:schema: missing or unknown; expected medsettle.policy/v1 or medsettle.catalogue/v1",
        f"{e}:items[0].self_pay_first_bps: only class B items have a self-pay-first ratio",
        f"{e}:items[1].code: malformed national item code 'BAD'",
        f"{f}: the file is empty",
        f"{g}: the file must hold a YAML mapping (schema: ...)",
    ]
    assert [line for line in lines if ": OK " in line] == [
        f"{BEIJING_EMP}: OK policy {load_policy(BEIJING_EMP).version}, region 110100 Beijing, employee, "
        "effective 2026-01-01 to 2026-12-31"
    ]
    assert lines[-1] == "8 file(s): 1 valid, 7 invalid; 11 problem(s)"


def test_validate_refuses_files_that_overlap_when_given_together(tmp_path: Path) -> None:
    same_label = _write(tmp_path / "copy.yaml", _data(BEIJING_EMP))
    relabelled = _data(BEIJING_EMP)
    relabelled["version"] = "110100-employee-2026.2"
    same_start = _write(tmp_path / "v2.yaml", relabelled)
    report = validate_files([str(BEIJING_EMP), str(same_label), str(same_start), str(SHANGHAI_CAT), str(SHANGHAI_CAT)])
    assert not report.ok and all(f.ok for f in report.files)
    assert report.together == (
        f"{same_label}:version: duplicate policy version 110100-employee-2026.1 (also in {BEIJING_EMP})",
        f"{same_label}:effective_from: a second employee policy of region 110100 effective from 2026-01-01 "
        f"(also {BEIJING_EMP})",
        f"{same_start}:effective_from: a second employee policy of region 110100 effective from 2026-01-01 "
        f"(also {BEIJING_EMP})",
        f"{SHANGHAI_CAT}:version: duplicate catalogue version 310100-catalogue-2026.1 (also in {SHANGHAI_CAT})",
        f"{SHANGHAI_CAT}:effective_from: a second catalogue of region 310100 effective from 2026-01-01 "
        f"(also {SHANGHAI_CAT})",
    )
    # the next year's policy of the same region is no overlap
    assert validate_files([str(BEIJING_EMP), str(POLICIES / "110100-employee-2027.yaml")]).ok


def test_validate_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "validate", str(tmp_path / "nowhere.yaml"))
    assert rc == 2 and "not a file" in err
    with pytest.raises(SystemExit) as exc:
        main(["policy", "validate"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------------- diff


def test_diff_of_a_changed_copy_shows_exactly_the_changed_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = _data(BEIJING_EMP)
    new["effective_to"] = None
    new["services"]["inpatient"]["segments"][0]["ratio_bps"]["in_service"][3] = 8800
    new["services"]["inpatient"]["deductible"]["first_fen"]["retired"][2] = 120000
    new["services"]["general_outpatient"]["segments"][0]["ratio_bps"]["retired"][1] = 9100
    new["temporary_reduction_bps"]["referral"] = 500
    new["pools"]["inpatient"]["annual_cap_fen"] = 12000000
    new["supplementary"]["bands"] = [
        {"from_fen": 0, "to_fen": 10000000, "ratio_bps": 8500},
        {"from_fen": 10000000, "to_fen": None, "ratio_bps": 9000},
    ]
    new["supplementary"]["hardship"]["annual_cap_fen"] = None
    new["assistance"]["low_income"]["ratio_bps"] = 7500
    del new["assistance"]["marginal_low_income"]
    new["personal_account"] = False
    changed = _write(tmp_path / "new.yaml", new)

    rc, out, _ = _run(capsys, "diff", str(BEIJING_EMP), str(changed))
    assert rc == 1
    old_v, new_v = load_policy(BEIJING_EMP).version, load_policy(changed).version
    assert out.splitlines() == [
        f"policy {old_v} -> {new_v}",
        "general:",
        "  effective_to: 2026-12-31 -> open-ended",
        "  personal_account: yes -> no",
        "temporary_reduction_bps:",
        "  temporary_reduction_bps.referral: 0.00% -> 5.00%",
        "pools:",
        "  pools.inpatient.annual_cap_fen: 100000.00 yuan (10000000 fen) -> 120000.00 yuan (12000000 fen)",
        "services.inpatient:",
        "  services.inpatient.deductible first retired tier2: 1300.00 yuan (130000 fen) -> 1200.00 yuan (120000 fen)",
        "  services.inpatient.segments[0] ratio in_service tier3: 85.00% -> 88.00%",
        "services.general_outpatient:",
        "  services.general_outpatient.segments[0] ratio retired tier1: 90.00% -> 91.00%",
        "supplementary:",
        "  supplementary.bands[0].to_fen: open -> 100000.00 yuan (10000000 fen)",
        "  supplementary.bands[1]: added: from_fen 100000.00 yuan (10000000 fen), to_fen open, ratio_bps 90.00%",
        "  supplementary.hardship_annual_cap_fen: 400000.00 yuan (40000000 fen) -> no cap",
        "assistance:",
        "  assistance.low_income.ratio_bps: 70.00% -> 75.00%",
        "  assistance.marginal_low_income: removed: deductible_fen 1000.00 yuan (100000 fen), ratio_bps 50.00%, "
        "annual_cap_fen 40000.00 yuan (4000000 fen)",
        "12 difference(s)",
    ]


def test_diff_names_the_later_deductible_when_only_it_changes(tmp_path: Path) -> None:
    new = _data(BEIJING_EMP)
    new["services"]["inpatient"]["deductible"]["later_fen"]["in_service"][0] = 60000
    report = diff_files(str(BEIJING_EMP), str(_write(tmp_path / "n.yaml", new)))
    assert [c.line() for c in report.changes] == [
        "services.inpatient.deductible later in_service unrated: 650.00 yuan (65000 fen) -> 600.00 yuan (60000 fen)"
    ]
    assert report.changes[0].group == "services.inpatient"


def test_diff_of_identical_and_of_respelled_files_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "diff", str(BEIJING_EMP), str(BEIJING_EMP))
    assert rc == 0 and out.splitlines()[-1] == "no differences"
    # the same values spelled another way: keys reordered, the default later deductible written
    # out, a zero reduction stated: another content hash, no difference
    data = _data(BEIJING_EMP)
    svc = data["services"]["general_outpatient"]
    svc["deductible"]["later_fen"] = svc["deductible"]["first_fen"]
    data["temporary_reduction_bps"] = {"other_temporary": 1000, "referral": 0}
    respelled = tmp_path / "respelled.yaml"
    respelled.write_text(yaml.safe_dump(dict(reversed(list(data.items())))), encoding="utf-8")
    assert load_policy(respelled).version != load_policy(BEIJING_EMP).version
    rc, out, _ = _run(capsys, "diff", str(BEIJING_EMP), str(respelled))
    assert rc == 0
    assert out.splitlines()[-1] == "no differences (same values, spelled differently in the files)"


def test_diff_names_added_and_removed_services() -> None:
    old = load_policy(BEIJING_EMP)
    # the file format asks for every service today (another change makes some optional):
    # compare parsed models directly
    trimmed = dataclasses.replace(
        old, benefits={k: v for k, v in old.benefits.items() if k is not ServiceType.PHARMACY}
    )
    report = diff_policies(old, trimmed)
    assert [c.line().split(": ")[:2] for c in report.changes] == [["services.pharmacy", "removed"]]
    back = diff_policies(trimmed, old)
    assert [c.line() for c in back.changes] == [
        "services.pharmacy: added: pool outpatient, deductible mode annual, segment_scope per_year, segments 1, "
        "supplementary no"
    ]


def test_diff_names_a_supplementary_fund_added_or_removed(tmp_path: Path) -> None:
    data = _data(BEIJING_EMP)
    del data["supplementary"]
    report = diff_files(str(BEIJING_EMP), str(_write(tmp_path / "n.yaml", data)))
    assert [c.line() for c in report.changes] == [
        "supplementary: removed: fund large_amount, threshold_fen 20000.00 yuan (2000000 fen), bands 1, "
        "annual_cap_fen 400000.00 yuan (40000000 fen), hardship_threshold_fen 10000.00 yuan (1000000 fen), "
        "hardship_ratio_bonus_bps 5.00%, hardship_annual_cap_fen 400000.00 yuan (40000000 fen)"
    ]


def test_catalogue_diff_counts_and_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data(SHANGHAI_CAT)
    items = data["items"]
    removed = items.pop(1)
    items[0] = [items[0][0], items[0][1], items[0][2], items[0][3], 99999, items[0][5]]
    b_rows = [i for i, row in enumerate(items) if row[3] == "B" and i > 0]
    items[b_rows[0]][5] = 3000
    items[b_rows[1]][1] = "Renamed"
    added = ["002999999999990", "New service", "service", "A", None, 0]
    items.append(added)
    new = _write(tmp_path / "cat.yaml", data)
    old_cat, new_cat = load_catalogue(SHANGHAI_CAT), load_catalogue(new)
    report = diff_catalogues(old_cat, new_cat, limit=20)
    assert dict(report.counts) == {"added": 1, "removed": 1, "changed": 3, "old_items": 300, "new_items": 300}
    assert report.changes == ()  # same header
    assert "+ 002999999999990: New service (service, class A, no ceiling)" in report.item_lines
    assert any(line.startswith(f"- {removed[0]}: {removed[1]} (") for line in report.item_lines)
    assert f'~ {items[b_rows[1]][0]}: name "{_name_of(old_cat, items[b_rows[1]][0])}" -> "Renamed"' in (
        report.item_lines
    )
    rc, out, _ = _run(capsys, "diff", str(SHANGHAI_CAT), str(new), "--limit", "1")
    assert rc == 1
    lines = out.splitlines()
    assert "items: 1 added, 1 removed, 3 changed (300 -> 300 items)" in lines
    assert "  ~ ... and 2 more" in lines and lines[-1] == "5 difference(s)"
    assert sum(1 for line in lines if line.startswith("  ~ ") and "more" not in line) == 1
    rc, out, _ = _run(capsys, "diff", str(SHANGHAI_CAT), str(SHANGHAI_CAT))
    assert rc == 0 and out.splitlines()[-1] == "no differences"


def _name_of(cat: Any, code: str) -> str:
    return str(cat.items[code].name)


def test_diff_of_a_policy_against_a_catalogue_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "diff", str(BEIJING_EMP), str(SHANGHAI_CAT))
    assert rc == 2 and "two policy files or two catalogue files" in err


def test_diff_of_an_invalid_file_names_its_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _data(BEIJING_EMP)
    bad["pools"]["inpatient"]["annual_cap_fen"] = -1
    path = _write(tmp_path / "bad.yaml", bad)
    rc, _, err = _run(capsys, "diff", str(BEIJING_EMP), str(path))
    assert rc == 2
    assert f"{path}:pools.inpatient.annual_cap_fen: amount must be from 0 to int64 max fen" in err.splitlines()


# ---------------------------------------------------------------------------------- explain


def _example_visit() -> tuple[Visit, Accumulators]:
    raw = json.loads(EXAMPLE_VISIT.read_text(encoding="utf-8"))
    lines = tuple(
        FeeLine(x["line_no"], x["item_code"], x["quantity_milli"], x["unit_price_fen"], x.get("refund_of_line_no"))
        for x in raw["lines"]
    )
    visit = Visit(
        service_type=ServiceType.INPATIENT,
        hospital_level=3,
        insurance_type=InsuranceType.EMPLOYEE,
        person_type=PersonType.RETIRED,
        filing_type=FilingType.RELOCATED_RETIREE,
        settle_date=datetime.date(2026, 5, 12),
        lines=lines,
        use_personal_account=True,
    )
    return visit, Accumulators(year=2026, account_balance_fen=150000)


def test_explain_the_example_visit_equals_engine_settle() -> None:
    visit, acc = _example_visit()
    catalogue = default_books()[1].find("310100", visit.settle_date)
    expected = settle(load_policy(BEIJING_EMP), catalogue, visit, acc)
    ex = explain_visit(str(BEIJING_EMP), str(EXAMPLE_VISIT))
    assert ex.visit == visit
    assert ex.result == expected
    assert ex.catalogue.version == catalogue.version
    assert ex.catalogue_origin == "shipped catalogue of treatment region 310100 (Shanghai) in effect on 2026-05-12"
    # the example exercises what it is there to show
    assert expected.over_limit_fen and expected.pre_self_pay_fen and expected.full_self_pay_fen
    assert expected.personal_account_fen == 150000 and any(line.amount_fen < 0 for line in expected.lines)

    text = explain_lines(ex)
    for field in dataclasses.fields(expected):
        assert any(line.strip().startswith(field.name) for line in text), field.name
    assert f"  cash_fen              {expected.cash_fen // 100}.{expected.cash_fen % 100:02d} yuan" in text
    assert f"catalogue  {catalogue.version} ({ex.catalogue_origin})" in text
    steps = [line for line in text if line[:5].strip().rstrip(".").isdigit()]
    assert [s.split(". ", 1)[1] for s in steps] == [t.step for t in expected.trace]
    for t in expected.trace:
        assert f"      rule: {t.rule}" in text and f"      parameter: {t.parameter}".rstrip() in text


def test_explain_with_a_catalogue_file_and_accumulators_file(tmp_path: Path) -> None:
    acc_path = tmp_path / "acc.json"
    acc_path.write_text(json.dumps({"admissions": 1, "account_balance_fen": 10000}), encoding="utf-8")
    ex = explain_visit(
        str(BEIJING_EMP), str(EXAMPLE_VISIT), catalogue_path=str(SHANGHAI_CAT), accumulators_path=str(acc_path)
    )
    visit, _ = _example_visit()
    acc = Accumulators(year=2026, admissions=1, account_balance_fen=10000)
    assert ex.result == settle(load_policy(BEIJING_EMP), load_catalogue(SHANGHAI_CAT), visit, acc)
    assert ex.catalogue_origin == str(SHANGHAI_CAT)
    assert ex.result.deductible_fen == 65000  # the later-admission deductible: the file's accumulators were used


def test_explain_prints_every_field_of_a_trace_step_even_new_ones() -> None:
    """Another TraceStep shape (e.g. with structured band detail) is printed field by field."""

    class Band(NamedTuple):
        from_fen: int
        to_fen: int | None
        ratio_bps: int

    class Step(NamedTuple):
        step: str
        rule: str
        parameter: str
        amount_fen: int
        note: str
        bands: tuple[Band, ...]

    ex = explain_visit(str(BEIJING_EMP), str(EXAMPLE_VISIT))
    step = Step("pooled_fund", "segments", "p", 123456, "n", (Band(0, 2870000, 9100), Band(2870000, None, 9400)))
    ex = dataclasses.replace(ex, result=dataclasses.replace(ex.result, trace=(step,)))
    text = explain_lines(ex)
    assert "      amount_fen: 1234.56 yuan" in text
    assert (
        "      bands: from_fen 0.00 yuan (0 fen), to_fen 28700.00 yuan (2870000 fen), ratio_bps 91.00%; "
        "from_fen 28700.00 yuan (2870000 fen), to_fen open, ratio_bps 94.00%"
    ) in text
    assert to_jsonable(step)["bands"][1] == {"from_fen": 2870000, "to_fen": None, "ratio_bps": 9400}


def test_bad_visit_json_is_named_by_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = json.loads(EXAMPLE_VISIT.read_text(encoding="utf-8"))
    raw["service_type"] = "surgery"
    raw["hospital_level"] = 2.5
    raw["settle_date"] = "2026-13-01"
    raw["colour"] = "red"
    raw["lines"][0]["quantity_milli"] = 1.5
    del raw["lines"][1]["unit_price_fen"]
    raw["accumulators"]["ci_paid"] = 3
    path = tmp_path / "visit.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    rc, out, err = _run(capsys, "explain", str(BEIJING_EMP), "--visit", str(path))
    assert rc == 1 and out == ""
    named = [line.split(": ", 1)[0] for line in err.splitlines()[1:]]
    assert named == [
        f"{path}:colour",
        f"{path}:service_type",
        f"{path}:hospital_level",
        f"{path}:settle_date",
        f"{path}:lines[0].quantity_milli",
        f"{path}:lines[1].unit_price_fen",
        f"{path}:accumulators.ci_paid",
    ]
    assert err.splitlines()[0] == "medsettle policy explain: VALIDATION_FAILED: 7 problem(s)"


def test_a_visit_the_engine_refuses_names_every_field_and_every_line(tmp_path: Path) -> None:
    raw = json.loads(EXAMPLE_VISIT.read_text(encoding="utf-8"))
    raw["hospital_level"] = 7
    raw["person_type"] = "resident_adult"
    raw["lines"][0]["quantity_milli"] = 0
    raw["lines"][1]["line_no"] = 1
    raw["lines"][2]["item_code"] = "NOT-A-CODE"
    path = tmp_path / "visit.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(DomainError) as exc:
        explain_visit(str(BEIJING_EMP), str(path))
    assert [(v.field, v.description) for v in exc.value.violations] == [
        (f"{path}:hospital_level", "must be 0 (unrated) to 3"),
        (f"{path}:person_type", "resident_adult is not a person type of the employee scheme"),
        (f"{path}:lines[0].quantity_milli", "must be a non-zero integer (x1000)"),
        (f"{path}:lines[1].line_no", "duplicate line number 1"),
        (f"{path}:lines[2].item_code", "malformed item code 'NOT-A-CODE'"),
    ]


def test_visit_file_needs_a_treatment_region_without_a_catalogue() -> None:
    raw = json.loads(EXAMPLE_VISIT.read_text(encoding="utf-8"))
    del raw["treatment_region"]
    assert parse_visit(raw).treatment_region is None
    raw["treatment_region"] = 310100
    with pytest.raises(DomainError) as exc:
        parse_visit(raw)
    assert [v.field for v in exc.value.violations] == ["treatment_region"]


def test_the_real_console_script_on_the_example(tmp_path: Path) -> None:
    """``medsettle policy ...`` as installed in the venv, as a bureau would run it."""
    script = str(Path(sys.executable).parent / "medsettle")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, "policy", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)

    got = run("explain", str(BEIJING_EMP.relative_to(ROOT)), "--visit", str(EXAMPLE_VISIT.relative_to(ROOT)), "--json")
    assert got.returncode == 0, got.stderr
    visit, acc = _example_visit()
    catalogue = default_books()[1].find("310100", visit.settle_date)
    expected = settle(load_policy(BEIJING_EMP), catalogue, visit, acc)
    doc = json.loads(got.stdout)
    assert doc["result"] == to_jsonable(expected)
    assert doc["result"]["cash_fen"] == expected.cash_fen and doc["policy_version"] == expected.policy_version

    got = run("validate", str(BEIJING_EMP), str(SHANGHAI_CAT))
    assert got.returncode == 0 and got.stdout.splitlines()[-1] == "2 file(s): 2 valid, 0 invalid; 0 problem(s)"
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema: medsettle.policy/v1\n", encoding="utf-8")
    got = run("validate", str(broken))
    assert got.returncode == 1 and f"{broken}:version: Field required" in got.stdout.splitlines()
    got = run("diff", str(BEIJING_EMP), str(BEIJING_EMP))
    assert got.returncode == 0
    got = run("diff", str(BEIJING_EMP), str(POLICIES / "110100-employee-2027.yaml"))
    assert got.returncode == 1 and "  effective_from: 2026-01-01 -> 2027-01-01" in got.stdout.splitlines()
    got = run("explain", str(BEIJING_EMP))
    assert got.returncode == 2 and "--visit" in got.stderr


def test_a_loaded_version_can_stand_for_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    """Every version stays addressable: ``label@hash12`` (or the bare label) of the loaded books."""
    policy, catalogue = load_policy(BEIJING_EMP), load_catalogue(SHANGHAI_CAT)
    rc, out, _ = _run(capsys, "diff", policy.version, str(BEIJING_EMP))
    assert rc == 0 and out.splitlines() == [f"policy {policy.version} -> {policy.version}", "no differences"]
    ex = explain_visit(policy.version, str(EXAMPLE_VISIT), catalogue_path=catalogue.label)
    assert ex.policy == policy and ex.catalogue == catalogue
    assert ex.catalogue_origin == f"version {catalogue.label} of the loaded books"
    stale = policy.label + "@000000000000"  # an edited file's old hash is not found
    rc, _, err = _run(capsys, "diff", stale, str(BEIJING_EMP))
    assert rc == 2 and stale in err
    with pytest.raises(DomainError) as exc:  # a catalogue version where a policy is wanted
        explain_visit(catalogue.version, str(EXAMPLE_VISIT))
    assert [(v.field, v.description) for v in exc.value.violations] == [
        (catalogue.version, "is a catalogue version, expected a policy")
    ]


def test_docs_show_what_explain_prints() -> None:
    """docs/policy-tools.md carries the real output of explain on the example visit."""
    doc = (ROOT / "docs" / "policy-tools.md").read_text(encoding="utf-8").splitlines()
    got = explain_lines(explain_visit(str(BEIJING_EMP), str(EXAMPLE_VISIT)))
    shown = [line for line in got if not line.startswith("  line_no ")]
    missing = [line for line in shown if line and line not in doc]
    assert not missing
