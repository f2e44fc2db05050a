"""The pictures: the HTML report in a real headless Chromium, the notebook's plot_utilisation,
and the Dagster summary's metadata with its embedded chart."""
from __future__ import annotations

import base64
import io
import re
import shutil

import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from PIL import Image

from pipelines.cli import main
from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.sync import Target, sync_projects
from warehouse import connect, plot_utilisation
from warehouse.store import Warehouse

TOKEN = "report-test-token"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def world_lake(tmp_path_factory):
    world = World(jobs=6, versions_per_job=(1, 3), seed=2, running_share=0.4)  # has a version with no samples
    root = tmp_path_factory.mktemp("report") / "wh"
    with SimulatorServer(world, token=TOKEN) as sim, Warehouse.open(root) as wh:
        sync_projects(wh, [Target(sim.url, p) for p in world.project_ids], StaticToken(TOKEN),
                      retry=RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05), concurrency=2)
    return root


@pytest.fixture(scope="module")
def report_file(world_lake, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "report.html"
    result = CliRunner().invoke(main, ["report", "--warehouse", str(world_lake), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report written to {out}" in result.output
    return out


def _pngs(html: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b)))
            for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def _ink(image: Image.Image) -> float:
    """Share of pixels that are not (near) white."""
    grey = image.convert("L")
    histogram = grey.histogram()
    return 1 - sum(histogram[245:]) / (grey.width * grey.height)


def test_report_is_one_self_contained_file_with_four_charts(report_file):
    page = report_file.read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)  # nothing fetched from anywhere
    charts = _pngs(page)
    assert len(charts) == 4 and all(c.width >= 600 and _ink(c) > 0.02 for c in charts)
    for heading in ("Runs over time", "How busy the GPUs were", "Which jobs left GPUs idle",
                    "Utilisation curves of the top runs"):
        assert heading in page
    assert "<table><tr><th>job</th>" in page  # the under-used jobs, by name


def test_report_renders_in_headless_chromium(report_file, tmp_path):
    import os

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium is not installed: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,2600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(report_file.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt, "
            "i.getBoundingClientRect().top, i.getBoundingClientRect().height])")
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
    finally:
        driver.quit()
    assert len(images) == 4 and all(complete and width >= 600 for complete, width, *_ in images), images
    assert shot.width >= 1000 and _ink(shot) > 0.05  # non-empty
    scale = shot.height / 2600
    for _, _, alt, top, height in images:  # each chart is on the screenshot, drawn (not blank)
        assert top + height <= 2600, alt
        region = shot.crop((0, int(top * scale), shot.width, int((top + height) * scale)))
        assert _ink(region) > 0.05, alt
    colours = shot.convert("RGB").getcolors(shot.width * shot.height)
    assert len(colours) > 200  # charts, not just text


def test_plot_utilisation_returns_a_figure(world_lake):
    con = connect(world_lake)
    try:
        with_samples = con.execute("SELECT job_id, version_id FROM version_summary WHERE cpu_samples > 3 "
                                   "ORDER BY version_id LIMIT 1").fetchone()
        without = con.execute("SELECT job_id, version_id FROM version_summary WHERE cpu_samples = 0 "
                              "ORDER BY version_id LIMIT 1").fetchone()
        samples = con.execute("SELECT count(*) FROM metric_history WHERE job_id = ? AND version_id = ? "
                              "AND metric = 'cpuUsage'", list(with_samples)).fetchone()[0]
    finally:
        con.close()
    fig = plot_utilisation(*with_samples, warehouse=world_lake)
    assert isinstance(fig, Figure)
    [ax] = fig.axes
    assert {line.get_label() for line in ax.get_lines()} >= {"CPU %", "memory %", "GPU util %"}
    cpu = next(line for line in ax.get_lines() if line.get_label() == "CPU %")
    assert len(cpu.get_xdata()) == samples
    empty = plot_utilisation(*without, warehouse=world_lake)
    assert not empty.axes[0].get_lines() and "no metric samples" in empty.axes[0].texts[0].get_text()


def test_dagster_summary_metadata_has_the_chart_and_the_figures(world_lake):
    import dagster as dg

    from assets.marts import version_summary_metadata

    con = connect(world_lake)
    try:
        metadata = version_summary_metadata(con)
        versions, gpu_hours = con.execute("SELECT count(*), sum(gpu_hours) FROM version_summary").fetchone()
    finally:
        con.close()
    assert metadata["dagster/row_count"] == dg.MetadataValue.int(versions)
    assert metadata["gpu_hours"].value == pytest.approx(gpu_hours)
    markdown = metadata["utilisation_chart"]
    assert isinstance(markdown, dg.MarkdownMetadataValue) and markdown.value.count("![") == 1
    [chart] = _pngs(markdown.value)
    assert chart.width == 640 and _ink(chart) > 0.02
    assert len(markdown.value) < 60_000
