"""Retake the Dagster UI screenshots in docs/images/ after a change to the assets or checks.

    .venv/bin/python scripts/take_screenshots.py

Starts the simulator and `dg dev` on loopback with a throwaway DAGSTER_HOME and warehouse, runs
the sync job for the demo project through the UI's GraphQL API (so the pages have data), then
points Debian's headless Chromium at four pages: the asset graph, the job_versions table, one
check, and the version_summary mart with its utilisation chart. Needs `apt-get install chromium chromium-driver` and selenium (the `dev` extra).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.dagster_ui import DagsterUI  # noqa: E402
from pipelines.demo import DAGSTER_YAML, SIM_JOBS, SIM_SEED  # noqa: E402
from pipelines.modelarts.simulator import DEFAULT_PROJECT_ID, SimulatorServer, World  # noqa: E402

IMAGES = ROOT / "docs" / "images"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGES = {
    "dagster-asset-graph.png": "/locations/modelarts_etl/asset-groups/tables/lineage",
    "dagster-table-job-versions.png": "/assets/modelarts/job_versions",
    "dagster-check-quality.png": "/assets/modelarts/job_versions?view=checks&checkDetail=quality",
    "dagster-version-summary.png": "/assets/modelarts/version_summary?view=events",
}
SETTLE_S = 8  # the UI renders from GraphQL after the page loads


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,1000", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def skip_welcome(driver, url: str) -> None:
    """The UI greets a new browser with a community dialog; "Skip" once and it stays away."""
    from selenium.webdriver.common.by import By

    driver.get(url + "/overview")
    time.sleep(SETTLE_S)
    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        button.click()
        time.sleep(1)


def open_markdown(driver) -> None:
    """Markdown metadata (the utilisation chart) opens in a dialog: open it, so the chart is in the picture."""
    from selenium.webdriver.common.by import By

    for link in driver.find_elements(By.XPATH, "//*[contains(text(), 'Show Markdown')]"):
        link.click()
        time.sleep(2)
        return


def main() -> int:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        print(f"missing {', '.join(missing)}: apt-get install chromium chromium-driver", file=sys.stderr)
        return 2
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
        world = World(projects=[DEFAULT_PROJECT_ID], jobs=SIM_JOBS, seed=SIM_SEED, payload_fault_rate=0.06)
        with SimulatorServer(world, token="shots") as sim:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
            env.update(DAGSTER_HOME=str(home), MODELARTS_ENDPOINT=sim.url, MODELARTS_TOKEN="shots",
                       MODELARTS_PROJECT_IDS=DEFAULT_PROJECT_ID, MODELARTS_WAREHOUSE=str(Path(tmp) / "wh"),
                       MODELARTS_RATE="0")
            with DagsterUI(env, log=Path(tmp) / "dg-dev.log") as ui:
                status = ui.wait_run(ui.launch(job="sync_all_projects", partition=DEFAULT_PROJECT_ID))
                print(f"sync run: {status}")
                mart = ui.wait_run(ui.launch(assets=[["modelarts", "version_summary"]]))
                print(f"version_summary run: {mart}")
                driver = browser()
                try:
                    skip_welcome(driver, ui.url)
                    for name, path in PAGES.items():
                        driver.get(ui.url + path)
                        time.sleep(SETTLE_S)
                        open_markdown(driver)
                        driver.save_screenshot(str(IMAGES / name))
                        print(f"{IMAGES / name}: {(IMAGES / name).stat().st_size:,} bytes")
                finally:
                    driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
