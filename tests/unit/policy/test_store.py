"""PolicyStore: folders read as one set, swapped whole, refused whole, every version addressable."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from libs.core.errors import DomainError, Reason
from libs.platform import policies as policy_sources
from libs.policy.loader import DATA_DIR, PolicyStore, parse_dirs

SAMPLE = DATA_DIR / "policies" / "110100-employee-2027.yaml"


def bureau(tmp_path: Path) -> Path:
    root = tmp_path / "bureau"
    (root / "policies").mkdir(parents=True)
    (root / "catalogues").mkdir()
    shutil.copy(SAMPLE, root / "policies" / SAMPLE.name)
    shutil.copy(DATA_DIR / "catalogues" / "310100-catalogue-2027.yaml", root / "catalogues")
    return root


def relabel(text: str, n: int, cap: int) -> str:
    return text.replace("employee-2027.1", f"employee-2027.{n}").replace(
        "inpatient: {annual_cap_fen: 10000000}", f"inpatient: {{annual_cap_fen: {cap}}}"
    )


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_parse_dirs() -> None:
    assert parse_dirs("") == (DATA_DIR,)
    assert parse_dirs("@samples") == (DATA_DIR,)
    assert parse_dirs(f"a,b{os.pathsep}@samples") == (Path("a"), Path("b"), DATA_DIR)


def test_a_valid_change_is_swapped_in_whole(tmp_path: Path) -> None:
    root = bureau(tmp_path)
    store = PolicyStore([root])
    first = store.current
    assert store.reload_if_changed() is None  # nothing changed
    (root / "policies" / "110100-employee-2027.2.yaml").write_text(
        relabel(SAMPLE.read_text(), 2, 9000000).replace("2027-01-01", "2027-06-01")
    )
    changed = store.reload_if_changed()
    assert changed is not None and len(changed.added) == 1 and changed.removed == ()
    assert changed.added[0].startswith("110100-employee-2027.2@")
    assert store.current is not first and first.policies is not store.current.policies
    assert len(first.policies.policies) == 1  # the old set is untouched: whoever holds it keeps it whole


def test_a_bad_file_refuses_the_whole_set_once_and_the_old_set_stays(tmp_path: Path) -> None:
    root = bureau(tmp_path)
    store = PolicyStore([root])
    before = store.current
    good = root / "policies" / "110100-employee-2027.2.yaml"
    good.write_text(relabel(SAMPLE.read_text(), 2, 9000000).replace("2027-01-01", "2027-06-01"))
    bad = root / "policies" / "110100-employee-2027.3.yaml"
    bad.write_text(
        relabel(SAMPLE.read_text(), 3, 9000000).replace("[9400, 9400, 9220, 9100]", "[0.94, 9400, 9220, 9100]")
    )
    with pytest.raises(DomainError) as info:
        store.reload_if_changed()
    assert info.value.reason is Reason.POLICY_DATA_INVALID
    fields = [v.field for v in info.value.violations]
    assert any(
        f.startswith("110100-employee-2027.3.yaml:services.inpatient.segments[0].ratio_bps.retired") for f in fields
    )
    assert store.current is before  # nothing of the new set, not even the good file
    assert store.reload_if_changed() is None  # the same refused files are not tried (or logged) again
    bad.unlink()
    changed = store.reload_if_changed()
    assert changed is not None and [v.split("@")[0] for v in changed.added] == ["110100-employee-2027.2"]


def test_an_edited_file_is_a_new_version_and_the_old_one_stays_addressable(tmp_path: Path) -> None:
    root = bureau(tmp_path)
    store = PolicyStore([root])
    old = store.current.policies.policies[0]
    path = root / "policies" / SAMPLE.name
    path.write_text(relabel(SAMPLE.read_text(), 1, 9000000))
    bump_mtime(path)
    changed = store.reload_if_changed()
    assert changed is not None and changed.removed == (old.version,)
    new = store.current.policies.policies[0]
    assert new.label == old.label and new.version != old.version
    assert store.policy_version(old.version) is old
    assert store.policy_version(new.version) is new
    assert store.policy_version(old.label) is new  # a bare label means the current one


def test_an_archived_text_is_remembered_with_the_same_version(tmp_path: Path) -> None:
    store = PolicyStore([bureau(tmp_path)])
    text = relabel(SAMPLE.read_text(), 7, 9000000)
    got = store.remember("policy", text, "archived")
    assert got.label == "110100-employee-2027.7"
    assert store.policy_version(got.version) is got
    with pytest.raises(DomainError):
        store.remember("policy", text.replace("annual_cap_fen: 9000000", "annual_cap_fen: -1"), "archived")


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DomainError) as info:
        PolicyStore([tmp_path / "nope"])
    assert "not a folder" in info.value.violations[0].description


async def test_the_watch_swaps_a_changed_set_and_tells_its_listeners(tmp_path: Path) -> None:
    root = bureau(tmp_path)
    store = PolicyStore([root])
    seen: list[tuple[str, ...]] = []
    policy_sources.watch(store, 0.02, lambda changed: seen.append(changed.added))
    try:
        (root / "policies" / "110100-employee-2027.2.yaml").write_text(
            relabel(SAMPLE.read_text(), 2, 9000000).replace("2027-01-01", "2027-06-01")
        )
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.02)
        assert seen and seen[0][0].startswith("110100-employee-2027.2@")
    finally:
        await policy_sources.unwatch(store)
