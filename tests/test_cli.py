import json

from click.testing import CliRunner

from ra_sdk import __version__
from ra_sdk.cli import main


def test_version_and_help():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "info" in r.output


def test_info_explains_missing_backends():
    r = CliRunner().invoke(main, ["info", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["backends"]["onnxruntime-cpu"]["usable"]
    for name in ("tensorrt", "cuda-kernels"):
        b = info["backends"][name]
        if not b["usable"]:
            assert "pip install" in b["why"] or "GPU" in b["why"] or "driver" in b["why"]
    if not info["gpu"]["usable"]:
        assert "GPU" in info["gpu"]["why"] or "driver" in info["gpu"]["why"]
