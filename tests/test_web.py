"""The web page in headless Chromium: fuse the built-in models and watch members, then the fused answer, arrive."""

import os
import shutil
import subprocess
import sys

import pytest

from gemfuse.testing.upstream import free_port, wait_until_up

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.heavy, pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (make test installs them)")]


@pytest.fixture
def page_server(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GEMFUSE_API_KEY"}
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    proc = subprocess.Popen([gemfuse, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/health", proc)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_fusing_the_builtin_models_in_the_page(page_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(page_server)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#target option")) > 3)
    Select(browser.find_element(By.ID, "target")).select_by_visible_text("fusion/default")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("What is the capital of France? Answer in one sentence.")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#members .member")) == 2)
    wait.until(lambda d: "cost $" in d.find_element(By.ID, "stats").text)
    wait.until(ready.element_to_be_clickable((By.ID, "send")))
    members = {m.get_attribute("data-member"): m.text for m in browser.find_elements(By.CSS_SELECTOR, ".member")}
    assert set(members) == {"smollm2-135m", "gemma-3-270m"}
    assert all("tok" in text for text in members.values()), "each card shows tokens and latency"
    answer = browser.find_element(By.ID, "answer").text
    assert answer.strip(), "the fused answer was streamed into the page"
    assert "best-of by smollm2-135m" in browser.find_element(By.ID, "judge").text
    assert browser.find_element(By.ID, "error").text == ""
    bars = browser.find_elements(By.CSS_SELECTOR, ".member .bar span")
    assert all(float(b.value_of_css_property("width").removesuffix("px")) > 0 for b in bars)
    shot = tmp_path / "fusion.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
