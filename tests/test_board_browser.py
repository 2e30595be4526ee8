"""The board in a real headless browser: Debian's chromium, driven through its chromedriver.

One brain (tests/board_helpers.py) with artifacts in every state and a real running cell
(the `command` backend: it reports progress through the factory CLI, then sleeps), served by
the real `gptme-factory board` in a subprocess. The tests assert on the DOM the browser
built, that a new ledger event shows up without a reload, that a hostile title stays text,
and that the static file renders the same with no server. A screenshot is saved under the
test's temp dir (its path is printed).

No browser is downloaded: selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver
(.ci/run installs both) and told to stay offline. Without them these tests skip, except in
CI (CI=true), where a missing browser fails.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gptme_factory.cells import spawn as cells
from gptme_factory.cells.spawn import SpawnOptions
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake
from gptme_factory.views import statuscache
from tests.board_helpers import XSS_IMG, XSS_TITLE, make_brain
from tests.cells_helpers import gptme_processes, wait_for

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NOTE = "indexing 3 of 7 files"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1400,1100"]


def need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if not missing:
        return
    msg = f"{' and '.join(missing)} missing: `apt-get install chromium chromium-driver`"
    if os.environ.get("CI"):
        pytest.fail(msg + " (.ci/run installs them; CI must run the browser tests)")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The isolated environment of tests/conftest.py, for the whole module."""
    need_browser()
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("brhome")
    for sub in (".config", ".local/share", ".cache"):
        (home / sub).mkdir(parents=True)
    for var, value in (("HOME", str(home)), ("GIT_CONFIG_GLOBAL", str(home / ".gitconfig")),
                       ("GIT_CONFIG_NOSYSTEM", "1"), ("GPTME_FACTORY_ACTOR", "tester"),
                       ("XDG_CONFIG_HOME", str(home / ".config")),
                       ("XDG_DATA_HOME", str(home / ".local/share")),
                       ("XDG_CACHE_HOME", str(home / ".cache")),
                       ("GIT_AUTHOR_NAME", "T"), ("GIT_AUTHOR_EMAIL", "t@x.invalid"),
                       ("GIT_COMMITTER_NAME", "T"), ("GIT_COMMITTER_EMAIL", "t@x.invalid"),
                       ("SE_OFFLINE", "true"), ("SE_AVOID_STATS", "true")):
        mp.setenv(var, value)
    for var in ("GPTME_FACTORY_REPO", "GPTME_FACTORY_DIR", "GIT_DIR", "GIT_WORK_TREE"):
        mp.delenv(var, raising=False)
    mp.setattr(statuscache, "RACY_NS", 0)
    yield tmp_path_factory.mktemp("browser")
    mp.undo()


@pytest.fixture(scope="module")
def site(env: Path) -> Iterator[dict[str, Any]]:
    """The brain, a running cell, the served board and its URL."""
    made = make_brain(env / "brain")
    root = made["root"]
    ledger = Ledger.open(root)
    live_aid = intake(ledger, title="Index the docs", demand="gh:acme/app#9",
                             consumers=["erik"], acceptance=["search finds docs"]).artifact
    report = f"{shlex.quote(sys.executable)} -m gptme_factory progress --cell {{cell}}"
    rec = cells.spawn(ledger, live_aid, SpawnOptions(
        backend="command", command=f"{report} {shlex.quote(NOTE)} && sleep 300", timeout_s=600))
    server = subprocess.Popen([sys.executable, "-m", "gptme_factory", "board", "--repo",
                               str(root), "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("board: http://127.0.0.1:"), line + server.stderr.read()  # type: ignore[union-attr]
        url = line.split()[1]
        yield {**made, "url": url, "cell": rec.cell, "live": live_aid, "ledger": ledger}
    finally:
        server.terminate()
        server.communicate(timeout=15)  # waits, and closes the pipes
        cells.kill(ledger, rec.cell, "test over")
        assert gptme_processes(str(root)) == []
        assert not (ledger.runtime_dir / "board.json").exists()  # the server cleaned up


@pytest.fixture(scope="module")
def driver(env: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={env / 'chromium-profile'}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def find(drv: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.CSS_SELECTOR, css)


def all_of(drv: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(drv.find_elements(By.CSS_SELECTOR, css))


def column_of(drv: Any, aid: str) -> tuple[str, str] | None:
    """(lane, column) of an artifact's card, read in one script (live updates swap the DOM)."""
    got = drv.execute_script(
        "const c = document.querySelector(`#live [data-artifact=\"${arguments[0]}\"]`);"
        "return c ? [c.closest('[data-lane]').dataset.lane,"
        " c.closest('[data-column]').dataset.column] : null;", aid)
    return tuple(got) if got else None  # type: ignore[return-value]


def click(drv: Any, css: str) -> None:
    """Click the first element matching `css` in one script, once it exists (a live update
    may swap the DOM between a find and a click)."""
    wait_for(lambda: bool(drv.execute_script(
        "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e;", css)),
        timeout=10)


def text_of(drv: Any, css: str) -> str | None:
    """The text of the first element matching `css`, read in one script."""
    got = drv.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)
    return None if got is None else " ".join(str(got).split())


EXPECTED = {"closed": ("default", "_final"), "retry": ("default", "build"),
            "blocked": ("default", "scout"), "approval": ("ops", "scout"),
            "abandoned": ("default", "_final"), "xss": ("default", "scout"),
            "running": ("default", "scout")}


def console_errors(drv: Any) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def first_paint_ms(drv: Any) -> float:
    """When the page first painted (ms), printed for a reader; NaN if it has not yet said.

    The entry appears once Chrome has painted, which may be after `get` returns: waited for.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    script = ("const e = performance.getEntriesByName('first-contentful-paint')[0];"
              "return e ? e.startTime : null")
    try:
        return float(WebDriverWait(drv, 10).until(lambda d: d.execute_script(script)))
    except TimeoutException:
        return float("nan")


def test_the_served_board(site: dict[str, Any], driver: Any, env: Path) -> None:
    ids = site["ids"]
    driver.get(site["url"])
    print(f"\nfirst contentful paint (served): {first_paint_ms(driver):.0f} ms")
    for name, where in EXPECTED.items():
        assert column_of(driver, ids[name]) == where, name
    assert column_of(driver, site["live"]) == ("default", "scout")
    blocked = f'#live [data-artifact="{ids["blocked"]}"]'
    assert driver.execute_script(
        "return document.querySelector(arguments[0]).classList.contains('blocked');", blocked)
    assert (text_of(driver, f"{blocked} .blocked-reason") or "").startswith(
        f"contract violation by {ids['blocked']}.scout.")
    assert "needs a person" in (text_of(driver, f'#live [data-artifact="{ids["approval"]}"] .needs')
                                or "")
    assert text_of(driver, f"{blocked} .attempt") == "attempt 1/3"
    # the running cell: its latest progress note, on its card and in the cells panel
    cell = f'[data-cell="{site["cell"]}"]'
    wait_for(lambda: NOTE in (text_of(driver, f"{cell} .latest") or ""), timeout=20)
    assert (text_of(driver, f"{cell} h4") or "").startswith("scout on Index the docs")
    assert len(all_of(driver, f"{cell} progress")) >= 1
    wait_for(lambda: NOTE in (text_of(driver, f'[data-artifact="{site["live"]}"] .latest')
                              or ""), timeout=20)
    # the charts were drawn by the vendored library, and nothing broke the page (CSP, JS)
    assert driver.execute_script(
        "return ['throughput','lead','rates','cost'].every("
        "n => !!Chart.getChart(document.getElementById('chart-' + n)))")
    assert console_errors(driver) == []
    shot = env / "board.png"
    driver.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_a_new_event_appears_without_a_reload(site: dict[str, Any], driver: Any) -> None:
    driver.get(site["url"])
    wait_for(lambda: text_of(driver, "#live-state") == "live", timeout=15)
    driver.execute_script("window.__stillHere = 42")
    ledger: Ledger = site["ledger"]
    aid = intake(ledger, title="Arrived while watching", demand="gh:acme/app#77",
                        consumers=["alice"], acceptance=["it shows"]).artifact
    wait_for(lambda: column_of(driver, aid) == ("default", "scout"), timeout=15)
    from tests.ledger_helpers import abandon

    abandon(ledger, aid, "changed our mind")
    wait_for(lambda: column_of(driver, aid) == ("default", "_final"), timeout=15)
    assert driver.execute_script("return window.__stillHere") == 42  # the same page
    assert console_errors(driver) == []


def test_a_hostile_title_is_inert(site: dict[str, Any], driver: Any) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    aid = site["ids"]["xss"]
    for url in (site["url"], f"{site['url']}artifact/{aid}"):
        driver.get(url)
        title = ".card-title" if url == site["url"] else ".artifact-title"
        css = f'[data-artifact="{aid}"] {title}' if title == ".card-title" else title
        wait_for(lambda css=css: driver.execute_script(
            "return !!document.querySelector(arguments[0]);", css), timeout=10)
        shown = driver.execute_script(
            "return document.querySelector(arguments[0]).innerText;", css)
        assert " ".join(str(shown).split()) == f"{XSS_TITLE} {XSS_IMG}"
        with pytest.raises(TimeoutException):
            WebDriverWait(driver, 1).until(expected_conditions.alert_is_present())
        assert driver.execute_script("return window.__xss === undefined")
        assert not all_of(driver, 'img[src="x"]')
        scripts = driver.execute_script(
            "return [...document.querySelectorAll('script')]"
            ".map(s => s.getAttribute('src') || s.getAttribute('type') || '');")
        assert all(s.endswith(("/static/chart.umd.min.js", "/static/board.js"))
                   or s == "application/json" for s in scripts), scripts


def test_an_artifact_page_and_its_commits(site: dict[str, Any], driver: Any) -> None:
    aid = site["ids"]["closed"]
    driver.get(site["url"])
    click(driver, f'[data-artifact="{aid}"] .card-title a')
    wait_for(lambda: all_of(driver, f'[data-artifact-page="{aid}"]'), timeout=10)
    # Read in one script each: a live update may swap the page's DOM between two reads.
    shown = driver.execute_script(
        "return [...document.querySelectorAll('.timeline li .commit code')]"
        ".map(e => e.textContent.trim());")
    log = site["ledger"].history([aid])
    # one line per event: the scout's contract_fixed shares its verdict's commit
    assert (len(shown), len(log)) == (21, 20)
    assert list(dict.fromkeys(shown)) == [e.commit[:10] for e in log]
    rows = driver.execute_script(
        "return [...document.querySelectorAll('.gate[data-gate-seq] table.evidence tbody tr')]"
        ".map(e => e.innerText);")
    assert any("grep -q fixed app.txt" in r and " 0 " in f" {' '.join(r.split())} "
               for r in rows)
    click(driver, ".timeline li:last-child a.commit")
    wait_for(lambda: "+terminal: done" in (text_of(driver, "[data-commit-diff]") or ""),
             timeout=10)
    assert console_errors(driver) == []


def test_the_static_file_renders_the_same(site: dict[str, Any], driver: Any,
                                          env: Path) -> None:
    out = env / "board.html"
    proc = subprocess.run([sys.executable, "-m", "gptme_factory", "board", "--html", str(out),
                           "--repo", str(site["root"])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    driver.get(out.as_uri())
    print(f"\nfirst contentful paint (static file): {first_paint_ms(driver):.0f} ms")
    ids = site["ids"]
    for name, where in EXPECTED.items():
        assert column_of(driver, ids[name]) == where, name
    assert find(driver, "body").get_attribute("data-live") == "off"
    assert find(driver, f'[data-artifact="{ids["xss"]}"] .card-title').text == \
        f"{XSS_TITLE} {XSS_IMG}"
    assert NOTE in (text_of(driver, f'[data-cell="{site["cell"]}"] .latest') or "")
    assert driver.execute_script("return !!Chart.getChart(document.getElementById("
                                 "'chart-lead'))")
    # an artifact's page is inside the file, behind its card's link
    find(driver, f'[data-artifact="{ids["blocked"]}"] .card-title a').click()
    page = find(driver, f'#artifact-{ids["blocked"]}')
    wait_for(lambda: page.is_displayed(), timeout=5)
    assert not find(driver, "#live").is_displayed()
    assert "contract violation" in page.find_element("css selector", ".blocked-reason").text
    kinds = [li.get_attribute("data-kind") for li in page.find_elements("css selector", ".timeline li")]
    assert kinds == ["intake", "stage_started", "contract_violation"]
    assert console_errors(driver) == []
