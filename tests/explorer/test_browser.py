"""The explorer driven as a person would: headless Chromium (Debian's chromium + chromium-driver) through Selenium.

Screenshots of each view go to ``$EXPLORER_SCREENSHOTS`` when set (the README's pictures are
made this way: ``EXPLORER_SCREENSHOTS=docs/img python -m pytest tests/explorer/test_browser.py``),
else to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
#: The source links in the candidates grid (AG Grid cells), and its paging button.
ROW_LINK = "#candidates .ag-cell a"
NEXT_PAGE = "#candidates .ag-paging-button[aria-label='Next Page']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m explorer`` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, store: str, log: Path):
        self.store, self.log, self.port, self.proc = store, log, free_port(), None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        self.proc = subprocess.Popen([sys.executable, "-m", "explorer", "--store", self.store, "--port", str(self.port),
                                      "--user", "tester"], cwd=ROOT, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"explorer did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: acknowledged labels must survive it."""
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):  # a failure, not a skip: CI must never pass without the browser tests
        pytest.fail("the explorer's browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100", "--disable-gpu"):
        opts.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("EXPLORER_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def wait(driver, condition, timeout: float = 30, poll: float = 0.05):
    # the page re-renders under the test: a vanished element is "not yet", not a failure
    return WebDriverWait(driver, timeout, poll_frequency=poll, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(condition)


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def replace_text(box, text: str, enter: bool = True) -> None:
    """Select all, delete, type: clear() does not reach React's onChange, and a modifier held in one
    send_keys call stays held for the rest of it, so each step is its own call."""
    box.send_keys(Keys.CONTROL + "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text, *([Keys.ENTER] if enter else []))


def plot_traces(driver, graph_id: str) -> list[dict]:
    """The traces of a dcc.Graph as plotly.js holds them (name, mode)."""
    return driver.execute_script(
        "const g = document.querySelector(`#${arguments[0]} .js-plotly-plot`);"
        "return g && g.data ? g.data.map(t => ({name: t.name, mode: t.mode})) : null;", graph_id)


def test_browse_open_label_restart_and_next_candidate(explorer_store, browser, shots, tmp_path):
    store = str(tmp_path / "store.zarr")
    shutil.copytree(explorer_store, store)  # a private copy: this test counts its own labels
    server = Server(store, tmp_path / "server.log").start()
    try:
        # candidates view: the table, ranked, with a count
        browser.get(server.url + "/")
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, ROW_LINK)))
        assert "sources match" in text_of(browser, "#table-count")
        assert "ranked by discovery_score" in text_of(browser, "#table-count")
        browser.save_screenshot(str(shots / "candidates.png"))

        # a filter value of the wrong type: a message on the page, no traceback
        cone_ra = browser.find_element(By.ID, "cone-ra")
        cone_ra.send_keys("north")
        browser.find_element(By.ID, "cone-radius").send_keys("60")
        browser.find_element(By.ID, "cone-apply").click()
        wait(browser, EC.text_to_be_present_in_element((By.ID, "table-message"), "must all be numbers"))
        for box in (cone_ra, browser.find_element(By.ID, "cone-radius")):
            replace_text(box, "", enter=False)
        browser.find_element(By.ID, "cone-apply").click()
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, ROW_LINK)))
        assert text_of(browser, "#table-message") == ""

        # the free-text filter: a wrong type is a message, a good filter narrows the table
        expr = browser.find_element(By.ID, "expr-filter")
        expr.send_keys("{n_bins} > many", Keys.ENTER)
        wait(browser, EC.text_to_be_present_in_element((By.ID, "table-message"), "is numeric"))
        replace_text(expr, "{abs_gal_b} > 30 && {n_bins} >= 5")
        wait(browser, lambda d: text_of(d, "#table-message") == "" and "150 sources" not in text_of(d, "#table-count"))
        assert int(text_of(browser, "#table-count").split()[0]) > 0
        replace_text(expr, "")
        wait(browser, EC.text_to_be_present_in_element((By.ID, "table-count"), "150 sources match"))

        # the grid's own column filter (n_bins at least 8: numbers default to >=) narrows the count the server reports
        column = browser.find_element(By.CSS_SELECTOR, "#candidates .ag-header-cell[col-id='n_bins']")
        floating = browser.find_element(By.CSS_SELECTOR, "#candidates .ag-floating-filter[aria-colindex='"
                                        + column.get_attribute("aria-colindex") + "'] input")
        floating.send_keys("8")
        wait(browser, lambda d: "150 sources" not in text_of(d, "#table-count"), 60)
        assert text_of(browser, "#table-message") == ""
        narrowed = int(text_of(browser, "#table-count").split()[0].replace(",", ""))
        assert 0 < narrowed < 150
        replace_text(floating, "", enter=False)
        wait(browser, EC.text_to_be_present_in_element((By.ID, "table-count"), "150 sources match"))

        # the next page of the ranking: other sources
        first_page = {a.text for a in browser.find_elements(By.CSS_SELECTOR, ROW_LINK)}
        browser.find_element(By.CSS_SELECTOR, NEXT_PAGE).click()
        wait(browser, lambda d: {a.text for a in d.find_elements(By.CSS_SELECTOR, ROW_LINK)} - first_page)
        assert not ({a.text for a in browser.find_elements(By.CSS_SELECTOR, ROW_LINK)} & first_page)
        browser.get(server.url + "/")
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, ROW_LINK)))

        # open the top source
        link = browser.find_element(By.CSS_SELECTOR, ROW_LINK)
        source_id = link.text
        link.click()
        wait(browser, EC.text_to_be_present_in_element((By.ID, "source-title"), source_id))
        wait(browser, lambda d: plot_traces(d, "lc-graph"))
        traces = plot_traces(browser, "lc-graph")
        bands = [t for t in traces if t["mode"] == "markers"]
        assert len(bands) == 3, traces  # one trace per eROSITA band
        assert len([t for t in traces if t["name"].startswith("VAE")]) == 3  # the reconstruction overlaid
        assert plot_traces(browser, "context-graph")
        assert "l " in text_of(browser, ".position") and "b " in text_of(browser, ".position")  # galactic too
        assert "±" in text_of(browser, ".position")  # the file's POS_ERR
        assert len(browser.find_elements(By.CSS_SELECTOR, ".thumb")) == 6  # more like this
        assert "poisson_variability@1" in text_of(browser, "table.features")
        why = text_of(browser, "#why")  # why it ranks where it does, in words
        assert why.startswith("Why it ranks here:") and "0.2-0.6 keV band" in why and "discovery_score" in why
        browser.save_screenshot(str(shots / "source.png"))

        # label it (with a comment), acknowledged on the page
        browser.find_element(By.ID, "label-comment").send_keys("eclipse-like dip?")
        browser.find_element(By.ID, "label-interesting").click()
        wait(browser, EC.text_to_be_present_in_element((By.ID, "label-status"), "saved: interesting by tester"))
    finally:
        server.kill()

    # a killed server lost nothing: a new one shows the label
    server = Server(store, tmp_path / "server.log").start()
    try:
        browser.get(f"{server.url}/source/{source_id}")
        wait(browser, EC.text_to_be_present_in_element((By.ID, "label-status"), "label: interesting by tester"))

        # next candidate (active learning), a label by keyboard, then the next candidate changes
        browser.find_element(By.ID, "btn-active").click()
        # labelled sources are never proposed again
        wait(browser, lambda d: d.find_elements(By.ID, "source-title") and text_of(d, "#source-title") not in ("", source_id))
        first = text_of(browser, "#source-title")
        browser.find_element(By.TAG_NAME, "body").send_keys("5")  # shortcut: boring
        wait(browser, EC.text_to_be_present_in_element((By.ID, "label-status"), "saved: boring"))
        browser.find_element(By.TAG_NAME, "body").send_keys("n")  # shortcut: next candidate
        wait(browser, lambda d: not d.find_element(By.ID, "source-title").text == first)
        second = text_of(browser, "#source-title")
        assert second not in (first, source_id)

        # next / previous in the ranking
        browser.find_element(By.TAG_NAME, "body").send_keys("j")
        wait(browser, lambda d: d.find_element(By.ID, "source-title").text != second)

        # the label state filter shows the labelled sources
        browser.get(server.url + "/")
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, ROW_LINK)))
        browser.find_element(By.CSS_SELECTOR, "#label-state").click()
        browser.find_element(By.CSS_SELECTOR, ".dash-dropdown-option input[value='labelled']").find_element(By.XPATH, "./../..").click()
        wait(browser, EC.text_to_be_present_in_element((By.ID, "table-count"), "2 sources match"))
        ids = {a.text for a in browser.find_elements(By.CSS_SELECTOR, ROW_LINK)}
        assert ids == {source_id, first}

        # an unknown source id in the URL: a message on the page, no error in the server's log
        browser.get(server.url + "/source/eRASSt%20J000000.0-000000")
        wait(browser, EC.text_to_be_present_in_element((By.ID, "source-error"), "No source"))
        assert "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        server.kill()


def test_bad_store_is_a_clear_error(tmp_path):
    (tmp_path / "not-a-store").mkdir()
    for path in (tmp_path / "not-a-store", tmp_path / "missing"):
        r = subprocess.run([sys.executable, "-m", "explorer", "--store", str(path), "--port", str(free_port())],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr


def test_other_host_warns(tmp_path):
    """Another host than loopback warns before anything else happens (here the store is missing: exit 2 after it)."""
    r = subprocess.run([sys.executable, "-m", "explorer", "--store", str(tmp_path / "missing"), "--host", "0.0.0.0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and lines[0].startswith("warning: binding 0.0.0.0") and lines[-1].startswith("error: "), r.stderr
