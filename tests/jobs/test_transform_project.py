"""Flat (ConfigMap) dbt projects: keys with `__` for `/`, decoded back into a tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from duckherd_jobs.transform.project import (
    DbtProjectError,
    decode_key,
    encode_path,
    flatten_project,
    rebuild_flat_project,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("dbt_project.yml", "dbt_project.yml"),
        (
            "models__staging__stg_salesforce__customers.sql",
            "models/staging/stg_salesforce__customers.sql",
        ),
        ("models__staging___salesforce__sources.yml", "models/staging/_salesforce__sources.yml"),
        ("models__marts__customer_analytics.sql", "models/marts/customer_analytics.sql"),
        ("macros__generate_schema_name.sql", "macros/generate_schema_name.sql"),
        ("seeds__finance__rates.csv", "seeds/finance/rates.csv"),
    ],
)
def test_keys_decode_to_paths_and_back(key: str, path: str) -> None:
    assert decode_key(key) == Path(path)
    assert encode_path(Path(path)) == key


@pytest.mark.parametrize("key", ["..data", "models__..__x.sql", "a/b.sql", ".hidden", "models__"])
def test_unsafe_or_empty_keys_are_refused(key: str) -> None:
    with pytest.raises(DbtProjectError, match="ConfigMap key"):
        decode_key(key)


def test_a_directory_with_an_underscore_cannot_be_flattened() -> None:
    with pytest.raises(DbtProjectError, match="customer_360"):
        encode_path(Path("models/customer_360/x.sql"))


def test_the_repository_project_round_trips(tmp_path: Path) -> None:
    data = flatten_project(REPO / "dbt")
    mount = tmp_path / "mount"
    mount.mkdir()
    for key, text in data.items():
        (mount / key).write_text(text)

    rebuilt = rebuild_flat_project(mount, tmp_path / "tree", where="test")

    assert flatten_project(rebuilt) == data
    assert (rebuilt / "models" / "staging" / "stg_salesforce__customers.sql").is_file()


def test_a_flat_project_without_its_root_file_is_refused(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "models__x.sql").write_text("select 1")

    with pytest.raises(DbtProjectError, match=r"no key 'dbt_project\.yml'"):
        rebuild_flat_project(mount, tmp_path / "tree", where="the ConfigMap")


def test_the_same_flat_project_is_rebuilt_at_the_same_path(tmp_path: Path) -> None:
    """Its path is part of the fingerprint that lets a cached manifest be reused."""
    mount = tmp_path / "mount"
    mount.mkdir()
    for key, text in flatten_project(REPO / "dbt").items():
        (mount / key).write_text(text)

    first = rebuild_flat_project(mount, tmp_path / "scratch", where="test")
    second = rebuild_flat_project(mount, tmp_path / "scratch", where="test")
    (mount / "models__marts__extra.sql").write_text("select 1 as one")
    changed = rebuild_flat_project(mount, tmp_path / "scratch", where="test")

    assert first == second
    assert changed != first
    assert (changed / "models" / "marts" / "extra.sql").read_text() == "select 1 as one"
