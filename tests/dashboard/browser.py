"""The dashboard as a person sees it: a real Streamlit server, a real headless Chromium.

Debian's `chromium` and its matching `chromium-driver` (hack/setup.sh installs both), driven by
Selenium; nothing is downloaded at test time. Every wait polls for what the page shows, with a
generous deadline, so a loaded machine makes a test slower, not red.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from tests.services import stop_process

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 180.0
RECONNECT_AFTER_SECONDS = 90.0
T = TypeVar("T")


def artifacts_dir() -> Path:
    """Where screenshots go: $DUCKHERD_ARTIFACTS or the repository's (gitignored) artifacts/."""
    path = Path(os.environ.get("DUCKHERD_ARTIFACTS") or REPO / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_chromium() -> tuple[str, str]:
    """(browser, driver), or the test fails under CI (a skip would hide it) and skips elsewhere."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = "no chromium/chromedriver (Debian's chromium and chromium-driver: hack/setup.sh)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: CI installs them, a skip would hide the browser test")
    pytest.skip(message)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1250) -> Iterator[webdriver.Chrome]:
    browser, driver_path = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="duckherd-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited ({process.returncode}): {log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                return
        time.sleep(0.25)
    raise AssertionError(f"the dashboard did not come up in {DEADLINE_SECONDS}s: {log.read_text()}")


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[str]:
    """`command` (a Streamlit server) until the block ends; yields `url` once it is healthy."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_health(url, process, log)
        yield url
    finally:
        stop_process(process)


def streamlit_command(app: Path, port: int) -> list[str]:
    return [
        str(Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "streamlit"),
        "run",
        str(app),
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",
    ]


class DashboardPage:
    """What the page shows, read the way a person reads it (labels, numbers, banners)."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    def wait(self, condition: Callable[[], T | None], what: str) -> T:
        """Poll `condition` until it returns something truthy; fail naming `what`."""
        waiting = WebDriverWait(
            self.driver,
            DEADLINE_SECONDS,
            poll_frequency=0.5,
            ignored_exceptions=(StaleElementReferenceException,),
        )
        try:
            found = waiting.until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(
                f"after {DEADLINE_SECONDS}s the page still does not show {what} "
                f"(Streamlit: {self.app_state()}); it shows:\n"
                + self.driver.find_element(By.TAG_NAME, "body").text
            ) from None
        assert found is not None  # `until` returns only a truthy result
        return found

    def app_state(self) -> str:
        """Streamlit's own connection and script state, from the attributes of its app root."""
        roots = self.driver.find_elements(By.CSS_SELECTOR, "[data-testid='stApp']")
        if not roots:
            return "no app root"
        connection = roots[0].get_attribute("data-test-connection-state")
        script = roots[0].get_attribute("data-test-script-state")
        return f"connection {connection}, script {script}"

    def connected(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(StaleElementReferenceException):
                if self.app_state().startswith("connection CONNECTED"):
                    return True
            time.sleep(0.5)
        return False

    def open(self, url: str) -> None:
        """Load the page. Once, on a loaded machine, the page's websocket never connected and
        the page stayed blank for minutes; a person reloads then, and so does this (printed)."""
        self.driver.get(url)
        if not self.connected(RECONNECT_AFTER_SECONDS):
            state = self.app_state()
            print(f"the page did not connect in {RECONNECT_AFTER_SECONDS}s ({state}): reload")
            self.driver.refresh()

    def metrics(self, container: str) -> dict[str, str]:
        shown: dict[str, str] = {}
        for metric in self.driver.find_elements(
            By.CSS_SELECTOR, f".st-key-{container} [data-testid='stMetric']"
        ):
            label = metric.find_element(By.CSS_SELECTOR, "[data-testid='stMetricLabel']").text
            value = metric.find_element(By.CSS_SELECTOR, "[data-testid='stMetricValue']").text
            shown[label.strip()] = value.strip()
        return shown

    def rendered_totals(self) -> dict[str, str]:
        """The totals, once the app's run has rendered the whole page: the banner, the totals
        and the lookup box (the page's last element)."""

        def rendered() -> dict[str, str] | None:
            totals = self.metrics("totals")
            done = self.driver.find_elements(By.CSS_SELECTOR, ".st-key-customer_id input")
            return totals if len(totals) == 3 and self.banner() and done else None

        return self.wait(rendered, "the totals, the freshness banner and the lookup box")

    def banner(self) -> str:
        """The freshness banner's words (its icon left out)."""
        banners = self.driver.find_elements(
            By.CSS_SELECTOR, ".st-key-freshness [data-testid='stMarkdownContainer']"
        )
        return banners[0].text.strip() if banners else ""

    def look_up(self, customer_id: str) -> str:
        """Type an id into the lookup box, press Enter, and return the answer shown."""
        field = self.wait(
            lambda: self.driver.find_elements(By.CSS_SELECTOR, ".st-key-customer_id input"),
            "the customer lookup box",
        )[0]
        field.clear()
        field.send_keys(customer_id, Keys.ENTER)

        def answer() -> str | None:
            found = self.driver.find_elements(By.CSS_SELECTOR, ".st-key-lookup")
            return found[0].text if found and f"customer {customer_id}" in found[0].text else None

        return self.wait(answer, f"the lookup of customer {customer_id}")

    def screenshot(self, name: str) -> Path:
        path = artifacts_dir() / name
        assert self.driver.save_screenshot(str(path)), f"no screenshot written to {path}"
        print(f"screenshot: {path}")
        return path
