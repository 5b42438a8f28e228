"""LPIPS (SqueezeNet-1.1) from local files: layout, the map against a direct transcription,
and safe loading."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from ra_sdk.train.checkpoint import CheckpointError  # noqa: E402
from ra_sdk.train.lpips import CHANNELS, LPIPSSqueeze, load_lpips  # noqa: E402

from ra_sdk import scoring  # noqa: E402
from ra_sdk.scoring import ScoreConfig  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    net = LPIPSSqueeze()
    save_file({k: v for k, v in net.state_dict().items() if k.startswith("features.")}, str(d / "squeezenet1_1.safetensors"))
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}
    torch.save(heads, d / "heads.pth")  # a plain dict of tensors: loadable with weights_only=True
    return d, net, heads


def test_layout_and_loading(files):
    d, _, _ = files
    net, weights = load_lpips(d / "squeezenet1_1.safetensors", d / "heads.pth")
    feats = net(torch.rand(2, 1, 128, 128))
    assert [f.shape[1] for f in feats] == list(CHANNELS) and [w.size for w in weights] == list(CHANNELS)
    assert feats[0].shape[2:] == (63, 63) and feats[-1].shape[2:] == (7, 7)


def test_lpips_map_matches_a_direct_transcription(files):
    d, _, heads = files
    net, weights = load_lpips(d / "squeezenet1_1.safetensors", d / "heads.pth")
    rng = np.random.default_rng(0)
    a = rng.random((2, 64, 64), dtype=np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    got = scoring.perceptual_map(net.features_fn()(a[:, None]), net.features_fn()(b[:, None]), kind="features", size=(64, 64), weights=weights)
    with torch.no_grad():  # LPIPS(spatial=True): normalise, diff^2, 1x1 head, upsample, sum
        fa, fb = net(torch.from_numpy(a)[:, None]), net(torch.from_numpy(b)[:, None])
        ref = 0
        for i, (x, y) in enumerate(zip(fa, fb)):
            nx = x / (torch.sqrt((x**2).sum(1, keepdim=True)) + 1e-10)
            ny = y / (torch.sqrt((y**2).sum(1, keepdim=True)) + 1e-10)
            d_ = torch.nn.functional.conv2d((nx - ny) ** 2, heads[f"lin{i}.model.1.weight"])
            ref = ref + torch.nn.functional.interpolate(d_, size=(64, 64), mode="bilinear", align_corners=False)
    ref = ref[:, 0].numpy()
    assert np.abs(got - ref).max() <= 1e-5 * ref.max()
    amap = scoring.anomaly_map(a, b, net.features_fn(), config=ScoreConfig(perceptual="features"), feature_weights=weights)
    assert amap.shape == a.shape and np.isfinite(amap).all()


def test_untrusted_files_are_never_unpickled(files, tmp_path):
    import os
    import pickle

    d, _, _ = files
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"lin0.model.1.weight": Evil()}))
    with pytest.raises(CheckpointError, match="cannot load weights safely"):
        load_lpips(d / "squeezenet1_1.safetensors", tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_lpips(tmp_path / "none.safetensors", d / "heads.pth")
