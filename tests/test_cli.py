import json

import pytest
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


def test_data_commands_and_read(tmp_path):
    r = CliRunner().invoke(main, ["data", "demo-studies", "--out", str(tmp_path / "d"), "--n-normal", "3", "--n-per-type", "1", "--n-volumes", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "labels.csv").exists()
    r = CliRunner().invoke(main, ["read", str(tmp_path / "d" / "studies")])
    assert r.exit_code == 0, r.output
    assert r.output.count("ok ") == 3 + 7
    (tmp_path / "d" / "studies" / "broken.dcm").write_bytes(b"DICM" * 3)
    r = CliRunner().invoke(main, ["read", str(tmp_path / "d" / "studies")])
    assert r.exit_code == 3 and "broken.dcm" in r.output
    r = CliRunner().invoke(main, ["data", "preview", "--out", str(tmp_path / "p.png"), "--rows", "1"])
    assert r.exit_code == 0 and (tmp_path / "p.png").exists()


def test_read_of_an_empty_folder_is_not_an_error(tmp_path):
    r = CliRunner().invoke(main, ["read", str(tmp_path)])
    assert r.exit_code == 0 and r.output == ""


@pytest.mark.slow
def test_train_and_evaluate_commands(tmp_path):
    pytest.importorskip("torch")
    r = CliRunner().invoke(main, ["train", "--demo", "--objective", "ae", "--pool-size", "16", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "best" / "model.safetensors").exists() and "best validation MSE" in r.output
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "exactly one of --data DIR and --demo" in r.output
    r = CliRunner().invoke(main, ["data", "demo-studies", "--out", str(tmp_path / "d"), "--n-normal", "6", "--n-per-type", "2", "--n-volumes", "2"])
    assert r.exit_code == 0
    r = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path / "run" / "best"), "--studies", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    for t in ("mass", "atrophy", "artefacts"):
        assert t in r.output
    assert "AUROC" in r.output


@pytest.mark.slow
def test_bench_suite_runs_and_reports_every_part(tmp_path):
    """`ra-sdk bench` end to end on the bundled engine, briefly (no timing is asserted: speed
    goals live in benchmarks/): every runner usable here, the interleaved int8/fp32 ratio,
    the end-to-end screen and the research pipeline, which must rank as the product does."""
    r = CliRunner().invoke(main, ["bench", "--quick", "--out", str(tmp_path / "bench.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "bench.json").read_text())
    assert {"onnxruntime-cpu-fp32", "onnxruntime-cpu-int8"} <= set(res["runners"])
    for row in res["runners"].values():
        assert all(v["images_per_s"] > 0 and v["median_s"] > 0 for v in row.values())
    ratio = res["engine_score_int8_vs_fp32"]
    assert ratio["batch"] == 32 and ratio["rounds"] == 3 and ratio["int8_images_per_s"] > 0 and ratio["fp32_images_per_s"] > 0
    assert res["screen_demo"]["by_precision"]["int8"]["images_per_s"] > 0
    assert res["research_baseline"]["spearman_vs_ra_sdk"] > 0.99
    assert "interleaved rounds: int8" in r.output and "research pipeline" in r.output


def test_interleaved_rounds_alternate_the_order():
    """A B, B A, A B: no function always runs right after the other (ra_sdk.bench)."""
    from ra_sdk.bench import interleaved_rounds

    calls: list[str] = []
    t = interleaved_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in t.items()} == {"a": 3, "b": 3} and all(s >= 0 for v in t.values() for s in v)
