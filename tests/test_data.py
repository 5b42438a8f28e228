import numpy as np
import pytest

from ra_sdk.data import TEMPLATE, load_normal_slices, load_template
from ra_sdk.data.augment import SPLITS, sample
from ra_sdk.data.demo_studies import DemoSpec, preview, read_labels, write_demo_studies
from ra_sdk.data.pathology import GLOBAL, LOCAL, TYPES, make
from ra_sdk.io import discover, read_study


def test_embedded_template_is_small_and_pickle_free():
    assert TEMPLATE.stat().st_size <= 8_000_000
    t = load_template()
    assert {"t1", "gm", "wm", "z_index"} <= set(t)
    assert t["t1"].dtype == np.uint8 and t["t1"].ndim == 3 and t["t1"].shape == t["gm"].shape
    assert (TEMPLATE.parent / "MNI_ICBM152_NOTICE.txt").read_text().count("McGill University") >= 1
    x = load_normal_slices(64)
    assert x.shape[1:] == (64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_samples_are_deterministic_and_splits_disjoint():
    a = sample("train", 5, seed=3)
    b = sample("train", 5, seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    keys = {s: {sample(s, i).key for i in range(20)} for s in SPLITS}
    assert not (keys["train"] & keys["val"]) and not (keys["train"] & keys["test"]) and not (keys["val"] & keys["test"])
    assert not np.array_equal(sample("train", 5).image, sample("test", 5).image)
    assert a.image.shape == (128, 128) and a.image.dtype == np.float32
    with pytest.raises(ValueError, match="unknown split"):
        sample("holdout", 0)


@pytest.mark.parametrize("kind", TYPES)
def test_pathologies_change_the_image_where_the_mask_says(kind):
    for i in range(3):
        s = sample("test", 100 + i)
        img, mask = make(kind, s)
        assert img.shape == s.image.shape and img.dtype == np.float32 and mask.dtype == bool
        assert 0 <= img.min() and img.max() <= 1
        assert mask.any(), kind
        diff = np.abs(img - s.image)
        if kind in LOCAL and kind != "enlarged_ventricles":
            assert diff[mask].mean() > 3 * diff[~mask].mean() + 1e-3, kind
        assert diff.max() > 0.1, kind
    assert set(LOCAL) | set(GLOBAL) == set(TYPES)


def test_demo_studies_round_trip(tmp_path):
    labels = write_demo_studies(tmp_path, DemoSpec(n_normal=6, n_per_type=2, n_volumes=3))
    rows = read_labels(labels)
    assert len(rows) == 6 + 2 * len(TYPES)
    studies = {s.id: s for s in discover(tmp_path / "studies")}
    assert set(studies) == {r["study"] for r in rows}
    kinds = {s.kind for s in studies.values()}
    assert kinds == {"dicom", "image", "nifti"}
    for r in rows:
        sl = read_study(studies[r["study"]])
        assert np.isfinite(sl.pixels).all() and sl.pixels.max() > 0
        if r["type"] != "normal":
            assert (tmp_path / r["mask"]).exists()


def test_preview_shows_every_type_with_its_mask_outlined(tmp_path):
    import cv2

    p = preview(tmp_path / "p.png", rows=2)
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)  # BGR
    assert img.shape == (18 + 2 * 128, (1 + len(TYPES)) * 128, 3)
    red = (img[..., 2] > 200) & (img[..., 1] < 60) & (img[..., 0] < 60)
    for row in range(2):
        tiles = [img[18 + row * 128 : 18 + (row + 1) * 128, k * 128 : (k + 1) * 128] for k in range(1 + len(TYPES))]
        assert all(t.std() > 10 for t in tiles)  # anatomy in every tile, not a blank picture
        outlined = [red[18 + row * 128 : 18 + (row + 1) * 128, k * 128 : (k + 1) * 128].any() for k in range(1 + len(TYPES))]
        assert not outlined[0]  # the normal has no mask
        assert all(outlined[1 + TYPES.index(t)] for t in LOCAL), outlined  # each lesion is outlined
