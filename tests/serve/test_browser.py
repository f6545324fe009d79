"""The player page in headless Chromium (Debian's chromium + chromedriver, driven by selenium): start a session
from the form, watch the video play, append text and see it reach the transcript."""

from __future__ import annotations

import os
import shutil
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"),  # CI must run it
                                reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_page_plays_the_stream_and_takes_text(tiny_model, start_server):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    with start_server(tiny_model, max_sessions=2, max_lead_seconds=3.0) as (url, _):
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            driver.get(url + "/")
            text = driver.find_element(By.NAME, "text")
            text.clear()
            text.send_keys("hello from the browser, this stream should play for a while")
            driver.find_element(By.ID, "go").click()
            status = lambda: driver.find_element(By.ID, "status").text
            wait_for(lambda: status() == "streaming" or status().startswith("error"), 60, "the stream to start")
            assert status() == "streaming", status()
            current = lambda: driver.execute_script("return document.getElementById('video').currentTime")
            wait_for(lambda: current() > 1.0, 60, "the video's currentTime to advance")
            assert int(driver.find_element(By.ID, "chunks").text) >= 1
            driver.find_element(By.ID, "more").send_keys("and one more sentence")
            driver.find_element(By.ID, "append").click()
            transcript = lambda: driver.find_element(By.ID, "transcript").text
            wait_for(lambda: "and one more sentence" in transcript(), 30, "the appended text in the transcript")
            assert not status().startswith("error"), status()
        finally:
            logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
            driver.quit()
        assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
