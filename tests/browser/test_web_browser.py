"""The web view in a real browser: pages load, hostile text stays text, live pages update.

Screenshots of every page (desktop, phone, dark) go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from oncallm.models.analysis import (
    Category,
    EvidenceRef,
    EvidenceSource,
    Phase,
    StageTimings,
    rfc3339,
)
from oncallm.web.demo import (
    HOSTILE_LOG_LINE,
    crashloop_analysis,
    earlier_crashloop_analysis,
    oom_analysis,
    running_analysis,
    skipped_analysis,
)
from tests.browser.conftest import SCREENSHOTS, ServedView

pytestmark = pytest.mark.slow

DESKTOP = (1366, 900)
PHONE = (390, 844)
WAIT_SECONDS = 20


def wait_until(driver: Any, condition: Any, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1).until(condition, message)


def screenshot(driver: Any, name: str, size: tuple[int, int], dark: bool = False) -> Path:
    """A full-page screenshot at a window width; also checks nothing overflows sideways."""
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
    )
    driver.set_window_size(width, height)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than a {width}px window"
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(full + 140, height), 6000))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not write {path}"
    driver.set_window_size(width, height)
    return path


def text_of(driver: Any, selector: str) -> str:
    """An element's text, read in one step: the live region may be swapped at any moment."""
    return str(
        driver.execute_script(
            "const el = document.querySelector(arguments[0]);return el ? el.innerText.trim() : '';",
            selector,
        )
    )


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def assert_no_dialog(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    pytest.fail(f"a script ran from the page's data and opened a dialog: {text!r}")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def planted(served_view: ServedView, now: datetime) -> ServedView:
    """The view with a completed CrashLoopBackOff analysis (hostile log line), an OOMKilled
    one fired with it, a running one in phase Gathering, a skipped one and an earlier one."""
    for analysis in (
        crashloop_analysis(now),
        oom_analysis(now),
        running_analysis(now),
        skipped_analysis(now),
        earlier_crashloop_analysis(now),
    ):
        served_view.apply("ADDED", analysis)
    return served_view


def test_list_and_report_pages_load_and_show_hostile_text_as_text(
    browser: Any, planted: ServedView, now: datetime
) -> None:
    from selenium.webdriver.common.by import By

    crash = crashloop_analysis(now)
    browser.set_window_size(*DESKTOP)
    browser.get(planted.url + "/")
    assert browser.title.startswith("Alert analyses")
    rows = browser.find_elements(By.CSS_SELECTOR, "#live a.row")
    assert len(rows) == 5
    group = browser.find_element(By.CSS_SELECTOR, "section.group")
    assert "fired together" in group.text and "2 alerts" in group.text
    assert console_errors(browser) == []
    screenshot(browser, "list-desktop", DESKTOP)
    screenshot(browser, "list-phone", PHONE)
    screenshot(browser, "list-dark", DESKTOP, dark=True)

    # From the list to the report, as an engineer would.
    link = browser.find_element(By.CSS_SELECTOR, f'a.row[href$="/{crash.name}"]')
    link.click()
    wait_until(browser, lambda d: "/analyses/" in d.current_url, "the report page did not open")
    assert_no_dialog(browser)
    log = browser.find_element(By.XPATH, "//pre[contains(., 'rejected request body')]")
    assert HOSTILE_LOG_LINE in log.text  # shown, as text
    scripts = browser.find_elements(By.CSS_SELECTOR, "script")
    assert [s.get_attribute("src").split("?")[0].rsplit("/", 1)[-1] for s in scripts] == ["app.js"]
    body = browser.find_element(By.TAG_NAME, "body").text
    for text in (
        "Root cause",
        "Bad configuration",
        "Immediate actions",
        "Long-term fixes",
        "Evidence",
        "Timeline",
        "Received from Alertmanager",
    ):
        assert text in body
    assert len(browser.find_elements(By.CSS_SELECTOR, "button.copy")) == 4
    assert console_errors(browser) == []
    screenshot(browser, "report-desktop", DESKTOP)
    screenshot(browser, "report-phone", PHONE)
    screenshot(browser, "report-dark", DESKTOP, dark=True)
    assert_no_dialog(browser)


def test_copy_button_copies_the_command(browser: Any, planted: ServedView, now: datetime) -> None:
    from selenium.webdriver.common.by import By

    crash = crashloop_analysis(now)
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": planted.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    browser.get(f"{planted.url}/analyses/{crash.namespace}/{crash.name}")
    button = browser.find_elements(By.CSS_SELECTOR, "button.copy")[2]
    button.click()
    wait_until(browser, lambda d: button.text == "Copied", "the copy button did not confirm")
    copied = browser.execute_async_script(
        "const done = arguments[0]; navigator.clipboard.readText().then(done, e => done('!' + e));"
    )
    assert copied == "kubectl rollout undo deployment/api -n orders --to-revision=41"
    assert console_errors(browser) == []


def test_a_running_analysis_updates_without_a_reload(
    browser: Any, planted: ServedView, now: datetime
) -> None:
    from selenium.webdriver.common.by import By

    running = running_analysis(now)
    browser.set_window_size(*DESKTOP)
    browser.get(f"{planted.url}/analyses/{running.namespace}/{running.name}")

    def phase(driver: Any) -> str:
        return text_of(driver, ".report-head .phase")

    assert phase(browser) == "Gathering"
    wait_until(
        browser,
        lambda d: text_of(d, "#live-status") == "live",
        "the page did not start following its analysis",
    )
    screenshot(browser, "running-desktop", DESKTOP)
    # A reload would lose this mark; swapping the content in place keeps it.
    browser.execute_script("window.oncallmMark = 'no reload'")

    running.status.phase = Phase.ANALYZING
    planted.apply("MODIFIED", running)
    wait_until(browser, lambda d: phase(d) == "Analyzing", "the phase did not move to Analyzing")

    running.status.phase = Phase.COMPLETED
    running.status.summary = "checkout/web has 2 of 4 replicas: the new pods are Pending."
    running.status.root_cause = (
        "The rollout's new pods request 4 CPU each and no node has that much free; the "
        "scheduler reports Insufficient cpu on all 6 nodes."
    )
    running.status.category = Category.INSUFFICIENT_RESOURCES_UNSCHEDULABLE
    running.status.confidence = 0.88
    running.status.evidence = [
        EvidenceRef(
            id="event/FailedScheduling",
            source=EvidenceSource.EVENT,
            object="pod/checkout/web-6f7d8c9b4-r8t2w",
            excerpt="Warning FailedScheduling: 0/6 nodes are available: 6 Insufficient cpu.",
        )
    ]
    running.status.commands = ["kubectl describe pod -n checkout -l app=web"]
    started = datetime.fromisoformat(str(running.status.started_at).replace("Z", "+00:00"))
    running.status.completed_at = rfc3339(started + timedelta(seconds=5.2))
    running.status.timings = StageTimings(gathering=1.9, analyzing=3.2, total=5.2)
    planted.apply("MODIFIED", running)
    wait_until(
        browser,
        lambda d: "the new pods are Pending" in text_of(d, "#live"),
        "the completed report did not appear",
    )
    assert phase(browser) == "Completed"
    assert "Insufficient cpu" in browser.find_element(By.ID, "live").text
    assert browser.find_element(By.ID, "live").get_attribute("data-live") == "false"
    assert browser.execute_script("return window.oncallmMark") == "no reload"
    assert console_errors(browser) == []
    screenshot(browser, "running-completed-desktop", DESKTOP)


def test_the_list_shows_a_new_alert_without_a_reload(
    browser: Any, served_view: ServedView, now: datetime
) -> None:
    from selenium.webdriver.common.by import By

    served_view.apply("ADDED", crashloop_analysis(now))
    browser.get(served_view.url + "/")
    wait_until(
        browser,
        lambda d: text_of(d, "#live-status") == "live",
        "the list did not start following the store",
    )
    browser.execute_script("window.oncallmMark = 'no reload'")
    served_view.apply("ADDED", oom_analysis(now))
    wait_until(
        browser,
        lambda d: d.execute_script("return document.querySelectorAll('#live a.row').length") == 2,
        "the new analysis did not appear in the list",
    )
    assert "worker hits its 256Mi memory limit" in browser.find_element(By.ID, "live").text
    assert browser.execute_script("return window.oncallmMark") == "no reload"
    assert console_errors(browser) == []
