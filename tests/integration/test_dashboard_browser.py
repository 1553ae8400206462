"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium) against a real --local network: every node and link shows, a relayed key's path is
highlighted within about a second, draining a link's key changes its colour, a browser without
the token gets nothing; and a screenshot for the README (docs/img/dashboard.png)."""
from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from mininet_topos import topology
from mininet_topos.launch.keypair import client_pair
from mininet_topos.launch.local import LocalNetwork

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
SLOW_LINK = "B-C"               # on sae-a's path to sae-c (A-B-C); drained by the test
SLOW_BPS = 1000.0               # refills at 500 b/s per direction: stays drained
SLOW_CAPACITY = 16384           # bytes: 131072 bits when full, above the "low" threshold


def slow_metro8():
    topo = topology.load("metro8")
    topo.links = [dataclasses.replace(lk, rate_bps=SLOW_BPS, length_km=None) if lk.id == SLOW_LINK
                  else lk for lk in topo.links]
    return topo


def full_at_start(node_id: str, cfg) -> None:
    """The slow link starts with a full buffer (both ends shift its epoch alike)."""
    for lc in cfg.links:
        if lc.id == SLOW_LINK:
            lc.capacity_bytes = SLOW_CAPACITY
            lc.epoch -= 3600.0


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    progress = io.StringIO()      # what `qkdnet up --local` prints
    with LocalNetwork(slow_metro8(), tmp_path_factory.mktemp("dash"), config_hook=full_at_start,
                      progress=progress) as n:
        n.printed = progress
        deadline = time.monotonic() + 20
        while not n.controller.dashboard_url and time.monotonic() < deadline:
            time.sleep(0.1)
        yield n


@pytest.fixture(scope="module")
def doc(net) -> dict:
    return json.loads(net.network_json.read_text())


def chrome():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (apt-get install "
                    "chromium chromium-driver; make installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1050", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


def printed_url(net) -> str:
    """The dashboard URL the launcher printed (qkdnet up / qkdnet demo show the same line)."""
    m = re.search(r"QuSeC dashboard \(open in a browser on this machine\): (\S+)", net.printed.getvalue())
    assert m, net.printed.getvalue()
    return m.group(1)


@pytest.fixture(scope="module")
def page(net):
    driver = chrome()
    try:
        driver.get(printed_url(net))
        wait_for(driver, "document.body.dataset.ready === '1' && "
                         "document.querySelectorAll('#layer-nodes .node').length > 0", 20)
        yield driver
    finally:
        driver.quit()


def wait_for(driver, js: str, timeout: float = 10.0):
    """Poll a JS expression on the page until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({js});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {js}")
        time.sleep(0.05)


def link_level(driver, link: str) -> str:
    return driver.execute_script(
        f"const e = document.querySelector('#layer-qkd line.qkd[data-id=\"{link}\"]'); "
        "return e ? e.dataset.level : null;")


def test_the_page_shows_every_node_and_link_of_the_topology(page, net) -> None:
    topo = net.topology
    wait_for(page, f"document.querySelectorAll('#layer-nodes .node[data-online=\"1\"]').length === {len(topo.nodes)}")
    assert page.execute_script("return document.querySelectorAll('#layer-nodes .node').length") == len(topo.nodes)
    assert page.execute_script("return document.querySelectorAll('#layer-qkd line.qkd').length") == len(topo.links)
    ids = set(page.execute_script("return [...document.querySelectorAll('#layer-qkd line.qkd')].map(e => e.dataset.id)"))
    assert ids == {lk.id for lk in topo.links}
    assert page.execute_script("return document.querySelectorAll('#links tbody tr').length") == len(topo.links)
    assert page.find_element("id", "conn").text == "live"
    # the token left the address bar for an HttpOnly cookie no script can read
    assert "token=" not in page.current_url and page.execute_script("return document.cookie") == ""


def test_a_relayed_key_highlights_its_path_within_a_second(page, doc) -> None:
    assert page.execute_script("return document.querySelectorAll('#layer-paths .path').length") == 0
    result = client_pair(doc, "sae-a", "sae-c", number=1)
    done = time.monotonic()
    assert result["ok"], result
    path = "-".join(result["path"])
    assert len(result["path"]) >= 3, result          # relayed, not a direct link
    wait_for(page, f"document.querySelector('#layer-paths .path[data-nodes=\"{path}\"]')", 5)
    seen_after = time.monotonic() - done
    assert seen_after < 1.5, f"the path reached the page {seen_after:.2f} s after the key"
    pair = page.execute_script("return document.querySelector('#layer-paths .path').dataset.pair")
    assert pair == "sae-a→sae-c"
    text = page.find_element("id", "pairs").text
    assert "sae-a→sae-c" in text and "rule" in text and "qkd" in text
    wait_for(page, "[...document.querySelectorAll('#events li')].some(li => li.dataset.kind === 'path_granted')")
    assert "path granted sae-a -> sae-c" in page.find_element("id", "events").text


def test_draining_a_links_key_changes_its_colour(page, doc) -> None:
    wait_for(page, f"document.querySelector('#layer-qkd line.qkd[data-id=\"{SLOW_LINK}\"]')")
    assert link_level(page, SLOW_LINK) == "ok"
    # 12 keys of 8192 bits relayed over A-B-C take ~98 kbit of B-C's 131 kbit
    for _ in range(3):
        result = client_pair(doc, "sae-a", "sae-c", number=4, size=8192)
        assert result["ok"] and result["path"] == ["A", "B", "C"], result
    wait_for(page, f"['low', 'empty'].includes(document.querySelector('#layer-qkd line.qkd[data-id=\"{SLOW_LINK}\"]').dataset.level)", 10)
    row = page.find_element("css selector", f"#links tbody tr[data-id='{SLOW_LINK}']")
    assert row.get_attribute("class") in ("level-low", "level-empty")
    assert link_level(page, "A-E") == "ok"      # a link nobody drained keeps its colour


def test_qlink_down_shows_the_alarm_and_the_rerouted_path(page, net, doc) -> None:
    from mininet_topos.cli.qlink import apply
    before = client_pair(doc, "sae-a", "sae-c", number=1)
    assert before["ok"] and before["path"] == ["A", "B", "C"], before
    try:
        apply(net.network_json, "B", "C", ["down"])      # qkdnet qlink B C down
        wait_for(page, f"document.querySelector('#layer-qkd line.qkd[data-id=\"{SLOW_LINK}\"]').dataset.alarm !== ''", 10)
        assert link_level(page, SLOW_LINK) == "off"
        wait_for(page, "[...document.querySelectorAll('#events li')].some(li => li.dataset.kind === 'qkd_alarm')")
        assert f"QKD link {SLOW_LINK} ALARM" in page.find_element("id", "events").text
        row = page.find_element("css selector", f"#links tbody tr[data-id='{SLOW_LINK}']")
        assert "link_down" in row.text
        # QuSeC moves the path off B-C: the page shows the pair's path on its new route
        crosses = "/(^|-)(B-C|C-B)(-|$)/.test(p.dataset.nodes)"
        route = wait_for(page, "(() => { const p = [...document.querySelectorAll('#layer-paths .path')]"
                               f".find(p => p.dataset.pair === 'sae-a→sae-c' && !{crosses}); "
                               "return p ? p.dataset.nodes : null; })()", 10)
        assert route.startswith("A-") and route.endswith("-C"), route
        assert not page.execute_script(f"return [...document.querySelectorAll('#layer-paths .path')].some(p => {crosses})")
        assert route.replace("-", " – ") in page.find_element("id", "pairs").text
    finally:
        apply(net.network_json, "B", "C", ["up"])
    wait_for(page, f"document.querySelector('#layer-qkd line.qkd[data-id=\"{SLOW_LINK}\"]').dataset.alarm === ''", 10)


def test_the_screenshot_for_the_readme(page) -> None:
    # a few points of stored-key history in every sparkline (one point every 5 s)
    wait_for(page, "[...document.querySelectorAll('#links svg.spark polyline')].every("
                   "p => p.getAttribute('points').split(' ').length >= 3)", 20)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_browser_without_the_token_gets_no_data(net) -> None:
    url = printed_url(net)
    assert url == net.controller.dashboard_url and "?token=" in url
    u = urllib.parse.urlsplit(url)
    bare = f"{u.scheme}://{u.netloc}"
    driver = chrome()       # a fresh profile: no cookie
    try:
        for path in ("/dashboard/", "/dashboard/snapshot", "/dashboard/stream",
                     "/dashboard/?token=" + "A" * 43):
            driver.get(bare + path)
            body = driver.find_element("tag name", "body").text
            assert "dashboard needs its token" in body or "wrong dashboard token" in body, (path, body)
            assert not driver.find_elements("css selector", "#layer-nodes .node")
            assert '"nodes"' not in driver.page_source and "sae-a" not in driver.page_source
    finally:
        driver.quit()
