"""Headless Chromium for the report tests and benchmark: Debian's chromium and
chromedriver (apt-get install chromium chromium-driver) driven by selenium.

Nothing is downloaded: the driver and browser paths are given, so Selenium Manager never
runs. The flags keep Chromium off the network (this machine's is closed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("RA_SDK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RA_SDK_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--window-size=1400,1000",
]


def missing() -> str | None:
    """Why no browser can be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


def start() -> Any:
    """A headless Chromium WebDriver with its own empty profile; end it with :func:`stop`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ra-sdk-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.ra_sdk_profile = profile
    return driver


def stop(driver: Any) -> None:
    driver.quit()
    shutil.rmtree(getattr(driver, "ra_sdk_profile", ""), ignore_errors=True)


def page_metrics(driver: Any) -> dict[str, float]:
    """Chromium's own counters for the open page (JSHeapUsedSize, Nodes, ...)."""
    driver.execute_cdp_cmd("Performance.enable", {})
    return {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
