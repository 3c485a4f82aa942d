"""cocoinr.splits: the H3DS-style few-view split files CoCo-INR ships."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cocoinr import splits
from geomkit.errors import InputError

SPLIT = """
[scenes]
    [scenes.scan1]
    views = 10
        [scenes.scan1.default_views_configs]
        3 = [7, 2, 5]
        4 = [1, 2, 3, 12]
        8 = [0, 4, 4, 9, 2, 9]
        16 = []
        32 = [1, 2.5]
"""


@pytest.fixture
def split_file(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(SPLIT)
    return path


@pytest.fixture
def real_splits(shared_data):
    folder = shared_data / "cocoinr" / "splits"
    if not folder.is_dir():
        pytest.skip(f"CoCo-INR split files not found at {folder}")
    return folder


def test_list_is_sorted_and_keyed_by_int_or_str(split_file):
    assert splits.train_views(split_file, "scan1", 3, 10) == [2, 5, 7]
    assert splits.train_views(split_file, "scan1", "3", 10) == [2, 5, 7]


def test_repeats_are_dropped_with_a_warning(split_file, caplog):
    with caplog.at_level(logging.WARNING, logger="cocoinr.splits"):
        views = splits.train_views(split_file, "scan1", 8, 10)
    assert views == [0, 2, 4, 9]
    assert 'list "8" repeats index 4, 9; using its 4 unique views' in caplog.text


def test_out_of_range_index_names_scene_list_and_index(split_file):
    message = r'toy.toml: scene scan1, list "4" holds index 12 but the scene has 10 images \(0-9\)$'
    with pytest.raises(InputError, match=message):
        splits.train_views(split_file, "scan1", 4, 10)
    with pytest.raises(
        InputError, match=r'list "4" holds indices 3, 12 but the scene has 3 images'
    ):
        splits.train_views(split_file, "scan1", 4, 3)


def test_unknown_scene_lists_known_scenes(split_file):
    with pytest.raises(InputError, match=r"toy.toml: no scene 'scan2'; it has 1 scenes \(scan1\)"):
        splits.train_views(split_file, "scan2", 3, 10)


def test_unknown_list_names_available_keys(split_file):
    with pytest.raises(InputError, match='has no view list "5".*available: "3", "4", "8", "16"'):
        splits.train_views(split_file, "scan1", 5, 10)


def test_empty_and_non_integer_lists_are_refused(split_file):
    with pytest.raises(InputError, match='list "16" is empty'):
        splits.train_views(split_file, "scan1", 16, 10)
    with pytest.raises(InputError, match='list "32" holds 2.5, which is not a view index'):
        splits.train_views(split_file, "scan1", 32, 10)


def test_missing_and_unparsable_files_are_named(tmp_path):
    with pytest.raises(InputError, match="split file not found: .*nope.toml"):
        splits.train_views(tmp_path / "nope.toml", "scan1", 3, 10)
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenes.scan1\nviews = 3\n")
    with pytest.raises(InputError, match=r"bad.toml: not valid TOML") as info:
        splits.train_views(bad, "scan1", 3, 10)
    assert "\n" not in str(info.value)


def test_views_count_mismatch_warns(split_file, caplog):
    with caplog.at_level(logging.WARNING, logger="cocoinr.splits"):
        splits.train_views(split_file, "scan1", 3, 12)
    assert "says views = 10 but the scene has 12 images" in caplog.text


def test_unique_views_accepts_numpy_integers_only():
    assert splits.unique_views(np.array([3, 1]), 5, "train_views") == [1, 3]
    with pytest.raises(InputError, match="train_views holds True"):
        splits.unique_views([True], 5, "train_views")
    with pytest.raises(InputError, match=r"train_views holds index -1 .* 5 images \(0-4\)"):
        splits.unique_views([-1], 5, "train_views")


def test_test_views_are_the_complement():
    assert splits.test_views([2, 5, 7], 9) == [0, 1, 3, 4, 6, 8]
    assert splits.test_views(range(4), 4) == []


@pytest.mark.realdata
def test_dtu_scan24_three_views(real_splits):
    assert splits.train_views(real_splits / "dtu.toml", "scan24", 3, 49) == [8, 24, 40]


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("scan_id", "num_views", "n_images", "outside"),
    [
        ("scan24", "4", 49, "58, 65"),
        ("scan24", "16", 49, "50, 54, 58, 62, 65"),
        ("scan122", "4", 64, "65"),
    ],
)
def test_dtu_lists_holding_index_65_fail_clearly(
    real_splits, scan_id, num_views, n_images, outside
):
    held = f"indices {outside}" if "," in outside else f"index {outside}"
    message = (
        f'dtu.toml: scene {scan_id}, list "{num_views}" holds {held} but the scene has '
        rf"{n_images} images \(0-{n_images - 1}\)$"
    )
    with pytest.raises(InputError, match=message):
        splits.train_views(real_splits / "dtu.toml", scan_id, num_views, n_images)


@pytest.mark.realdata
def test_bmvs_scan3_32_holds_index_36(real_splits):
    with pytest.raises(InputError, match=r'scene scan3, list "32" holds index 36 .* 36 images'):
        splits.train_views(real_splits / "bmvs.toml", "scan3", 32, 36)


@pytest.mark.realdata
def test_h3ds_repeated_index_gives_31_views(real_splits, caplog):
    with caplog.at_level(logging.WARNING, logger="cocoinr.splits"):
        views = splits.train_views(real_splits / "h3ds.toml", "eef826f0c1f6deb0", 32, 69)
    assert len(views) == 31 and views == sorted(set(views)) and 2 in views
    assert "repeats index 2" in caplog.text


@pytest.mark.realdata
def test_unknown_real_scene_names_a_few(real_splits):
    with pytest.raises(InputError, match=r"no scene 'scan25'; it has 15 scenes \(scan24, scan37"):
        splits.train_views(real_splits / "dtu.toml", "scan25", 3, 49)
