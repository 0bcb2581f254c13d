"""The any-to-any model end to end: a tiny train beats chance on image -> text, the folder loads
back, and the commands keep their contracts."""

import json
import subprocess
import sys

import pytest
import torch

from lmforge.errors import CheckpointError, ConfigError
from lmforge.folders import load_model
from lmforge.omni.evaluate import evaluate_omni
from lmforge.omni.model import Omni, item_temperatures
from lmforge.omni.train import OmniConfig, settings, train_omni

pytest.importorskip("sklearn", reason="the omni image data are scikit-learn's digits")

TINY = OmniConfig(
    modalities=("image",),
    tokenizers={"image": {"steps": 300}},
    decoder={"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 128, "max_seq_len": 64},
    per_task=1000,
    steps=500,
    batch_size=16,
    lr=3e-3,
    warmup_steps=20,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("omni") / "tiny"
    said = []
    train_omni(folder, TINY, say=said.append, progress=False)
    return folder, said


def test_tiny_model_beats_chance_on_image_to_text(tiny, tmp_path):
    folder, said = tiny
    assert "on a 2-core CPU" in said[0] and any("1/3" in line for line in said)
    rows = evaluate_omni(folder, tmp_path / "eval.json", tmp_path / "grid.png", say=lambda _: 0)
    by_task = {row["task"]: row for row in rows}
    assert set(by_task) == {"image->text", "text->image"}
    assert by_task["image->text"]["n"] == 357  # every held-out digit
    assert by_task["image->text"]["score"] > 0.3  # chance is 0.1
    assert by_task["image->text"]["baseline"] > 0.95  # the SVC judge on raw pixels
    written = json.loads((tmp_path / "eval.json").read_text())
    assert [set(row) >= {"task", "score", "n", "baseline"} for row in written["rows"]] == [True] * 2
    assert written["item_temperature"] == {"image": 0.7}  # each modality's own
    assert item_temperatures()["speech"] < 0.5 and item_temperatures(1.0)["image"] == 1.0
    image = written["tokenizers"]["image"]  # the tokenizer's own round trip, judged
    assert image["mse"] < image["mse_mean_image"] and image["judge_reconstructed"] > 0.8
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_folder_loads_back_and_keeps_its_tokenizers(tiny, tmp_path):
    folder, _ = tiny
    omni = Omni.load(folder)
    assert omni.decoder.config.vocab_size == omni.vocab.vocab_size
    said = []
    again = tmp_path / "again"
    import shutil

    shutil.copytree(folder / "image", again / "image")  # a kept tokenizer is not trained again
    train_omni(again, OmniConfig(**{**TINY.__dict__, "steps": 2}), say=said.append, progress=False)
    assert any("(kept)" in line for line in said)
    assert Omni.load(again).tokenizers["image"].encode(torch.zeros(1, 8, 8)).tolist() == (
        omni.tokenizers["image"].encode(torch.zeros(1, 8, 8)).tolist()
    )
    with pytest.raises(CheckpointError, match="not a language model; use `lmforge omni"):
        load_model(folder)
    with pytest.raises(CheckpointError, match="omni-image-tokenizer"):
        Omni.load(folder / "image")


def test_settings_refuse_unknown_keys_and_modalities():
    with pytest.raises(ConfigError, match="valid keys"):
        settings({"step": 3})
    with pytest.raises(Exception, match="unknown modality 'smell'"):
        settings({"modalities": ["image", "smell"]})
    with pytest.raises(ConfigError, match="n_heads"):
        settings({"decoder": {"d_model": 30, "n_heads": 4}})
    with pytest.raises(ConfigError, match="tokenizers maps a modality"):
        settings({"modalities": ["image"], "tokenizers": {"speech": {}}})
    with pytest.raises(ConfigError, match="augment maps a modality to 0..16 copies"):
        settings({"augment": {"image": -1}})
    assert settings({"augment": {"image": 0}}).augment == {"image": 0}
    with pytest.raises(ConfigError, match="weights maps a task of"):
        settings({"weights": {"image->smell": 2}})
    with pytest.raises(ConfigError, match="must be in 0..10"):
        settings({"weights": {"text->image": -1}})
    with pytest.raises(ConfigError, match=r"noise maps a modality .* share in \[0, 1\)"):
        settings({"noise": {"speech": 1.5}})
    with pytest.raises(ConfigError, match="noise maps a modality"):
        settings({"modalities": ["image"], "noise": {"speech": 0.1}})
    assert settings({"noise": {"speech": 0.15}}).noise == {"speech": 0.15}
    with pytest.raises(Exception, match="unknown modality 'smell'"):
        settings({"given_loss": ["smell"]})
    assert settings({"given_loss": ["speech"]}).given_loss == ("speech",) and not TINY.given_loss
    with pytest.raises(ConfigError, match="named_cross must be true or false"):
        settings({"named_cross": "yes"})
    assert TINY.named_cross and not settings({"named_cross": False}).named_cross


def test_noise_replaces_only_the_codes_the_decoder_reads():
    from lmforge.omni.train import NoisyCodes

    class Fixed:  # each row: a user's item (ids 10..19, read), then the model's (written)
        def batch(self, step):
            inputs = torch.tensor([[1, *range(10, 20), 2, *range(10, 20), 3]] * 200)
            weights = torch.zeros(inputs.shape, dtype=torch.float)
            weights[:, 11:22] = 1  # the assistant's turn: targets from inputs[12] on
            return (inputs, inputs.roll(-1, 1), weights), True

    speech = list(range(10, 40))
    task = NoisyCodes(Fixed(), [(speech, 0.25)], seed=0)
    (inputs, targets, weights), reset = task.batch(5)
    (clean, clean_targets, clean_weights), _ = Fixed().batch(5)
    changed = inputs != clean
    assert reset and torch.equal(targets, clean_targets) and torch.equal(weights, clean_weights)
    assert not changed[:, 12:].any() and not changed[:, 0].any() and not changed[:, 11].any()
    assert 0.2 < changed[:, 1:11].float().mean() < 0.3  # about the share (a draw may repeat)
    assert torch.isin(inputs[changed], torch.tensor(speech)).all()
    assert torch.equal(task.batch(5)[0][0], inputs) and not torch.equal(task.batch(6)[0][0], inputs)


def test_weights_share_the_conversations_unequally():
    from lmforge.omni.image import load_images
    from lmforge.omni.tasks import Bank, item_names
    from lmforge.omni.train import draw

    items = load_images("test")
    banks = {
        "image": Bank(
            "image", torch.zeros(len(items), 16, dtype=torch.long), item_names("image", items)
        )
    }
    drawn = draw(["image->text", "text->image"], banks, 10, 0, {"text->image": 2.5})
    asks = [m for m in drawn if isinstance(m[0]["content"][0], str)]  # text -> image: a request
    assert len(drawn) == 35 and len(asks) == 25


def test_omni_chat_json_contract(tiny, tmp_path):
    folder, _ = tiny
    from lmforge.omni.image import load_images, save_png

    png = tmp_path / "digit.png"
    save_png(png, load_images("test").x[0], scale=10)
    out = subprocess.run(
        [sys.executable, "-m", "lmforge", "omni", "chat", str(folder), "--message",
         "What digit is this?", "--image", str(png), "--json", "--out-dir", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert set(reply) >= {"reply", "images", "audio"} and isinstance(reply["reply"], str)
    drawn = subprocess.run(
        [sys.executable, "-m", "lmforge", "omni", "chat", str(folder), "--message", "Draw a seven.",
         "--json", "--out-dir", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    images = json.loads(drawn.stdout)["images"]
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in images)
    cold = subprocess.run(
        [sys.executable, "-m", "lmforge", "omni", "chat", str(folder), "--message", "Draw a seven.",
         "--temperature", "-1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cold.returncode == 2 and "temperature must be a number >= 0" in cold.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "lmforge", "omni", "chat", str(folder), "--message", "hi",
         "--image", str(tmp_path / "nope.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2 and "nope.png" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_video_frames_are_written_with_the_image_tokenizers_ids():
    from lmforge.omni.image import ImageTokenizer, ImageTokenizerConfig, load_images
    from lmforge.omni.train import _vocab
    from lmforge.omni.video import VideoTokenizer, load_videos
    from lmforge.omni.vocab import Item

    image = ImageTokenizer(ImageTokenizerConfig(codebook_size=32, code_dim=8, channels=8))
    video = VideoTokenizer.from_image(image)
    items = {"image": load_images("test"), "video": load_videos("test", per_digit=1)}
    vocab = _vocab({"image": image, "video": video}, items)
    assert vocab.shared == {"video": ("image", 32)}
    codes = video.encode(items["video"].x[:1])[0].tolist()
    ids = vocab.item_ids(Item("video", tuple(codes)))
    window = codes[2:18]  # the first frame's window: image codes, with the image's ids
    assert ids[3:19] == vocab.item_ids(Item("image", tuple(window)))[1:-1]
    # an image tokenizer trained again since the video's was built: nothing is shared
    other = ImageTokenizer(ImageTokenizerConfig(codebook_size=32, code_dim=8, channels=8))
    assert _vocab({"image": other, "video": video}, items).shared == {}


def test_text_is_split_into_whole_words_unless_char_is_asked():
    from lmforge.omni.image import ImageTokenizer, ImageTokenizerConfig, load_images
    from lmforge.omni.speech import load_speech
    from lmforge.omni.train import _vocab

    image = ImageTokenizer(ImageTokenizerConfig(codebook_size=32, code_dim=8, channels=8))
    items = {"image": load_images("test"), "speech": load_speech("test")}
    words = _vocab({"image": image}, items).text  # the default, bpe
    on, one = words.encode("How does on sound?"), words.encode("How does one sound?")
    assert len(on) == len(one) and on != one  # one token each, told apart
    for text in ("seven", "How does on sound?", "Draw a seven."):
        assert words.decode(words.encode(text)) == text
    letters = _vocab({"image": image}, items, "char").text
    assert len(letters.encode("one")) == len(letters.encode("on")) + 1  # a token a letter
    with pytest.raises(ConfigError, match="text_tokenizer"):
        OmniConfig(text_tokenizer="word")


def test_speech_scores_count_every_held_out_voice_the_same():
    from lmforge.omni.evaluate import voice_scores

    # rms: 1 of 2 right; slt: 6 of 6 right (three times the items)
    right = [True, False] + [True] * 6
    scores = voice_scores(right, ["flite:rms"] * 2 + ["flite:slt"] * 6)
    assert scores["per_voice"] == {"flite:rms": 0.5, "flite:slt": 1.0}
    assert scores["score"] == 0.75 and scores["accuracy"] == 0.875
