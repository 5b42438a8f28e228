"""HTML report benchmark: screen 10,000 labelled demo studies with ``--report``, then open
the report in headless Chromium (Debian's chromium + chromedriver) and measure how long it
takes to load and how much memory the page holds.

    python -m benchmarks.bench_report [--n 10000] [--loads 5] [--out benchmarks/results/report_cpu.json]

Load time: wall clock of the browser's navigation to the file (selenium's ``get`` returns
after the load event), and the page's own ``performance.now()`` when its script has
rendered the first page of the worklist (``data-ready-ms``). Memory: Chromium's
JSHeapUsedSize after a forced garbage collection, and the HTML file's size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import browser
from benchmarks.common import machine, write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000, help="studies to screen")
    ap.add_argument("--loads", type=int, default=5, help="page loads to time")
    ap.add_argument("--keep", type=Path, default=None, help="screen into this folder and keep it (default: a temporary one)")
    ap.add_argument("--out", default="benchmarks/results/report_cpu.json")
    ap.add_argument("--screenshot", type=Path, default=None, help="save a screenshot of the loaded report here")
    args = ap.parse_args()
    why = browser.missing()
    if why:
        raise SystemExit(f"cannot run the report benchmark: {why}")

    from selenium.webdriver.common.by import By

    from ra_sdk.data.demo_studies import DemoSpec, write_demo_studies
    from ra_sdk.data.pathology import TYPES
    from ra_sdk.report import build_report
    from ra_sdk.run import run
    from ra_sdk.screen import Screener

    res: dict = {"suite": "report", "machine": machine(), "studies": args.n}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        per_type = args.n // (2 * len(TYPES))
        spec = DemoSpec(n_normal=args.n - per_type * len(TYPES), n_per_type=per_type, n_volumes=20)
        t = time.perf_counter()
        write_demo_studies(root, spec)
        res["write_studies_s"] = time.perf_counter() - t
        print(f"wrote {args.n} demo studies in {res['write_studies_s']:.0f} s", flush=True)
        s = Screener(None, backend="onnxruntime", device="cpu")
        summary, _ = run(root / "studies", root / "out", s, previews=True)
        res["screen"] = summary.to_dict()
        print(f"screen --report: {summary.line()}", flush=True)
        t = time.perf_counter()
        path = build_report(root / "out")
        res["build_report_s"] = time.perf_counter() - t
        res["report_bytes"] = path.stat().st_size
        print(f"report: {path.stat().st_size / 1e6:.2f} MB, built in {res['build_report_s']:.2f} s", flush=True)

        d = browser.start()
        try:
            wall, ready, heap = [], [], []
            for _ in range(args.loads):
                d.get("about:blank")
                t = time.perf_counter()
                d.get(path.as_uri())
                wall.append(time.perf_counter() - t)
                body = d.find_element(By.TAG_NAME, "body")
                assert body.get_attribute("data-ready") == "1", "the report's script did not finish"
                ready.append(float(body.get_attribute("data-ready-ms")) / 1e3)
                d.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
                heap.append(browser.page_metrics(d)["JSHeapUsedSize"])
            rows = d.execute_script("return document.querySelectorAll('#worklist tbody tr').length")
            t = time.perf_counter()
            for _ in range(20):
                d.find_element(By.ID, "next").click()
            page_s = (time.perf_counter() - t) / 20
            d.find_element(By.CSS_SELECTOR, "[data-filter=flagged]").click()
            flagged_text = d.find_element(By.ID, "pageinfo").text
            if args.screenshot:
                d.save_screenshot(str(args.screenshot))
        finally:
            browser.stop(d)
    res["load"] = {
        "wall_s_runs": wall, "wall_s": statistics.median(wall),
        "ready_s_runs": ready, "ready_s": statistics.median(ready),
        "js_heap_used_bytes_runs": heap, "js_heap_used_bytes": statistics.median(heap),
        "rows_rendered": rows, "next_page_s": page_s, "flagged_filter": flagged_text,
        "chromium": browser.CHROMIUM,
    }
    print(f"load: wall {res['load']['wall_s']:.2f} s (runs {[round(v, 2) for v in wall]}), script ready {res['load']['ready_s']:.2f} s; "
          f"JS heap {res['load']['js_heap_used_bytes'] / 1e6:.1f} MB; file {res['report_bytes'] / 1e6:.1f} MB; next page {page_s * 1e3:.0f} ms")
    write_json(args.out, res)


if __name__ == "__main__":
    main()
