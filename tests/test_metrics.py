import numpy as np
import pytest

from ra_sdk import metrics
from ra_sdk.errors import ConfigError

sk = pytest.importorskip("sklearn.metrics")


def test_perfect_random_inverted_and_ties(rng):
    y = np.r_[np.zeros(50), np.ones(50)].astype(bool)
    perfect = np.r_[rng.random(50), 1 + rng.random(50)]
    assert metrics.auroc(perfect, y) == 1.0
    assert metrics.auprc(perfect, y) == 1.0
    assert metrics.fpr_at_tpr(perfect, y) == 0.0
    assert metrics.auroc(-perfect, y) == 0.0
    assert metrics.fpr_at_tpr(-perfect, y) == 1.0
    rand = np.random.default_rng(7).random(20_000)
    yr = np.random.default_rng(8).random(20_000) < 0.5
    assert metrics.auroc(rand, yr) == pytest.approx(0.5, abs=0.02)
    assert metrics.auprc(rand, yr) == pytest.approx(yr.mean(), abs=0.02)
    assert metrics.fpr_at_tpr(rand, yr) == pytest.approx(0.95, abs=0.02)
    ties = np.ones(100)
    assert metrics.auroc(ties, y) == 0.5
    assert metrics.auprc(ties, y) == 0.5
    # Hand-computed: scores [1, 2, 2, 3], labels [0, 0, 1, 1]: pairs (pos > neg) = 3.5 of 4.
    assert metrics.auroc([1, 2, 2, 3], [0, 0, 1, 1]) == pytest.approx(3.5 / 4)


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn(seed):
    r = np.random.default_rng(seed)
    y = r.random(300) < 0.3
    s = np.round(r.random(300) + 0.4 * y, 2)  # rounding makes ties
    assert metrics.auroc(s, y) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert metrics.auprc(s, y) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
    assert metrics.fpr_at_tpr(s, y) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)], abs=1e-12)


def test_empty_positive_or_negative_set_is_a_clear_error():
    with pytest.raises(ConfigError, match="need both positives and negatives"):
        metrics.auroc([0.1, 0.2], [0, 0])
    with pytest.raises(ConfigError, match="need both positives and negatives"):
        metrics.evaluate(np.array([0.1, 0.2]), {"mass": (np.array([]), None, None)})


def test_localisation_rules(rng):
    normals = [rng.random((10, 10)) for _ in range(20)]
    t = metrics.pixel_threshold(normals)
    assert np.mean(np.concatenate([n.ravel() for n in normals]) > t) <= 0.05
    mask = np.zeros((10, 10), bool)
    mask[:5, :2] = True  # 10 pixels
    amap = np.zeros((10, 10))
    amap[0, 0] = 2 * t + 1  # 1 of 10 above: 10%, not more than 10%
    assert not metrics.detected(amap, mask, t)
    amap[0, 1] = 2 * t + 1  # 20%
    assert metrics.detected(amap, mask, t)
    assert metrics.dice(amap, mask, t) == pytest.approx(2 * 2 / (2 + 10))
    with pytest.raises(ConfigError, match="empty mask"):
        metrics.detected(amap, np.zeros((10, 10), bool), t)


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, 40).astype(float)  # many ties
    b = a + rng.normal(0, 2, 40)
    assert metrics.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    c = rng.random(40)
    assert metrics.spearman(c, c) == pytest.approx(1.0) and metrics.spearman(c, -c) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        metrics.spearman([1.0], [1.0])
