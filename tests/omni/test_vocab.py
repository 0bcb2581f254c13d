"""The any-to-any model's shared vocabulary, its conversations and its constrained decoding."""

import random

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.omni.model import Omni
from lmforge.omni.tasks import (
    TASKS,
    Bank,
    chain_conversation,
    conversation,
    is_bigger,
    template_texts,
)
from lmforge.omni.vocab import FRAME, Item, OmniVocab, encode_conversation
from lmforge.tokenize import train_tokenizer, with_role_tokens
from lmforge.workflows import build_model

SIZES = {"image": (8, 4), "speech": (6, 3), "video": (5, 6)}


@pytest.fixture(scope="module")
def vocab():
    text = with_role_tokens(train_tokenizer("char", [*template_texts(), "seven"]))
    return OmniVocab(text, SIZES, frames={"video": 2})


def test_layout_is_text_then_code_ranges_then_boundaries(vocab):
    text_size = vocab.text.vocab_size
    assert vocab.offsets == {"image": text_size, "speech": text_size + 8, "video": text_size + 14}
    boundaries = sorted(vocab.boundary.values())
    assert boundaries == list(range(text_size + 19, vocab.vocab_size))
    assert len(boundaries) == 2 * len(SIZES) + 1  # <m>, </m> per modality and <frame>
    for name, (size, _) in SIZES.items():
        assert [vocab.modality_of(i) for i in vocab.allowed(name)] == [name] * size
    assert vocab.modality_of(0) is None and vocab.modality_of(vocab.boundary[FRAME]) is None


def test_item_ids_are_bounded_and_framed(vocab):
    ids = vocab.item_ids(Item("video", (0, 1, 2, 3, 4, 0)))
    offset, frame = vocab.offsets["video"], vocab.boundary[FRAME]
    assert ids == [
        vocab.boundary["<video>"],
        offset, offset + 1, offset + 2, frame, offset + 3, offset + 4, offset,
        vocab.boundary["</video>"],
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="image item is 4 codes"):
        vocab.item_ids(Item("image", (1, 2, 3)))
    with pytest.raises(ConfigError, match=r"\[0, 8\)"):
        vocab.item_ids(Item("image", (1, 2, 3, 8)))


def test_shared_codes_are_written_with_the_lenders_ids(vocab):
    text = vocab.text
    shared = OmniVocab(text, SIZES, frames={"video": 2}, shared={"video": ("image", 3)})
    t = text.vocab_size
    # video keeps only its codes 3 and 4 in a range of its own, after speech's
    assert shared.offsets == {"image": t, "speech": t + 8, "video": t + 14}
    assert shared.boundary["<image>"] == t + 16 and shared.vocab_size == vocab.vocab_size - 3
    assert shared.allowed("video") == [t, t + 1, t + 2, t + 14, t + 15]
    assert shared.modality_of(t + 1) == "image" and shared.modality_of(t + 15) == "video"
    ids = shared.item_ids(Item("video", (0, 1, 2, 3, 4, 2)))
    assert ids[1:-1] == [t, t + 1, t + 2, shared.boundary[FRAME], t + 14, t + 15, t + 2]
    assert shared.decode(ids) == [Item("video", (0, 1, 2, 3, 4, 2))]
    # an image code outside the lent ones, or a speech code, is not a video code
    assert shared.code_of("video", t + 5) is None and shared.code_of("video", t + 8) is None
    again = OmniVocab.from_layout(text, shared.layout())
    assert (
        again.layout()
        == shared.layout()
        == {
            "sizes": {k: list(v) for k, v in SIZES.items()},
            "frames": {"video": 2},
            "shared": {"video": ["image", 3]},
        }
    )
    assert "shared" not in vocab.layout()  # folders without it read as before
    with pytest.raises(ConfigError, match="share"):
        OmniVocab(text, SIZES, shared={"video": ("image", 9)})


def test_only_the_assistant_turns_carry_loss(vocab):
    image = Item("image", (1, 2, 3, 4))
    messages = [
        {"role": "user", "content": [image, "What digit is this?"]},
        {"role": "assistant", "content": ["seven"]},
        {"role": "user", "content": ["Draw it again."]},
        {"role": "assistant", "content": [image]},
    ]
    ids, mask = encode_conversation(vocab, messages)
    scored = [i for i, m in zip(ids, mask, strict=True) if m]
    answer = vocab.text.encode("seven", markers=False)
    assert scored == [*answer, vocab.end, *vocab.item_ids(image), vocab.end]
    assert ids[0] == vocab.text.bos_id and ids[1] == vocab.user
    assert vocab.decode(ids[ids.index(vocab.assistant) + 1 :])[0] == "seven"


def test_decode_reads_items_back_and_drops_broken_ones(vocab):
    image = Item("image", (7, 0, 3, 3))
    ids = vocab.content_ids(["a", image, "b"])
    assert vocab.decode(ids) == ["a", image, "b"]
    cut = vocab.content_ids([image])[:-2] + [vocab.boundary["</image>"]]  # one code short
    assert vocab.decode(cut) == []


def test_tasks_draw_matching_answers():
    codes = torch.arange(12).reshape(6, 2) % 4
    banks = {
        "image": Bank("image", codes, ["one", "two", "one", "two", "one", "two"]),
        "speech": Bank("speech", codes[:4], ["one", "two", "red", "blue"]),
    }
    rng = random.Random(0)
    messages, gold = conversation("image->text", banks, rng, index=1)
    assert gold == "two" and messages[-1]["content"] == ["two"]
    for named in (True, False) * 10:  # cross-modal pairs use labels both banks hold
        messages, gold = conversation("speech->image", banks, rng, named=named)
        assert gold in ("one", "two")
        *said, answer = messages[-1]["content"]
        assert said == ([gold] if named else [])  # the word heard, then the drawing
        assert banks["image"].names[list(map(tuple, codes.tolist())).index(answer.codes)] == gold
    chain, gold = chain_conversation(banks, rng)
    assert [m["role"] for m in chain] == ["user", "assistant"] * 3
    assert chain[1]["content"] == [gold] and chain[5]["content"][0].modality == "speech"
    assert not is_bigger(chain)  # no bigger drawings in the bank: never asked for
    banks["image"].bigger = codes + 10
    asked = set()
    for i in range(20):  # half the chains ask for the shown digit drawn bigger
        chain, gold = chain_conversation(banks, rng, index=i % 4)
        asked.add(is_bigger(chain))
        drawn = chain[3]["content"][0].codes
        if is_bigger(chain):
            assert drawn == tuple((codes[i % 4] + 10).tolist())
        else:
            assert banks["image"].names[list(map(tuple, codes.tolist())).index(drawn)] == gold
    assert asked == {True, False}
    copies = Bank("image", codes, ["one", "two"] * 3, real=2)  # items 2.. perturbed copies
    assert copies.by_name == {"one": [0], "two": [1]} and copies.among({"one"}) == [0, 2, 4]
    for _ in range(10):  # copies are given to the model, never its answers
        messages, gold = conversation("text->image", {"image": copies}, rng)
        assert messages[-1]["content"][0].codes in {tuple(c) for c in codes[:2].tolist()}
    assert [copies.item(i).copy for i in range(6)] == [False] * 2 + [True] * 4
    assert copies.item(2) == Item("image", tuple(codes[2].tolist()))  # the flag is not identity
    assert set(TASKS) >= {"image->text", "text->image", "speech->image", "image->speech"}


class _Biased:
    """A decoder whose scores favour opening items, so that decoding must close them."""

    def __init__(self, model, bias):
        self.model, self.bias, self.config = model, bias, model.config

    def step(self, ids, cache=None):
        logits, cache = self.model.step(ids, cache)
        return logits + self.bias, cache


def test_decoding_keeps_items_well_formed_even_from_random_weights(vocab):
    torch.manual_seed(0)
    overrides = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "max_seq_len": 64}
    model, _ = build_model("gpt", vocab.vocab_size, overrides)
    bias = torch.zeros(vocab.vocab_size)
    bias[[vocab.boundary["<video>"], vocab.boundary["<image>"]]] = 6.0
    bias[vocab.boundary["</video>"]] = 9.0  # a closing token the layout must not let through
    omni = Omni(_Biased(model.eval(), bias), vocab, {}, {})
    asked = [
        [{"role": "user", "content": ["Draw a seven."]}],
        [{"role": "user", "content": ["Hi"]}],
    ]
    replies = omni.reply(asked, max_new_tokens=40, seed=1)
    items = [p for reply in replies for p in reply if isinstance(p, Item)]
    assert len(items) >= 2
    for item in items:
        assert len(item.codes) == SIZES[item.modality][1]
        assert all(0 <= c < SIZES[item.modality][0] for c in item.codes)
    from lmforge.omni.model import GREEDY, item_samplers

    prompt = torch.tensor([[vocab.text.bos_id, vocab.assistant]])
    ids = omni._decode(prompt, [range(1)], 60, GREEDY, item_samplers(), None)[0]
    opened = sum(ids.count(vocab.boundary[f"<{m}>"]) for m in SIZES)
    assert opened >= 1 and opened == sum(isinstance(p, Item) for p in vocab.decode(ids))
    if vocab.boundary["<video>"] in ids:  # frames are separated by the layout
        start = ids.index(vocab.boundary["<video>"])
        assert ids[start + 4] == vocab.boundary[FRAME]


def test_given_items_count_in_the_loss_only_where_asked(vocab):
    messages = [
        {"role": "user", "content": [Item("speech", (1, 2, 3)), "Which word is this?"]},
        {"role": "user", "content": [Item("video", (0, 1, 2, 3, 4, 0)), Item("image", (7,) * 4)]},
        {"role": "assistant", "content": [Item("image", (0, 1, 2, 3))]},
    ]
    ids, mask = encode_conversation(vocab, messages)
    again_ids, counted = encode_conversation(vocab, messages, ("speech", "video"))
    assert again_ids == ids
    added = [ids[i] for i, (was, now) in enumerate(zip(mask, counted, strict=True)) if now > was]
    speech = [vocab.code_id("speech", c) for c in (1, 2, 3)]
    video = vocab.item_ids(Item("video", (0, 1, 2, 3, 4, 0)))[1:-1]  # codes and <frame>
    assert added == speech + video  # the given image is not named
    assert all(now for was, now in zip(mask, counted, strict=True) if was)  # answers count
    assert encode_conversation(vocab, messages, ("points",)) == (ids, mask)
    messages[0]["content"][0] = Item("speech", (1, 2, 3), copy=True)  # a perturbed copy: read only
    _, counted = encode_conversation(vocab, messages, ("speech", "video"))
    added = [ids[i] for i, (was, now) in enumerate(zip(mask, counted, strict=True)) if now > was]
    assert added == video


class _Listener:
    """A decoder that tells whether the speech code 1 is in the prompt: sure of "no" without it,
    barely preferring "yes" with it; "yes" and "no" are the text "y" and "n", or with ``speaks``
    a spoken item of codes 2 and of codes 3. Then it ends the turn."""

    def __init__(self, vocab, speaks: bool = False):
        self.vocab, self.speaks = vocab, speaks
        self.config = type("Config", (), {"max_seq_len": 64})()

    def step(self, ids, cache=None):
        vocab = self.vocab
        yes, no = (vocab.text.encode(w, markers=False)[0] for w in ("y", "n"))
        if self.speaks:
            yes, no = vocab.code_id("speech", 2), vocab.code_id("speech", 3)
        logits = torch.zeros(len(ids), vocab.vocab_size)
        heard = cache
        if cache is None:
            heard = torch.tensor([vocab.code_id("speech", 1) in row for row in ids.tolist()])
        if cache is None and self.speaks:
            logits[:, vocab.boundary["<speech>"]] = 9.0
        elif cache is None or self.speaks:
            logits[:, yes] = torch.where(heard, 3.0, 0.0)
            logits[:, no] = torch.where(heard, 2.9, 9.0)
        if cache is not None:
            logits[:, vocab.end] = 9.0
        return logits, heard


def test_views_of_a_given_item_are_read_beside_it_and_their_probabilities_averaged(vocab):
    from lmforge.omni.model import _pooled

    scores = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, -1.0], [1.0, 1.0, 1.0]])
    pooled = _pooled(scores, [range(0, 2), range(2, 3)])
    mean = (scores[0].softmax(-1) + scores[1].softmax(-1)) / 2
    assert torch.allclose(pooled[0].exp(), mean)  # the mean probability of the two readings
    assert torch.equal(pooled[1], scores[2])  # a lone reading as it is
    assert _pooled(scores, [range(i, i + 1) for i in range(3)]) is scores

    omni = Omni(_Listener(vocab), vocab, {}, {})

    def asked(item):
        return [[{"role": "user", "content": [item, "Which word is this?"]}]]

    heard, unheard = Item("speech", (1, 2, 3)), Item("speech", (5, 0, 4))
    assert omni.reply(asked(heard), 4) == [["y"]]
    assert omni.reply(asked(unheard), 4) == [["n"]]
    # read beside a view without the code, the item's own narrow "y" loses to the mean
    assert omni.reply(asked(Item("speech", (1, 2, 3), views=((5, 0, 4),))), 4) == [["n"]]
    # views identical to the item change nothing
    assert omni.reply(asked(Item("speech", (1, 2, 3), views=((1, 2, 3),) * 2)), 4) == [["y"]]
    # conversations with and without views decode together, each its own reply
    both = asked(Item("speech", (1, 2, 3), views=((5, 0, 4),))) + asked(heard) + asked(unheard)
    assert omni.reply(both, 4) == [["n"], ["y"], ["n"]]
    # an item the model draws follows the reading as written, not the mixture
    from lmforge.omni.model import GREEDY

    omni = Omni(_Listener(vocab, speaks=True), vocab, {}, {})

    def spoken(item):
        return omni.reply(asked(item), 8, items={"speech": GREEDY})

    assert spoken(heard) == [[Item("speech", (2, 2, 2))]]
    assert spoken(unheard) == [[Item("speech", (3, 3, 3))]]
    assert spoken(Item("speech", (1, 2, 3), views=((5, 0, 4),))) == [[Item("speech", (2, 2, 2))]]
    together = asked(Item("speech", (1, 2, 3), views=((5, 0, 4),))) + asked(heard)
    drawn = omni.reply(together, 8, items={"speech": GREEDY})
    assert drawn == [[Item("speech", (2, 2, 2))], [Item("speech", (2, 2, 2))]]
