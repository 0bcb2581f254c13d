"""The page that ``lmforge serve`` ships at ``/``, driven in a real browser (Playwright over the
system's Chromium): chat, completion with token probabilities, the models and catalogue tabs,
the Stop button; no console errors and no request to any other host.

Screenshots of each stage go to the test's ``tmp_path`` and, for a person to look at, to
``/tmp/page-shots/``.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH for playwright to drive", allow_module_level=True)

from lmforge.serve.catalogue import CATALOGUE_PATH  # noqa: E402

SHOTS = Path("/tmp/page-shots")
SERVED = {"tri", "gpt-char", "chat", "bert"}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Watched:
    """A page with its console errors, uncaught exceptions and requests recorded."""

    def __init__(self, browser, server, shots: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.host = urlsplit(server.url).netloc
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str, full_page: bool = True) -> None:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        shutil.copy(path, SHOTS / path.name)

    def check_clean(self, expected: tuple[str, ...] = ()) -> None:
        """No console error but the ``expected`` ones (Chromium logs each 4xx response), and no
        request to another host."""
        errors = [e for e in self.errors if not any(x in e for x in expected)]
        assert errors == [], f"console errors: {errors}"
        foreign = [u for u in self.urls if urlsplit(u).netloc != self.host]
        assert foreign == [], f"requests to other hosts: {foreign}"


@pytest.fixture
def watched(browser, server, tmp_path):
    w = Watched(browser, server, tmp_path / "shots")
    yield w
    w.context.close()


def catalogue_row(row_id: str) -> dict:
    rows = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))["rows"]
    return next(r for r in rows if r["id"] == row_id)


def wait_idle(page) -> None:
    """Until the request in flight, if any, has ended (Stop is disabled again)."""
    page.wait_for_selector("#stop:disabled", state="attached")


def test_page_chat_completion_models_and_catalogue(server, watched):
    page = watched.page
    page.goto(server.url + "/")
    assert page.title() == "lmforge"
    page.wait_for_selector('#model-select option[value="chat"]', state="attached")
    watched.shot("01-loaded")

    # chat: the tuned model answers its question, streamed into an assistant bubble
    page.select_option("#model-select", "chat")
    assert page.is_checked("#mode-chat")
    page.fill("#temperature", "0")
    page.fill("#chat-input", "item3 colour ?")
    page.click("#send")
    page.wait_for_function(
        "() => (document.querySelector('.msg.assistant .text')?.textContent || '').trim()"
    )
    wait_idle(page)
    assert page.locator(".msg.user .text").inner_text() == "item3 colour ?"
    assert page.locator(".msg.assistant .text").inner_text().strip() in ("red", "blue")
    watched.shot("02-chat")
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0

    # completion with token probabilities: a plain LM switches the playground to completion
    page.select_option("#model-select", "gpt-char")
    assert page.is_checked("#mode-completion") and page.is_disabled("#mode-chat")
    page.fill("#prompt", "the cat")
    page.fill("#temperature", "1")
    page.fill("#max-tokens", "24")
    page.fill("#seed", "1")
    page.check("#show-probs")
    page.click("#send")
    page.wait_for_selector("#completion-output .tok")
    wait_idle(page)
    tokens = page.locator("#completion-output .tok")
    assert tokens.count() > 0
    for k in range(tokens.count()):
        p = float(tokens.nth(k).get_attribute("data-p"))
        assert 0 < p <= 1
        assert "%" in tokens.nth(k).get_attribute("title")
    assert page.locator("#completion-output .prompt-text").inner_text() == "the cat"
    tokens.first.click()
    assert page.locator("#token-info tbody tr").count() >= 1
    watched.shot("03-completion")

    # the server's error message, shown in the page
    page.fill("#max-tokens", "5000")
    page.click("#send")
    page.wait_for_selector("#error", state="visible")
    assert "max_tokens" in page.inner_text("#error-text")
    wait_idle(page)
    watched.shot("03b-error")
    page.click("#error-close")
    page.fill("#max-tokens", "24")

    # models: the four served ids; a row's details and its way back to the playground
    page.click("#tab-models")
    page.wait_for_selector("#models-table tbody tr")
    ids = set(
        page.locator("#models-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)")
    )
    assert ids == SERVED
    page.click('#models-table tbody tr[data-id="chat"]')
    details = page.locator("#model-details")
    assert "chat_template" in details.inner_text() and "capabilities" in details.inner_text()
    watched.shot("04-models")
    page.click("#try-model")
    assert page.is_visible("#panel-chat") and page.input_value("#model-select") == "chat"
    assert page.is_checked("#mode-chat")

    # catalogue: industrial rows first; GPT-4's details and GPT-2's how-to
    page.click("#tab-catalogue")
    page.wait_for_selector('.details-btn[data-id="gpt-4"]')
    order = page.locator("#catalogue-table tbody tr[data-id]").evaluate_all(
        "rs => rs.map(r => r.dataset.id)"
    )
    assert order.index("gpt-4") < order.index("gpt-2")
    watched.shot("05-catalogue")
    gpt4 = catalogue_row("gpt-4")
    page.click('.details-btn[data-id="gpt-4"]')
    dialog = page.locator("#details")
    dialog.wait_for(state="visible")
    text = dialog.inner_text()
    assert gpt4["parameters_text"] in text and gpt4["summary"] in text
    assert page.locator(f'#details a[href="{gpt4["source"]}"]').count() == 1
    watched.shot("06-details-gpt4", full_page=False)
    page.click("#details-close")
    dialog.wait_for(state="hidden")
    gpt2 = catalogue_row("gpt-2")
    page.click('.details-btn[data-id="gpt-2"]')
    dialog.wait_for(state="visible")
    for step in ("train", "evaluate", "serve"):
        assert page.locator(f"#details pre.how-{step}").inner_text() == gpt2["how"][step]
    local = page.locator("#details table.local").inner_text()
    assert "gpt-char" in local
    watched.shot("07-details-gpt2", full_page=False)
    watched.check_clean(expected=("status of 400",))


def health(server, model: str) -> dict:
    with urllib.request.urlopen(server.url + "/health", timeout=5) as response:
        return json.load(response)["models"][model]


def test_stop_aborts_a_long_completion_and_frees_the_row(server, watched, monkeypatch):
    # Make the generation long for sure: the tiny test model writes its whole context in a
    # fraction of a second, and, untrained, may write its end token at any step. So slow its
    # decoding steps down and let no token end it (it runs to its context, about 6 s).
    served = server.models.models["gpt-char"]
    step = served.engine._step

    def slow_step():
        step()
        time.sleep(0.1)

    monkeypatch.setattr(served.engine, "_step", slow_step)
    monkeypatch.setattr(served, "stop_ids", lambda chat: frozenset())
    page = watched.page
    page.goto(server.url + "/")
    page.wait_for_selector('#model-select option[value="gpt-char"]', state="attached")
    page.select_option("#model-select", "gpt-char")
    page.fill("#prompt", "the")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "400")
    page.click("#send")
    page.wait_for_function(
        "() => document.querySelector('#completion-output .generated').textContent.length >= 3"
    )
    assert page.is_enabled("#stop")
    page.click("#stop")
    wait_idle(page)
    assert page.inner_text("#status") == "stopped"
    written = page.inner_text("#completion-output .generated")
    watched.shot("08-stopped")
    deadline = time.monotonic() + 5
    load = health(server, "gpt-char")
    while load != {"active": 0, "waiting": 0} and time.monotonic() < deadline:
        time.sleep(0.05)
        load = health(server, "gpt-char")
    assert load == {"active": 0, "waiting": 0}
    assert page.inner_text("#completion-output .generated") == written  # nothing more came
    assert not page.is_visible("#error")
    watched.check_clean()


def test_api_key_is_asked_for_kept_and_sent(browser, folders, start_server, tmp_path):
    running = start_server(folders, api_key="sekret")
    w = Watched(browser, running, tmp_path / "shots")
    try:
        page = w.page
        page.goto(running.url + "/")  # the page is public, the API is not
        page.wait_for_selector("#error", state="visible")
        assert "API key" in page.inner_text("#error-text")
        w.shot("09-needs-key")
        page.fill("#api-key", "sekret")
        page.press("#api-key", "Tab")  # a change event: saved, models listed again
        page.wait_for_selector('#model-select option[value="chat"]', state="attached")
        assert not page.is_visible("#error")
        assert page.evaluate("localStorage.getItem('lmforge.apiKey')") == "sekret"
        page.reload()  # kept across visits
        page.wait_for_selector('#model-select option[value="chat"]', state="attached")
        assert page.input_value("#api-key") == "sekret" and not page.is_visible("#error")
        w.check_clean(expected=("status of 401",))
    finally:
        w.context.close()
        running.stop()
