import subprocess
import sys

import pytest

import ra_sdk
from ra_sdk.errors import ConfigError


def test_import_is_light():
    code = (
        "import sys, time; t = time.perf_counter(); import ra_sdk; dt = time.perf_counter() - t; "
        "print(dt); print(','.join(m for m in ('torch', 'tensorrt', 'cupy', 'cv2', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[1] == "", f"import ra_sdk pulled in heavy modules: {out[1]}"
    assert float(out[0]) < 0.5


def test_registries_list_and_reject_unknown():
    assert {"ra-base", "ra-small", "ra-tiny"} <= set(ra_sdk.list_models())
    assert ra_sdk.get_model_config("ra-base").channels == (64, 128, 256, 512, 512)
    with pytest.raises(ConfigError, match="valid models: ra-base"):
        ra_sdk.get_model_config("ra-huge")
    assert "brain-mri-t1" in ra_sdk.list_presets()
    with pytest.raises(ConfigError, match="valid presets"):
        ra_sdk.get_preset("knee")


@pytest.mark.parametrize("name", ra_sdk.list_presets())
def test_preset_round_trip(name):
    p = ra_sdk.get_preset(name)
    assert ra_sdk.Preset.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="unknown preset keys"):
        ra_sdk.Preset.from_dict({**p.to_dict(), "bogus": 1})
