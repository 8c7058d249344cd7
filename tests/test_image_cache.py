"""The image cache decodes each PNG once, then serves later runs from disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fetalbench.data import image_cache
from fetalbench.data.fetal_planes_db import fingerprint, load_catalog
from fetalbench.errors import FetalbenchError


def test_decode_once_then_read_cache(real_subset_root: Path, tmp_path: Path, monkeypatch) -> None:
    catalog = load_catalog(real_subset_root)
    key = fingerprint(real_subset_root, catalog)
    first = image_cache.load_images(catalog, key, 24, tmp_path, workers=1)
    assert first.shape == (len(catalog), 24, 24) and first.dtype == np.uint8
    assert first.std() > 0

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("cache hit must not decode PNGs")

    monkeypatch.setattr(image_cache, "_decode_all", no_decoding)
    again = image_cache.load_images(catalog, key, 24, tmp_path)
    assert np.array_equal(first, again)


def test_cache_is_keyed_by_resolution_and_parallel_decode_agrees(real_subset_root, tmp_path):
    catalog = load_catalog(real_subset_root).head(40)
    key = fingerprint(real_subset_root, catalog)
    serial = image_cache.load_images(catalog, key, 16, tmp_path / "a", workers=1)
    parallel = image_cache.load_images(catalog, key, 16, tmp_path / "b", workers=2)
    assert np.array_equal(serial, parallel)
    assert image_cache.load_images(catalog, key, 20, tmp_path / "a").shape[1:] == (20, 20)


def test_a_cache_is_memory_mapped_and_its_index_must_name_the_catalog(
    real_subset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = load_catalog(real_subset_root).head(12)
    key = fingerprint(real_subset_root, catalog)
    first = image_cache.load_images(catalog, key, 16, tmp_path, workers=1)
    _, index_path = image_cache.cache_paths(tmp_path, key, 16)
    written = json.loads(index_path.read_text())
    assert written == {"fingerprint": key, "resolution": 16,
                       "names": catalog["image_name"].tolist(), "sha256": written["sha256"]}
    # the index as fetalbench wrote it before verified artifacts (compact) is still read
    index_path.write_text(json.dumps(written))
    decoded = []
    real_decode = image_cache._decode_all
    monkeypatch.setattr(image_cache, "_decode_all",
                        lambda *args: decoded.append(1) or real_decode(*args))
    again = image_cache.load_images(catalog, key, 16, tmp_path)
    assert isinstance(again, np.memmap) and np.array_equal(first, again) and decoded == []
    index_path.write_text(json.dumps({**written, "names": written["names"][::-1]}))
    assert np.array_equal(image_cache.load_images(catalog, key, 16, tmp_path), first)
    assert decoded == [1]  # an index of other names is not trusted: rebuilt


def test_corrupt_png_is_named(real_subset_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(real_subset_root, root)
    catalog = load_catalog(root)
    victim = Path(catalog["path"].iloc[5])
    victim.write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    with pytest.raises(FetalbenchError, match=rf"{victim.name} \(CSV line 7\) does not decode"):
        image_cache.load_images(catalog, fingerprint(root, catalog), 16, tmp_path, workers=1)


def test_fingerprint_changes_with_labels(real_subset_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(real_subset_root, root)
    before = fingerprint(root, load_catalog(root))
    csv = root / "FETAL_PLANES_DB_data.csv"
    csv.write_text(csv.read_text().replace("Fetal femur", "Fetal thorax", 1))
    assert fingerprint(root, load_catalog(root)) != before
