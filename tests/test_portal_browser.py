"""The portal in a real headless Chromium (Debian `chromium` + `chromium-driver`, via Selenium).

The browser must start: a missing or broken Chromium fails this test, it is never skipped.
A screenshot of the page on a phone-sized window is written to artifacts/portal.png.
"""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from channels.webapp import serve
from tests.test_portal import make_app, seed

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=412,915")


def start_browser(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def browse(url: str) -> dict[str, object]:
    """Load the portal, search a code, look for the confidential one; return what was seen."""
    with tempfile.TemporaryDirectory() as profile:
        driver = start_browser(profile)
        try:
            driver.set_page_load_timeout(60)
            driver.get(url + "/portal/")
            cases = [a.get_attribute("id") for a in driver.find_elements(By.CSS_SELECTOR, "article.case")]
            seen: dict[str, object] = {"title": driver.title, "cases": cases}
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "portal.png"))
            box = driver.find_element(By.ID, "code")
            box.send_keys("PA-2026-000005")
            driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
            # the search loads a new page: wait until the old one is gone before reading it
            WebDriverWait(driver, 30).until(expected_conditions.staleness_of(box))
            found = driver.find_elements(By.CSS_SELECTOR, "article.case")
            seen["after_search"] = [a.get_attribute("id") for a in found]
            seen["search_url"] = driver.current_url
            image = driver.find_element(By.CSS_SELECTOR, "article.case img")
            driver.execute_script("arguments[0].scrollIntoView()", image)
            seen["photo_loaded"] = WebDriverWait(driver, 20).until(
                lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))
            driver.get(url + "/portal/?code=PA-2026-000002")
            seen["confidential_page"] = driver.find_element(By.TAG_NAME, "main").text
            return seen
        finally:
            driver.quit()


async def test_portal_in_headless_chromium(database) -> None:
    await seed(database)
    server = await serve(make_app(database), "127.0.0.1", 0)
    try:
        seen = await asyncio.to_thread(browse, server.url)
    finally:
        await server.stop()
    assert "Kết quả xử lý phản ánh" in str(seen["title"])
    assert seen["cases"] == ["PA-2026-000005", "PA-2026-000001"]
    assert seen["after_search"] == ["PA-2026-000005"] and "code=PA-2026-000005" in str(seen["search_url"])
    assert seen["photo_loaded"] is True
    assert "Không tìm thấy phản ánh nào" in str(seen["confidential_page"])
    assert "PA-2026-000002" not in str(seen["cases"])
    assert (ARTIFACTS / "portal.png").read_bytes()[:4] == b"\x89PNG"
