"""``lmforge serve`` over an any-to-any folder: OpenAI content parts in (an ``image_url`` data
URI, ``input_audio`` WAV), text, PNG images and WAV sound out, through the ``openai`` client
and httpx against a running server; every bad part refused with a 400 that names it; and the
page, which attaches a PNG and shows what comes back."""

from __future__ import annotations

import base64
import io
import shutil
import struct
import wave
import zlib
from dataclasses import replace

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("sklearn", reason="the omni image data are scikit-learn's digits")
openai = pytest.importorskip("openai", reason="the openai client is not installed")

from conftest import one_thread  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lmforge.omni.chat import user_turn  # noqa: E402
from lmforge.omni.image import load_images, save_png  # noqa: E402
from lmforge.omni.speech import load_speech, write_wav  # noqa: E402
from lmforge.omni.train import OmniConfig, train_omni  # noqa: E402
from lmforge.omni.vocab import encode_conversation  # noqa: E402
from lmforge.serve.app import ServeSettings, create_app  # noqa: E402
from lmforge.serve.models import ModelSet, ServedOmni  # noqa: E402
from lmforge.serve.omni import MAX_AUDIO_BYTES, MAX_IMAGE_BYTES  # noqa: E402

# tests/omni/test_omni.py's TINY with speech beside the image, trained shorter (about 10 s on
# one thread): enough to answer "Draw a seven." with an image and "Say seven." with a sound.
TINY = OmniConfig(
    modalities=("image", "speech"),
    tokenizers={"image": {"steps": 50}, "speech": {"kmeans_iters": 10, "codebook_size": 64}},
    augment={"image": 1, "speech": 0},  # no speech copies: they take some 10 s to make
    decoder={"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 128, "max_seq_len": 96},
    per_task=300,
    steps=120,
    batch_size=16,
    lr=3e-3,
    warmup_steps=20,
)


@pytest.fixture(scope="module")
def omni_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("omni-serve") / "omni"
    with one_thread():
        train_omni(folder, TINY, say=lambda _: None, progress=False)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A held-out digit as a PNG and a held-out word as a WAV: {name: (path, bytes)}."""
    root = tmp_path_factory.mktemp("omni-media")
    save_png(root / "digit.png", load_images("test").x[0], scale=10)
    write_wav(root / "word.wav", load_speech("test").x[0])
    return {name: (root / name, (root / name).read_bytes()) for name in ("digit.png", "word.wav")}


@pytest.fixture(scope="module")
def running(omni_folder, start_server):
    server = start_server({"omni": omni_folder})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(running):
    return openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def app(omni_folder, folders):
    """In process, with a body limit above the part limits: the image-only model holds the
    same folder without its speech tokenizer; "chat" is a text chat model."""
    models = ModelSet([("omni", omni_folder), ("chat", folders["chat"])])
    omni = models.models["omni"].omni
    models.models["image-only"] = ServedOmni(
        "image-only", omni_folder, replace(omni, tokenizers={"image": omni.tokenizers["image"]})
    )
    with TestClient(create_app(models, ServeSettings(max_body=4 << 20)), "http://127.0.0.1") as c:
        yield c


def image_part(png: bytes, kind: str = "image/png") -> dict:
    url = f"data:{kind};base64,{base64.b64encode(png).decode()}"
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(wav: bytes, form: str = "wav") -> dict:
    data = base64.b64encode(wav).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": form}}


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def text(words: str) -> dict:
    return {"type": "text", "text": words}


# -- through the openai client and httpx ---------------------------------------------------------


def test_models_list_says_the_omni_model_takes_and_gives_image_and_speech(client):
    info = client.models.retrieve("omni").model_dump()
    assert info["family"] == "omni" and info["context_length"] == 96
    assert set(info["capabilities"]) == {
        "chat", "image-input", "speech-input", "image-output", "speech-output",
    }  # fmt: skip
    assert info["modalities"] == {
        "input": ["text", "image", "speech"],
        "output": ["text", "image", "speech"],
    }


def test_image_and_sound_parts_get_a_text_reply_over_the_turn_user_turn_makes(
    client, omni_folder, files
):
    (png_path, png), (wav_path, wav) = files["digit.png"], files["word.wav"]
    served = ServedOmni.load("omni", omni_folder)
    asked = [(image_part(png), {"image": png_path}), (audio_part(wav), {"audio": wav_path})]
    for part, given in asked:
        out = client.chat.completions.create(
            model="omni", messages=user(text("What is this?"), part), max_tokens=8
        )
        assert isinstance(out.choices[0].message.content, str)
        # the part's bytes become the same turn as `lmforge omni chat --image/--audio` makes
        turn = user_turn(served.omni, "What is this?", **given)
        assert out.usage.prompt_tokens == len(encode_conversation(served.omni.vocab, [turn])[0]) + 1
    # the item stands before the text, wherever the part stood
    assert [type(p).__name__ for p in turn["content"]] == ["Item", "str"]


def test_asking_for_an_image_gives_a_png_data_uri(client):
    out = client.chat.completions.create(model="omni", messages=user(text("Draw a seven.")))
    images = out.choices[0].message.model_dump()["images"]
    assert len(images) == 1 and images[0]["type"] == "image_url"
    head, _, data = images[0]["image_url"]["url"].partition(",")
    assert head == "data:image/png;base64"
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
        assert img.format == "PNG" and img.size == (128, 128)  # 8 x 8, each pixel 16 x 16


def test_asking_for_speech_gives_openai_audio_with_a_wav(running):
    import httpx

    body = {"model": "omni", "messages": [{"role": "user", "content": "Say seven."}]}
    reply = httpx.post(running.url + "/v1/chat/completions", json=body, timeout=60).json()
    message = reply["choices"][0]["message"]
    audio = message["audio"]
    assert set(audio) == {"id", "data", "format", "transcript", "expires_at"}
    assert audio["format"] == "wav" and audio["transcript"] == message["content"]
    with wave.open(io.BytesIO(base64.b64decode(audio["data"]))) as f:
        assert f.getframerate() == 8000 and f.getnchannels() == 1 and f.getnframes() > 0
    assert reply["usage"]["completion_tokens"] == 26  # <speech>, 24 codes, </speech>


# -- refusals -------------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (a huge blank image compresses to a few bytes)."""
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    ihdr = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"\0\0\0\0IEND\xaeB`\x82"


BAD_BASE64 = "data:image/png;base64,@@@"
REFUSED = {
    "an image URL": (
        lambda f: user({"type": "image_url", "image_url": {"url": "https://example.com/7.png"}}),
        "messages[0].content[0]",
        "fetches no URL",
    ),
    "another data URI": (
        lambda f: user(image_part(b"hello", "text/plain")),
        "messages[0].content[0]",
        "data:image/png;base64",
    ),
    "bad base64": (
        lambda f: user(text("What?"), {"type": "image_url", "image_url": {"url": BAD_BASE64}}),
        "messages[0].content[1]",
        "not valid base64",
    ),
    "not a PNG": (
        lambda f: user(image_part(b"GIF89a, no")),
        "messages[0].content[0]",
        "does not decode",
    ),
    "a huge PNG": (
        lambda f: user(image_part(png_claiming(5000, 5000))),
        "messages[0].content[0]",
        "5000 x 5000 pixels, over this server's limit of 16,777,216",
    ),
    "a PNG over PIL's limit": (
        lambda f: user(image_part(png_claiming(20_000, 20_000))),
        "messages[0].content[0]",
        "the image is over 178,956,970 pixels",
    ),
    "an oversize image": (
        lambda f: user(image_part(b"\0" * (MAX_IMAGE_BYTES + 1))),
        "messages[0].content[0]",
        "524,289 bytes, over this server's limit of 524,288",
    ),
    "an oversize sound": (
        lambda f: user(audio_part(b"\0" * (MAX_AUDIO_BYTES + 1))),
        "messages[0].content[0]",
        "1,048,577 bytes, over this server's limit of 1,048,576",
    ),
    "a WAV that does not decode": (
        lambda f: user(text("Hi"), audio_part(b"RIFF\0\0\0\0WAVEjunk")),
        "messages[0].content",
        "messages[0]: the WAV: not a PCM WAV file",
    ),
    "mp3": (
        lambda f: user(audio_part(f["word.wav"][1], "mp3")),
        "messages[0].content[0]",
        "format 'mp3'",
    ),
    "an unknown part": (
        lambda f: user({"type": "video_url", "video_url": {"url": "data:,"}}),
        "messages[0].content[0]",
        "not a content part",
    ),
    "two images": (
        lambda f: user(image_part(f["digit.png"][1]), image_part(f["digit.png"][1])),
        "messages[0]",
        "at most one image and one sound",
    ),
    "an image from the assistant": (
        lambda f: [
            *user(text("Draw a one.")),
            {"role": "assistant", "content": [image_part(f["digit.png"][1])]},
            *user(text("Again.")),
        ],
        "messages[1]",
        "only a user message",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_part_is_refused_naming_it(app, files, case):
    messages, param, words = REFUSED[case]
    response = app.post("/v1/chat/completions", json={"model": "omni", "messages": messages(files)})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]


def test_what_a_model_cannot_take_is_refused(app, files):
    def ask(model, messages, **extra):
        body = {"model": model, "messages": messages, **extra}
        response = app.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, response.text
        return response.json()["error"]["message"]

    wav = audio_part(files["word.wav"][1])
    assert "has no speech tokenizer" in ask("image-only", user(wav))
    said = ask("chat", user(text("item3 colour ?"), image_part(files["digit.png"][1])))
    assert "messages[0].content[1] is an image_url part, and this model reads text only" in said
    assert "answers whole" in ask("omni", user(text("Say seven.")), stream=True)
    assert "chat/completions only" in app.post("/v1/completions", json={"model": "omni"}).text
    # text parts still reach a text chat model
    response = app.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": user(text("item3 "), text("colour ?")), "max_tokens": 3},
    )
    assert response.status_code == 200, response.text


# -- the page -------------------------------------------------------------------------------------


def test_page_sends_an_attached_png_and_shows_the_reply(running, files, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on PATH for playwright to drive")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(30_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(running.url + "/")
        page.wait_for_selector('#model-select option[value="omni"]', state="attached")
        page.select_option("#model-select", "omni")
        assert page.is_visible("#attach-image") and page.is_visible("#attach-audio")
        page.fill("#temperature", "0")
        page.fill("#chat-input", "Say this digit.")
        page.set_input_files("#attach-image", str(files["digit.png"][0]))
        page.click("#send")
        page.wait_for_selector(".msg.assistant img, .msg.assistant audio")
        page.wait_for_selector("#stop:disabled", state="attached")
        assert page.locator(".msg.user img").count() == 1  # the attached image, shown
        shown = page.locator(".msg.assistant img, .msg.assistant audio").first
        assert shown.get_attribute("src").startswith(("data:image/png;base64,", "data:audio/wav"))
        page.screenshot(path=str(tmp_path / "omni-page.png"), full_page=True)
        page.fill("#chat-input", "Draw a seven.")  # a second turn: the first one goes back too
        page.click("#send")
        page.wait_for_function("() => document.querySelectorAll('.msg.assistant').length == 2")
        browser.close()
    assert errors == []
