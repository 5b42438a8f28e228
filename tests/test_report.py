"""The HTML worklist: content, safety, and the page itself in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from benchmarks import browser
from ra_sdk.data.demo_studies import DemoSpec, write_demo_studies
from ra_sdk.report import build_report
from ra_sdk.report.html import _script_json
from ra_sdk.report.previews import PREVIEWS
from ra_sdk.results import safe_name, write_results
from ra_sdk.run import run
from ra_sdk.screen import Screener

HOSTILE = "<img src=x onerror=alert(1)>.png"


def _data(html_text: str, ident: str) -> object:
    m = re.search(rf'<script type="application/json" id="{ident}">(.*?)</script>', html_text, re.S)
    assert m, ident
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def screener():
    s = Screener(None, backend="onnxruntime", device="cpu")
    yield s
    s.close()


@pytest.fixture(scope="module")
def screened(tmp_path_factory, screener):
    """A small demo run with previews, one broken study and one hostile file name."""
    root = tmp_path_factory.mktemp("report")
    write_demo_studies(root, DemoSpec(n_normal=12, n_per_type=3, n_volumes=2))
    (root / "studies" / "png" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    shutil.copy(sorted((root / "studies" / "png").glob("case_*.png"))[0], root / "studies" / "png" / HOSTILE)
    out = root / "out"
    summary, rows = run(root / "studies", out, screener, previews=True)
    assert summary.failed == 1
    return root, out, rows


def test_report_content_order_and_previews(screened):
    _, out, rows = screened
    path = build_report(out, previews=5)
    text = path.read_text(encoding="utf-8")
    data = _data(text, "data")
    pics = _data(text, "pics")
    cols = data["cols"]
    scores = [r[cols.index("score")] for r in data["rows"]]
    scored = [s for s in scores if s is not None]
    assert scored == sorted(scored, reverse=True)
    assert scores[-1] is None and data["rows"][-1][cols.index("error_kind")]  # the failure is last
    assert data["counts"] == {"all": len(rows), "flagged": sum(bool(r["flagged"]) for r in rows), "failed": 1}
    assert sorted(pics, key=int) == [str(i) for i in range(5)]  # only the top 5 carry a picture
    # labels.csv above the screened folder is found: ROC + per-type table
    assert 'aria-label="ROC curve"' in text and "AUROC vs normals" in text
    labelled = {r[cols.index("study")]: r[cols.index("label")] for r in data["rows"]}
    assert labelled["png/broken.png"] is None and set(labelled.values()) - {None} >= {"normal", "mass"}


def test_report_is_self_contained(screened):
    _, out, _ = screened
    text = build_report(out).read_text(encoding="utf-8")
    assert "http:" not in text and "https:" not in text
    assert "<link" not in text and "@import" not in text and not re.search(r"<script[^>]+src=", text)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_report_without_labels_has_a_histogram_only(screened, tmp_path):
    _, out, _ = screened
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    info["studies_root"] = str(tmp_path / "gone")  # no labels.csv there, no studies to re-score
    (run_dir / "run.json").write_text(json.dumps(info))
    text = build_report(run_dir).read_text(encoding="utf-8")
    assert 'aria-label="score histogram"' in text and 'aria-label="ROC curve"' not in text


def test_missing_previews_are_remade_with_the_engine(screened, tmp_path):
    _, out, _ = screened
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    shutil.rmtree(run_dir / PREVIEWS)
    assert _data(build_report(run_dir, previews=3).read_text(encoding="utf-8"), "pics") == {}  # the report only reads
    from ra_sdk.run import make_missing_previews

    assert make_missing_previews(run_dir, 3) == 3  # the screening step ra-sdk report runs first
    text = build_report(run_dir, previews=3).read_text(encoding="utf-8")
    assert sorted(_data(text, "pics"), key=int) == ["0", "1", "2"]
    assert len(list((run_dir / PREVIEWS).glob("*.jpg"))) == 3


def test_cli_screen_report_and_dicom_out_flagged(tmp_path):
    from click.testing import CliRunner

    from ra_sdk.cli import main

    pytest.importorskip("highdicom")
    write_demo_studies(tmp_path, DemoSpec(n_normal=6, n_per_type=2, n_volumes=1))
    out = tmp_path / "out"
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.engine import read_engine

    half = read_engine(DEMO_ENGINE).meta.calibration.quantiles()["p50"]  # flags about half: some DICOM studies, not all
    args = ["screen", str(tmp_path / "studies"), "--out", str(out), "--backend", "onnxruntime", "--device", "cpu", "--report", "--dicom-out", "flagged", "--threshold", f"{half:.6g}"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "report: " in r.output and (out / "report.html").exists()
    assert "DICOM outputs: SC + SEG for" in r.output
    rows = [json.loads(x) for x in open(out / "results.jsonl")]
    with_dicom = {x["study"] for x in rows if x.get("outputs")}
    expect = {x["study"] for x in rows if x["flagged"] and x["paths"].endswith(".dcm")}
    assert expect and with_dicom == expect
    r = CliRunner().invoke(main, ["report", str(out), "--previews", "3", "--page-size", "7", "--out", str(tmp_path / "r.html"), "--title", "ward 3"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "r.html").read_text()
    assert "ward 3" in text and len(_data(text, "pics")) == 3 and _data(text, "data")["pageSize"] == 7
    r = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "t.html"), "--title", "<b>%%DATA%%</b>"])
    text = (tmp_path / "t.html").read_text()
    assert r.exit_code == 0 and "&lt;b&gt;%%DATA%%&lt;/b&gt;" in text and "<b>" not in text


def test_script_json_cannot_close_the_script():
    s = _script_json({"study": "</script><script>alert(1)</script>", "x": "<!--"})
    assert "</" not in s and "<!--" not in s and json.loads(s)["study"].startswith("</script>")


def test_bad_run_folder_is_a_clear_error(tmp_path):
    from ra_sdk.errors import RaSdkError

    with pytest.raises(RaSdkError, match=r"no results\.jsonl"):
        build_report(tmp_path)


# ------------------------------------------------------------------ headless Chromium
@pytest.fixture(scope="module")
def chrome():
    why = browser.missing()
    if why:
        if os.environ.get("RA_SDK_REQUIRE_BROWSER"):
            pytest.fail(f"browser tests required but {why}")
        pytest.skip(why)
    d = browser.start()
    yield d
    browser.stop(d)


def _rows(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#worklist tbody tr")


def _cells(tr):
    from selenium.webdriver.common.by import By

    return [td.text for td in tr.find_elements(By.TAG_NAME, "td")]


@pytest.mark.slow
def test_report_in_chromium(screened, chrome, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, out, rows = screened
    path = build_report(out, page_size=10, previews=50)
    data = _data(path.read_text(encoding="utf-8"), "data")
    cols = data["cols"]
    chrome.get(path.as_uri())
    assert chrome.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"

    # worklist order: the first page is the ten highest scores, highest first
    shown = [float(_cells(tr)[3]) for tr in _rows(chrome)]
    expect = [round(r[cols.index("score")], 4) for r in data["rows"][:10]]
    assert shown == pytest.approx(expect, abs=1e-4) and shown == sorted(shown, reverse=True)
    assert f"of {len(rows)}" in chrome.find_element(By.ID, "pageinfo").text
    chrome.find_element(By.ID, "next").click()
    assert _cells(_rows(chrome)[0])[0] == "11"

    # filters: flagged shows only flagged rows, failed only the broken file
    chrome.find_element(By.CSS_SELECTOR, "[data-filter=flagged]").click()
    flagged = _rows(chrome)
    n_flagged = sum(bool(r["flagged"]) for r in rows)
    assert n_flagged > 0 and len(flagged) == min(n_flagged, 10)
    assert all(_cells(tr)[5] == "FLAG" for tr in flagged)
    chrome.find_element(By.CSS_SELECTOR, "[data-filter=failed]").click()
    failed = _rows(chrome)
    assert len(failed) == 1 and _cells(failed[0])[2] == "png/broken.png" and "broken.png" in _cells(failed[0])[8]
    chrome.find_element(By.CSS_SELECTOR, "[data-filter=all]").click()

    # the hostile file name is text, not markup (an alert would fail every later call)
    box = chrome.find_element(By.ID, "q")
    box.send_keys("onerror")
    hostile = _rows(chrome)
    assert len(hostile) == 1 and _cells(hostile[0])[2] == "png/" + HOSTILE
    assert not chrome.find_elements(By.CSS_SELECTOR, "#worklist img[src=x]")
    box.clear()
    box.send_keys(Keys.BACKSPACE)

    # a click opens the larger view of that study, with its three-panel picture
    first = _rows(chrome)[0]
    study = _cells(first)[2]
    first.click()
    detail = chrome.find_element(By.ID, "detail")
    assert "open" in detail.get_attribute("class")
    assert study in chrome.find_element(By.ID, "d-title").text
    img = chrome.find_element(By.CSS_SELECTOR, "#d-pic img")
    assert chrome.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 3 * 128
    assert "driving slice" in chrome.find_element(By.ID, "d-info").text
    shot = tmp_path / "detail.png"
    chrome.save_screenshot(str(shot))
    import cv2

    pic = cv2.imread(str(shot))
    assert pic is not None and pic.shape[0] > 500 and pic.std() > 10
    chrome.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert "open" not in detail.get_attribute("class")
    errors = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


@pytest.mark.slow
def test_report_for_10000_studies_pages_in_chromium(chrome, tmp_path, screened):
    """Functional only (timings live in benchmarks/bench_report.py): 10,000 rows, 500
    pictures, every page reachable, the file far below what 10,000 pictures would take."""
    from selenium.webdriver.common.by import By

    _, out, _ = screened
    jpeg = next((out / PREVIEWS).glob("*.jpg")).read_bytes()
    rng = np.random.default_rng(0)
    n = 10_000
    scores = rng.gamma(4.0, 5.0, n)
    rows = [
        {"study": f"site{i % 7}/s{i:05d}.dcm", "score": float(s), "percentile": None, "flagged": bool(s > 35), "max_slice": 0, "n_slices": 1, "error": None, "error_kind": None, "notes": "", "paths": ""}
        for i, s in enumerate(scores)
    ]
    rows[17] = {**rows[17], "score": None, "flagged": None, "error": "site3/s00017.dcm: truncated", "error_kind": "corrupt"}
    run_dir = tmp_path / "big"
    (run_dir / PREVIEWS).mkdir(parents=True)
    ordered = write_results(run_dir, rows)
    for r in ordered[:500]:
        (run_dir / PREVIEWS / f"{safe_name(r['study'])}.jpg").write_bytes(jpeg)
    path = build_report(run_dir, previews=500)
    assert path.stat().st_size < 500 * 1.4 * len(jpeg) + 3_000_000
    chrome.get(path.as_uri())
    assert chrome.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
    assert len(_rows(chrome)) == 50 and "of 10000 (page 1/200)" in chrome.find_element(By.ID, "pageinfo").text
    assert chrome.execute_script("return document.querySelectorAll('#worklist img').length") == 50
    for _ in range(10):  # page 11: rows 501-550 carry no picture
        chrome.find_element(By.ID, "next").click()
    assert _cells(_rows(chrome)[0])[0] == "501"
    assert chrome.execute_script("return document.querySelectorAll('#worklist img').length") == 0
    assert chrome.execute_script("return document.getElementsByTagName('*').length") < 1500  # one page in the DOM, not 10,000 rows


def test_labels_csv_with_label_column_and_a_bad_one(tmp_path):
    from ra_sdk.errors import ConfigError
    from ra_sdk.report.html import read_labels_csv

    p = tmp_path / "l.csv"
    p.write_text("study,label\na.png,1\nb.png,normal\nc.png,lesion\n")
    assert read_labels_csv(p) == ({"a.png": True, "b.png": False, "c.png": True}, {})
    p.write_text("study,type\na.png,mass\nb.png,normal\n")
    assert read_labels_csv(p) == ({"a.png": True, "b.png": False}, {"a.png": "mass", "b.png": "normal"})
    p.write_text("name,kind\na.png,mass\n")
    with pytest.raises(ConfigError, match="needs the columns"):
        read_labels_csv(p)
