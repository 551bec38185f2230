"""The web chat at `/`, driven in headless Chromium (Debian's chromium + chromedriver) against a real server.

Skipped when the browser, its driver or selenium is missing. One browser serves the whole module.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
    pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is not installed", allow_module_level=True)
try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # pragma: no cover - depends on the environment
    pytest.skip(f"selenium is not importable: {e}", allow_module_level=True)

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France? Answer in one sentence."
SCREENSHOT = Path("/tmp/taide-web.png")
SCREENSHOT_MOBILE = Path("/tmp/taide-web-mobile.png")

# Wraps window.fetch so the test can read every request body the page sends.
RECORD_FETCH = """
window.__bodies = [];
window.__statuses = [];
const original = window.fetch;
window.fetch = function (input, init) {
  if (init && typeof init.body === "string") window.__bodies.push(JSON.parse(init.body));
  return original.apply(this, arguments).then((r) => { window.__statuses.push(r.status); return r; });
};
"""


def _serve(engine, **config):
    from taide.serve import ServeConfig, create_app

    return LiveServer(create_app(engine, ServeConfig(**config)))  # an engine passed in is not closed by the app


@pytest.fixture(scope="module")
def server(smol_llamacpp):
    with _serve(smol_llamacpp) as live:
        live.engine = smol_llamacpp
        yield live


@pytest.fixture(scope="module")
def key_server(smol_llamacpp):
    with _serve(smol_llamacpp, api_key="secret") as live:
        yield live


@pytest.fixture(scope="module")
def driver():
    profile = tempfile.mkdtemp(prefix="taide-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--disable-extensions", "--window-size=1280,900",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    except WebDriverException as e:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"headless chromium did not start: {e.msg}")
    browser.set_window_size(1280, 900)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


# --- helpers ---

def _get(url: str, key: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


def wait(driver, condition, timeout: float = 30, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
                         ).until(lambda d: condition(d), message)


def open_page(driver, url: str, model: str | None = None):
    """Load the page, wait for the model list (when ``model`` is given) and record fetch bodies."""
    driver.get(url + "/")
    if model is not None:
        wait(driver, lambda d: model in model_options(d),
             message="the model picker never listed the model")
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks button[data-task]"),
             message="no task buttons")
    driver.execute_script(RECORD_FETCH)


def model_options(driver) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('#model option'), (o) => o.value)")


def set_value(driver, element_id: str, value: str):
    element = driver.find_element(By.ID, element_id)
    element.clear()
    if value:
        element.send_keys(value)
    return element


def bodies(driver) -> list[dict]:
    return [b for b in driver.execute_script("return window.__bodies") if "messages" in b]


def messages(driver, kind: str | None = None):
    return driver.find_elements(By.CSS_SELECTOR, "#messages .msg" + (f".{kind}" if kind else ""))


def state(driver) -> str:
    return driver.execute_script("return document.body.dataset.state")


def wait_answer(driver, before: int, timeout: float = 60) -> str:
    """Wait for a new assistant bubble and for the page to be idle again; return the answer text."""
    wait(driver, lambda d: len(messages(d, "assistant")) > before and state(d) == "idle", timeout,
         "the answer never finished")
    return messages(driver, "assistant")[-1].find_element(By.CSS_SELECTOR, ".text").text


def ask(driver, text: str, temperature: str = "0", max_tokens: str = "32", enter: bool = False) -> str:
    set_value(driver, "temperature", temperature)
    set_value(driver, "max-tokens", max_tokens)
    before = len(messages(driver, "assistant"))
    box = set_value(driver, "input", text)
    if enter:
        box.send_keys(Keys.ENTER)
    else:
        driver.find_element(By.ID, "send").click()
    return wait_answer(driver, before)


def model_id(server) -> str:
    return _get(server.url + "/v1/models")["data"][0]["id"]


# --- tests ---

def test_page_loads_models_and_tasks(driver, server):
    model = model_id(server)
    open_page(driver, server.url, model)
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-Hant-TW"
    assert model_options(driver) == [model]
    tasks = {b.get_attribute("data-task"): b.text for b in driver.find_elements(By.CSS_SELECTOR, "#tasks button")}
    assert tasks == {"article": "寫文章", "letter": "寫信", "summary": "摘要", "zh2en": "中翻英", "en2zh": "英翻中"}
    expected_system = _get(server.url + "/v1/models")["data"][0]["taide"]["system_prompt"] or ""
    assert driver.find_element(By.ID, "system").get_attribute("value") == expected_system
    assert driver.find_element(By.ID, "send").text == "送出"
    assert driver.find_element(By.ID, "stop").text == "停止"
    assert not driver.find_element(By.ID, "send").get_attribute("disabled")
    assert driver.find_element(By.ID, "stop").get_attribute("disabled")
    assert state(driver) == "idle"
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_chat_streams_and_keeps_history(driver, server):
    open_page(driver, server.url, model_id(server))
    # watch the bubble grow while it streams: record every distinct text the .text element shows
    answer = ask(driver, QUESTION, enter=True)
    assert "Paris" in answer
    sent = bodies(driver)
    assert len(sent) == 1
    assert sent[0]["stream"] is True and sent[0]["temperature"] == 0 and sent[0]["max_tokens"] == 32
    assert sent[0]["messages"][-1] == {"role": "user", "content": QUESTION}
    assert not driver.find_element(By.ID, "input").get_attribute("value")

    second = ask(driver, "And what is the capital of Germany?", max_tokens="12")
    assert second.strip()
    assert [m.get_attribute("class") for m in messages(driver)] == [
        "msg user", "msg assistant", "msg user", "msg assistant"]
    turns = [m for m in bodies(driver)[-1]["messages"] if m["role"] != "system"]
    assert turns == [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": answer},
                     {"role": "user", "content": "And what is the capital of Germany?"}]
    # Shift+Enter is a newline, not a send
    box = set_value(driver, "input", "line one")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("line two")
    assert box.get_attribute("value") == "line one\nline two"
    assert len(bodies(driver)) == 2


def test_task_preset_after_new_chat(driver, server):
    open_page(driver, server.url, model_id(server))
    ask(driver, "Hi!", max_tokens="4")
    driver.find_element(By.ID, "new-chat").click()
    assert messages(driver) == []
    zh2en = next(t for t in _get(server.url + "/v1/presets")["tasks"] if t["name"] == "zh2en")
    text = "今天天氣很好，我們去公園散步。"
    set_value(driver, "temperature", "0")
    set_value(driver, "max-tokens", "12")
    set_value(driver, "input", text)
    before = len(messages(driver, "assistant"))
    driver.find_element(By.CSS_SELECTOR, '#tasks button[data-task="zh2en"]').click()
    answer = wait_answer(driver, before)
    assert answer.strip()
    sent = bodies(driver)[-1]["messages"]
    turns = [m for m in sent if m["role"] != "system"]
    assert turns == [{"role": "user", "content": zh2en["instruction"].replace("{text}", text)}]  # history was reset
    assert zh2en["instruction"].split("{text}")[0].strip() in turns[0]["content"] and text in turns[0]["content"]
    assert text in messages(driver, "user")[-1].text

    # an empty box uses the task's example
    set_value(driver, "max-tokens", "4")
    before = len(messages(driver, "assistant"))
    driver.find_element(By.CSS_SELECTOR, '#tasks button[data-task="zh2en"]').click()
    wait_answer(driver, before)
    assert bodies(driver)[-1]["messages"][-1]["content"] == zh2en["instruction"].replace("{text}", zh2en["example"])


def test_system_prompt_is_sent_first(driver, server):
    open_page(driver, server.url, model_id(server))
    presets = _get(server.url + "/v1/presets")
    driver.find_element(By.ID, "preset-taide").click()
    assert driver.find_element(By.ID, "system").get_attribute("value") == presets["system_prompts"]["taide"]
    custom = "You are a pirate. Always answer like a pirate."
    set_value(driver, "system", custom)
    ask(driver, "Hello, who are you?", max_tokens="8")
    sent = bodies(driver)[-1]["messages"]
    assert sent[0] == {"role": "system", "content": custom}
    assert sent[1:] == [{"role": "user", "content": "Hello, who are you?"}]


def test_copy_button_gives_feedback(driver, server):
    open_page(driver, server.url, model_id(server))
    ask(driver, QUESTION, max_tokens="12")
    button = messages(driver, "assistant")[-1].find_element(By.CSS_SELECTOR, "button.copy")
    assert button.text == "複製"
    button.click()
    wait(driver, lambda d: button.text == "已複製", 5, "the copy button never said 已複製")

    # with the clipboard API refusing, the hidden-textarea fallback must still copy and say so
    driver.execute_script("""
      window.__copied = [];
      const exec = document.execCommand.bind(document);
      document.execCommand = (cmd, ...rest) => {
        if (cmd === "copy") window.__copied.push(document.activeElement && document.activeElement.value);
        return exec(cmd, ...rest);
      };
      if (navigator.clipboard) navigator.clipboard.writeText = () => Promise.reject(new Error("denied"));
    """)
    wait(driver, lambda d: button.text == "複製", 5, "the copy button never reset")
    button.click()
    wait(driver, lambda d: button.text == "已複製", 5, "the fallback gave no feedback")
    answer = messages(driver, "assistant")[-1].find_element(By.CSS_SELECTOR, ".text").text
    assert driver.execute_script("return window.__copied") == [answer]


def test_api_key(driver, key_server):
    driver.get(key_server.url + "/")
    wait(driver, lambda d: messages(d, "error"), 10, "no error shown for the 401")
    assert "401" in messages(driver, "error")[0].text
    key_box = driver.find_element(By.ID, "api-key")
    assert key_box.is_displayed()
    assert "needed" in driver.find_element(By.ID, "key-field").get_attribute("class")

    key_box.send_keys("wrong", Keys.ENTER)
    wait(driver, lambda d: len(messages(d, "error")) >= 2, 10, "a wrong key gave no error")

    set_value(driver, "api-key", "secret").send_keys(Keys.ENTER)
    model = _get(key_server.url + "/v1/models", key="secret")["data"][0]["id"]
    wait(driver, lambda d: model in model_options(d),
         10, "the models never loaded with the key")
    assert "needed" not in driver.find_element(By.ID, "key-field").get_attribute("class")
    assert driver.execute_script("return localStorage.getItem('taide.apiKey')") == "secret"
    driver.execute_script(RECORD_FETCH)
    errors = len(messages(driver, "error"))
    assert "Paris" in ask(driver, QUESTION)
    assert len(messages(driver, "error")) == errors
    assert driver.execute_script("return window.__statuses") == [200]

    # the key survives a reload
    open_page(driver, key_server.url, model)
    assert driver.find_element(By.ID, "api-key").get_attribute("value") == "secret"
    assert messages(driver, "error") == []


def test_stop_cancels_the_request(driver, server):
    open_page(driver, server.url, model_id(server))
    cancelled = server.engine.stats()["cancelled"]
    set_value(driver, "temperature", "0.8")
    set_value(driver, "max-tokens", "1500")  # the fixture's context is 2048
    set_value(driver, "input", "Write a very long story, at least two thousand words, about a dragon who "
                               "learns to cook. Describe every chapter in detail.")
    driver.find_element(By.ID, "send").click()
    assert state(driver) == "streaming", [m.text for m in messages(driver, "error")]
    assert driver.find_element(By.ID, "send").get_attribute("disabled")
    wait(driver, lambda d: messages(d, "assistant")[-1].find_element(By.CSS_SELECTOR, ".text").text.strip(), 30,
         "no text streamed")
    assert state(driver) == "streaming", "the answer finished before it could be stopped"
    stopped_at = time.monotonic()
    driver.find_element(By.ID, "stop").click()
    wait(driver, lambda d: state(d) == "idle", 3, "the page did not go idle after 停止")
    assert time.monotonic() - stopped_at < 3
    assert "已停止" in messages(driver, "assistant")[-1].find_element(By.CSS_SELECTOR, ".meta").text
    assert not driver.find_element(By.ID, "send").get_attribute("disabled")
    # the server notices the closed connection when it next writes (the next token), so on a loaded
    # machine this can take a while; normally it is well under a second
    deadline = time.monotonic() + 30
    while server.engine.stats()["cancelled"] <= cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.engine.stats()["cancelled"] > cancelled, "the server kept generating after 停止"

    # the stopped answer stays in the conversation and the next turn works
    answer = ask(driver, QUESTION, max_tokens="8")
    assert answer.strip()
    roles = [m["role"] for m in bodies(driver)[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]


def test_screenshot(driver, server):
    open_page(driver, server.url, model_id(server))
    driver.find_element(By.ID, "preset-taide").click()
    ask(driver, QUESTION)
    set_value(driver, "input", "今天天氣很好。")
    before = len(messages(driver, "assistant"))
    driver.find_element(By.CSS_SELECTOR, '#tasks button[data-task="zh2en"]').click()
    wait_answer(driver, before)
    SCREENSHOT.unlink(missing_ok=True)
    assert driver.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000

    # a phone-sized window: nothing overflows sideways and the composer stays usable
    try:
        driver.set_window_size(390, 844)
        wait(driver, lambda d: d.execute_script("return window.innerWidth") <= 400, 5)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
        assert driver.find_element(By.ID, "send").is_displayed()
        assert driver.find_element(By.ID, "input").is_displayed()
        assert not driver.find_element(By.ID, "system").is_displayed()  # tucked behind 設定
        driver.find_element(By.ID, "settings-toggle").click()
        assert driver.find_element(By.ID, "system").is_displayed()
        driver.find_element(By.ID, "settings-toggle").click()
        driver.save_screenshot(str(SCREENSHOT_MOBILE))
    except TimeoutException:
        pytest.fail("the window did not shrink to a phone's width")
    finally:
        driver.set_window_size(1280, 900)
