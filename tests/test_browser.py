"""End to end in a real headless browser (Debian's chromium + chromedriver, installed by .ci/run).

* the exported HTML report, opened with networking off, renders every Plotly figure and shows a
  hostile label as text;
* the dashboard, served by `streamlit run`, loads, switches pages, reacts to an interaction, and
  is saved as screenshots.

Skipped when chromium or chromedriver is missing, unless LEE_REQUIRE_BROWSER=1 (as in CI), where
a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
EVIL = "<script>alert(1)</script>"
HOSTILE = '"><b>b</b> & <script>alert(2)</script> \'q\''   # quotes, a tag Plotly renders, one it does not
LONG = "L" * 300
ENTITIES = ("&quot;", "&lt;", "&gt;", "&amp;", "&#")


def _hostile_world(tmp_path: Path):
    """A tiny planted world whose user labels include EVIL, HOSTILE and a 300-character label."""
    from lee.world.config import config_for_scale
    from lee.world.generate import generate_world

    world = generate_world(config_for_scale("tiny", seed=5))
    cats = world.users["label"].cat.categories
    world.users["label"] = world.users["label"].cat.rename_categories({cats[0]: EVIL, cats[1]: HOSTILE,
                                                                       cats[2]: LONG})
    return world


def _svg_texts(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.main-svg text')).map(e => e.textContent)")


def _assert_literal_labels(driver) -> None:
    """Legends show HOSTILE as its very characters and the long label clipped; no entity is ever
    shown as text (escaped exactly once); hovering a hostile point shows it literally too."""
    from analysis.figures import LABEL_CHARS

    texts = _svg_texts(driver)
    assert HOSTILE in texts and EVIL in texts, texts
    assert not [t for t in texts if any(e in t for e in ENTITIES)], [t for t in texts if "&" in t]
    clipped = [t for t in texts if t.startswith("LLLL")]
    assert clipped and all(len(t) == LABEL_CHARS and t.endswith("…") for t in clipped), clipped
    hovers = _bar_hover_texts(driver)
    assert any(HOSTILE in h for h in hovers), hovers
    assert not [h for h in hovers if any(e in h for e in ENTITIES)], hovers


def _bar_hover_texts(driver) -> list[str]:
    """Move the mouse over every bar of every chart and collect the hover label each one shows."""
    from selenium.webdriver.common.action_chains import ActionChains

    texts = []
    for bar in driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .barlayer .point path"):
        try:
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", bar)
            ActionChains(driver).move_to_element(bar).perform()
            time.sleep(0.2)
        except Exception:  # noqa: BLE001 - a bar too thin to point at
            continue
        texts += driver.execute_script(
            "return Array.from(document.querySelectorAll('.hoverlayer')).map(e => e.textContent)")
    return [t for t in texts if t]

if not (CHROMIUM and DRIVER):
    if os.environ.get("LEE_REQUIRE_BROWSER") == "1":
        raise RuntimeError("LEE_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture()
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    d.set_page_load_timeout(120)
    yield d
    d.quit()


def test_report_renders_offline(tmp_path, driver):
    from analysis.lee_results import LeeComparison
    from analysis.report import write_report
    from analysis.suite import SuiteConfig, run_suite
    from lee.world.planted import write_planted_variants

    world = _hostile_world(tmp_path)
    write_planted_variants(world, tmp_path / "s", variants=["oracle", "random"], n_snapshots=2)
    suite = run_suite(world, tmp_path / "s", config=SuiteConfig(n_boot=50), log=lambda *_: None)
    lee = pd.DataFrame({"variant": [EVIL], "usage": ["UR+IR"], "fusion": ["concat"], "auc": [0.8],
                        "baseline_auc": [0.7], "delta_auc": [0.1], "ci_low": [0.05], "ci_high": [0.15],
                        "rela_impr": [40.0], "verdict": ["better"]})
    path = write_report(tmp_path / "report", suite,
                        lee=LeeComparison(source="test", ranking=lee, windows=pd.DataFrame()))
    n_figures = path.read_text(encoding="utf-8").count('class="plotly-graph-div"')
    assert n_figures >= 8

    # networking off: the page must not need anything outside the file
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    driver.get(path.as_uri())
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.querySelectorAll('.plotly-graph-div .main-svg').length") > 0)
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".filter(g => g.querySelector('.main-svg')).length") == n_figures)
    assert driver.execute_script("return typeof Plotly") == "object"
    # the hostile label is text in the table and never ran
    cells = driver.find_elements(By.XPATH, "//td[text()='<script>alert(1)</script>']")
    assert cells, "the escaped label should appear as text"
    cell_texts = driver.execute_script("return Array.from(document.querySelectorAll('td')).map(e => e.textContent)")
    assert HOSTILE in cell_texts and LONG in cell_texts  # tables keep the full text
    _assert_literal_labels(driver)
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    driver.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sources(tmp_path: Path) -> list[str]:
    """The embedded sample by default; LEE_DEMO_DIR=runs/demo serves a finished demo instead (for the
    README screenshots, with LEE results and a layer sweep)."""
    demo = os.environ.get("LEE_DEMO_DIR")
    if not demo:
        return ["--db", str(tmp_path / "results.sqlite")]
    d = Path(demo).resolve()
    return ["--world", str(d / "world"), "--root", str(d / "snapshots"), "--db", str(d / "results.sqlite"),
            "--sweep", str(d / "sweep.csv")]


@contextmanager
def _serve(tmp_path: Path, sources: list[str]):
    """``streamlit run app/dashboard/main.py -- SOURCES`` on a free port; yields its URL."""
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "dashboard" / "main.py"),
         "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--", *sources],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start: " + (tmp_path / "streamlit.log").read_text())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture()
def dashboard(tmp_path):
    with _serve(tmp_path, _sources(tmp_path)) as url:
        yield url


def _wait_text(driver, text: str, timeout: float = 120) -> None:
    WebDriverWait(driver, timeout).until(lambda d: text in d.execute_script("return document.body.innerText"))


def _wait_idle(driver, timeout: float = 120) -> None:
    """Until Streamlit says it is no longer running the script."""
    time.sleep(0.5)
    WebDriverWait(driver, timeout).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'))


def test_dashboard_pages_and_interaction(dashboard, driver, tmp_path):
    shots = Path(os.environ.get("LEE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    driver.get(dashboard)
    _wait_text(driver, "Snapshot timeline")
    _wait_idle(driver)
    assert "Traceback" not in driver.page_source
    driver.save_screenshot(str(shots / "dashboard-overview.png"))

    # switch page through the sidebar navigation
    link = WebDriverWait(driver, 60).until(
        lambda d: next((a for a in d.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')
                        if a.text.strip() == "Clusters"), None))
    link.click()
    _wait_text(driver, "Ad CTR per cluster")
    _wait_idle(driver)
    n_before = driver.execute_script("return document.querySelectorAll('.legendtext').length")

    # interaction: colour the map by label instead of cluster -> the legend changes to the labels
    option = next(el for el in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stRadio"] label')
                  if el.text.strip() == "label")
    option.click()
    WebDriverWait(driver, 60).until(lambda d: {"childcare", "indoor games", "outdoor sports"} & set(d.execute_script(
        "return Array.from(document.querySelectorAll('.legendtext')).map(e => e.textContent)")))
    _wait_idle(driver)
    assert n_before > 0
    assert "Traceback" not in driver.page_source
    driver.save_screenshot(str(shots / "dashboard-clusters.png"))

    lee_marker = "Per-window test AUC" if os.environ.get("LEE_DEMO_DIR") else "No LEE results"
    for page, marker in (("Collapse", "Singular-value spectrum"), ("Volatility", "Cosine CDF"), ("LEE", lee_marker)):
        link = next(a for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')
                    if a.text.strip() == page)
        link.click()
        _wait_text(driver, marker)
        _wait_idle(driver)
        driver.save_screenshot(str(shots / f"dashboard-{page.lower()}.png"))
    assert all((shots / f).stat().st_size > 10_000 for f in ("dashboard-overview.png", "dashboard-clusters.png"))


def test_dashboard_opens_a_page_url_first_and_shows_hostile_labels_literally(tmp_path, driver):
    """A freshly started dashboard whose first request is a page's URL (/clusters) shows that page
    with the dashboard's own navigation (no ModuleNotFoundError, no traceback); hostile labels
    appear as their literal text in the cluster map's legend and hover."""
    from lee.world.io import save_world
    from lee.world.planted import write_planted_variants

    world = _hostile_world(tmp_path)
    save_world(world, tmp_path / "world")
    write_planted_variants(world, tmp_path / "snapshots", variants=["oracle", "random"], n_snapshots=2)
    sources = ["--world", str(tmp_path / "world"), "--root", str(tmp_path / "snapshots"),
               "--db", str(tmp_path / "results.sqlite")]
    with _serve(tmp_path, sources) as url:
        driver.get(f"{url}/clusters")
        _wait_text(driver, "Ad CTR per cluster")
        _wait_idle(driver)
        body = driver.execute_script("return document.body.innerText")
        assert "ModuleNotFoundError" not in body and "Traceback" not in driver.page_source
        nav = [a.text.strip() for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')]
        assert "Clusters" in nav and "Overview" in nav and "main" not in nav, nav
        option = next(el for el in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stRadio"] label')
                      if el.text.strip() == "label")
        option.click()
        WebDriverWait(driver, 60).until(lambda d: HOSTILE in _svg_texts(d))
        _wait_idle(driver)
        _assert_literal_labels(driver)
        assert not (tmp_path / "results.sqlite").exists()  # reading pages never create the store
