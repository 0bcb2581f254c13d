"""``lmforge serve`` with real clients: the ``openai`` package and ``httpx`` over HTTP against a
running server (no mocks), the per-token log-probs against lmforge's own scoring, the security
guards, and continuous batching."""

from __future__ import annotations

import asyncio
import json
import math
import threading

import httpx
import numpy as np
import pytest
import torch

from lmforge.folders import load_model
from lmforge.ngram import load_ngram
from lmforge.tokenize import BOS, tokenize_lines

openai = pytest.importorskip("openai", reason="the openai client is not installed")

LN10 = math.log(10.0)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def sse_events(response) -> list:
    """The JSON objects of a Server-Sent Events stream, and "[DONE]"."""
    events = []
    for line in response.iter_lines():
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


# -- the OpenAI API through the openai package -----------------------------------------------------


def test_models_list_names_every_folder_with_lmforge_fields(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"tri", "gpt-char", "chat", "bert"}
    gpt = models["gpt-char"].model_dump()
    assert gpt["family"] == "gpt" and gpt["corpus"] == "tiny" and gpt["parameters"] > 1000
    assert "chat" in models["chat"].model_dump()["capabilities"]
    assert models["tri"].model_dump()["parameters_kind"] == "n-grams"


def test_completion_and_its_usage(client):
    out = client.completions.create(model="tri", prompt="the cat", max_tokens=5, temperature=0)
    assert out.choices[0].text.startswith(" ") and out.choices[0].finish_reason in (
        "stop",
        "length",
    )
    assert out.usage.prompt_tokens == 2 and out.usage.completion_tokens <= 5


def test_seeded_sampling_repeats_and_n_gives_n_choices(client):
    kwargs = {"model": "gpt-char", "prompt": "the", "max_tokens": 12, "seed": 7, "n": 3}
    first = client.completions.create(**kwargs)
    again = client.completions.create(**kwargs)
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert sorted(c.index for c in first.choices) == [0, 1, 2]
    assert len({c.text for c in first.choices}) > 1  # each choice draws with its own seed
    assert all(len(c.text) <= 12 for c in first.choices)  # characters: at most one a token


def test_chat_answers_the_tuned_question_and_stops_at_the_end_of_turn(client):
    out = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "item3 colour ?"}], temperature=0
    )
    assert out.choices[0].message.content.strip() in ("red", "blue")
    assert out.choices[0].finish_reason == "stop"


def test_chat_streaming_through_the_client_gives_the_same_text(client):
    messages = [{"role": "user", "content": "item5 colour ?"}]
    whole = client.chat.completions.create(model="chat", messages=messages, temperature=0)
    stream = client.chat.completions.create(
        model="chat",
        messages=messages,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1


def test_embeddings_are_unit_vectors_of_the_encoder(client):
    out = client.embeddings.create(model="bert", input=["red", "blue red"])  # base64 by default
    vectors = np.array([d.embedding for d in out.data])
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    plain = client.embeddings.create(model="bert", input="red", encoding_format="float")
    assert np.allclose(plain.data[0].embedding, vectors[0], atol=1e-6)


def test_errors_come_back_in_the_openai_shape(client):
    with pytest.raises(openai.BadRequestError, match="cannot chat"):
        client.chat.completions.create(model="tri", messages=[{"role": "user", "content": "a"}])
    with pytest.raises(openai.BadRequestError, match="cannot complete"):
        client.completions.create(model="bert", prompt="a")
    with pytest.raises(openai.BadRequestError, match="cannot embed"):
        client.embeddings.create(model="gpt-char", input="a")
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.completions.create(model="nope", prompt="a")
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(
            model="chat", messages=[{"role": "assistant", "content": "hi"}]
        )


# -- log-probs equal lmforge's own scoring ---------------------------------------------------------


def test_echo_logprobs_of_an_ngram_model_equal_ngram_score(server, folders, run_cli):
    sentence = "the cat sat on the log"
    body = {"model": "tri", "prompt": sentence, "max_tokens": 0, "echo": True, "logprobs": 1}
    got = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]
    code, out, _ = run_cli("ngram", "score", folders["tri"], sentence, "--json")
    scored = json.loads(out)
    assert code == 0 and got["text"] == sentence
    assert got["logprobs"]["tokens"] == scored["tokens"][:-1]  # the words, not </s>
    expected = [v * LN10 for v in scored["log10_probs"][:-1]]
    assert np.allclose(got["logprobs"]["token_logprobs"], expected, atol=1e-6)


def test_echo_logprobs_of_a_gpt_equal_its_log_probs(server, folders):
    prompt = "a dog sat on the mat"
    body = {"model": "gpt-char", "prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 3}
    got = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]["logprobs"]
    model, tokenizer, _ = load_model(folders["gpt-char"])
    ids = [tokenizer.token_to_id(BOS), *tokenizer.encode(prompt, markers=False)]
    with torch.no_grad():
        expected, _ = model.log_probs(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    n = len(ids) - 1
    assert got["tokens"][:n] == list(prompt)
    assert np.allclose(got["token_logprobs"][:n], expected[0].tolist(), atol=1e-5)
    assert len(got["tokens"]) == n + 1 and all(len(t) == 3 for t in got["top_logprobs"])


# -- streaming as Server-Sent Events ---------------------------------------------------------------


def test_httpx_stream_is_sse_with_done_and_finish_on_the_last_content_chunk(server):
    body = {
        "model": "gpt-char",
        "prompt": "the",
        "max_tokens": 6,
        "stream": True,
        "seed": 1,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    usage = events[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    chunks = [e for e in events[:-2]]
    assert all(e["object"] == "text_completion" for e in chunks)
    whole = httpx.post(server.url + "/v1/completions", json={**body, "stream": False}).json()
    # tokens that arrive together go out in one chunk: the text, not the count, is fixed
    assert "".join(e["choices"][0]["text"] for e in chunks) == whole["choices"][0]["text"]
    assert [e["choices"][0]["finish_reason"] for e in chunks][-1] == "length"
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "item1 colour ?"}],
        "stream": True,
        "temperature": 0,
    }
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        events = sse_events(response)
    chunks = events[:-1]
    assert events[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in chunks)
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "stop" and last["delta"].get("content")


def test_stop_strings_cut_the_text(server):
    body = {
        "model": "tri",
        "prompt": "the cat",
        "max_tokens": 20,
        "temperature": 0,
        "stop": ["cat"],
    }
    out = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]
    assert out["text"] == " saw a " and out["finish_reason"] == "stop"  # greedy: saw a cat ...


# -- security --------------------------------------------------------------------------------------


def test_the_default_bind_is_loopback(run_cli, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: seen.update(host=host))
    monkeypatch.setattr(
        "lmforge.serve.models.ModelSet.__init__",
        lambda self, pairs, *a: setattr(self, "models", {}),
    )
    code, _, err = run_cli("serve", "x=/nowhere")
    assert code == 0 and seen["host"] == "127.0.0.1" and "warning" not in err
    code, _, err = run_cli("serve", "x=/nowhere", "--host", "0.0.0.0")
    assert seen["host"] == "0.0.0.0" and "warning: binding 0.0.0.0" in err and "API key" in err


def test_api_key_is_required_and_compared(folders, start_server):
    running = start_server({"tri": folders["tri"]}, api_key="s3cret-key")
    try:
        url = running.url + "/v1/models"
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "s3cret-key"}):
            response = httpx.get(url, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(url, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert httpx.get(running.url + "/health").status_code == 200  # public
        keyed = openai.OpenAI(base_url=running.url + "/v1", api_key="s3cret-key")
        assert [m.id for m in keyed.models.list().data] == ["tri"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=running.url + "/v1", api_key="bad", max_retries=0).models.list()
    finally:
        running.stop()


def test_a_foreign_host_header_is_refused(server):
    for host in ("evil.example.com", "attacker.test:8000", "127.0.0.1.nip.io"):
        response = httpx.get(server.url + "/v1/models", headers={"Host": host})
        assert response.status_code == 403 and "not allowed" in response.json()["error"]["message"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert httpx.get(server.url + "/v1/models", headers={"Host": host}).status_code == 200


def test_oversize_body_is_413(server):
    body = {"model": "tri", "prompt": "a " * 600_000}
    response = httpx.post(server.url + "/v1/completions", json=body)
    assert response.status_code == 413 and "--max-body" in response.json()["error"]["message"]


def test_limits_on_max_tokens_n_and_prompt_are_400(server):
    url = server.url + "/v1/completions"
    for extra, what in (
        ({"max_tokens": 5000}, "max_tokens"),
        ({"n": 50}, "'n'"),
        ({"prompt": "the " * 40}, "prompt has"),
    ):
        body = {"model": "gpt-char", "prompt": "the", **extra}
        response = httpx.post(url, json=body)
        assert response.status_code == 400, extra
        assert what in response.json()["error"]["message"]


def test_unknown_or_path_like_model_is_404_and_opens_no_file(server, monkeypatch):
    import builtins

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k)
    )
    for name in ("../../etc/passwd", "/etc/passwd", "tri/../bert", "nope"):
        response = httpx.post(server.url + "/v1/completions", json={"model": name, "prompt": "a"})
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert not [f for f in opened if "passwd" in str(f)]


def test_cors_is_off_unless_asked(server, folders, start_server):
    headers = {"Origin": "http://elsewhere.test", "Access-Control-Request-Method": "POST"}
    response = httpx.options(server.url + "/v1/completions", headers=headers)
    assert "access-control-allow-origin" not in response.headers
    running = start_server({"tri": folders["tri"]}, cors_origins=("http://elsewhere.test",))
    try:
        response = httpx.options(running.url + "/v1/completions", headers=headers)
        assert response.headers["access-control-allow-origin"] == "http://elsewhere.test"
    finally:
        running.stop()


def test_a_client_leaving_mid_stream_frees_its_row(server):
    body = {"model": "gpt-char", "prompt": "the", "max_tokens": 60, "stream": True, "seed": 3}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        for _ in response.iter_lines():
            break  # go away after the first event
    health = {}
    for _ in range(100):
        health = httpx.get(server.url + "/health").json()["models"]["gpt-char"]
        if health == {"active": 0, "waiting": 0}:
            break
        threading.Event().wait(0.05)
    assert health == {"active": 0, "waiting": 0}
    out = httpx.post(
        server.url + "/v1/completions", json={"model": "gpt-char", "prompt": "a", "max_tokens": 3}
    )
    assert out.status_code == 200


# -- concurrency -----------------------------------------------------------------------------------


def test_concurrent_requests_decode_together_and_match_one_at_a_time(server):
    bodies = [
        {"model": "gpt-char", "prompt": p, "max_tokens": 30, "temperature": 0}
        for p in ("the", "a dog", "the mat was", "a cat saw a")
    ]
    alone = [
        httpx.post(server.url + "/v1/completions", json=b).json()["choices"][0]["text"]
        for b in bodies
    ]
    engine = server.models.get("gpt-char").engine
    steps, rows = engine.steps, engine.rows_stepped

    async def together():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            replies = await asyncio.gather(*(http.post("/v1/completions", json=b) for b in bodies))
        return [r.json()["choices"][0]["text"] for r in replies]

    assert asyncio.run(together()) == alone  # batched rows decode as each does alone
    batched = (engine.rows_stepped - rows) / (engine.steps - steps)
    assert batched > 1.5  # rows per step: the requests shared steps


def test_a_full_queue_answers_503(folders, start_server):
    running = start_server({"gpt-char": folders["gpt-char"]}, max_batch=1, max_waiting=1)
    try:

        async def flood():
            async with httpx.AsyncClient(base_url=running.url, timeout=60) as http:
                body = {"model": "gpt-char", "prompt": "the", "max_tokens": 40}
                return await asyncio.gather(
                    *(http.post("/v1/completions", json=body) for _ in range(8))
                )

        codes = sorted(r.status_code for r in asyncio.run(flood()))
        assert codes[0] == 200 and 503 in codes and set(codes) <= {200, 503}
    finally:
        running.stop()


def test_tokenize_detokenize_and_fill_mask(server):
    out = httpx.post(server.url + "/tokenize", json={"model": "gpt-char", "text": "cat"}).json()
    assert out["pieces"] == ["c", "a", "t"]
    back = httpx.post(
        server.url + "/detokenize", json={"model": "gpt-char", "tokens": out["tokens"]}
    ).json()
    assert back["text"] == "cat"
    masks = httpx.post(
        server.url + "/v1/fill-mask", json={"model": "bert", "input": "item1 [MASK] ?", "top_k": 3}
    ).json()
    assert len(masks["data"]) == 1 and len(masks["data"][0]) == 3
    bad = httpx.post(server.url + "/detokenize", json={"model": "gpt-char", "tokens": [10**9]})
    assert bad.status_code == 400


def test_an_ngram_model_loaded_by_the_server_scores_like_load_ngram(folders):
    model, tokenizer = load_ngram(folders["tri"])
    assert tokenize_lines(["the cat"], tokenizer)[0] == ["the", "cat"]
    assert model.order == 3


def test_serve_command_refuses_bad_arguments_in_one_line(run_cli, folders, tmp_path):
    code, _, err = run_cli("serve")
    assert code == 2 and "nothing to serve" in err
    code, _, err = run_cli("serve", tmp_path / "missing")
    assert code == 2 and "no such model" in err and "Traceback" not in err
    code, _, err = run_cli("serve", f"a b={folders['tri']}")
    assert code == 2 and "cannot be a model id" in err
    code, _, err = run_cli("serve", folders["tri"], f"tri={folders['gpt-char']}")
    assert code == 2 and "two models are called 'tri'" in err
    code, _, err = run_cli("serve", folders["tri"], "--max-n", "0")
    assert code == 2 and "--max-n must be >= 1" in err
    (tmp_path / "key").write_text("short\n")
    code, _, err = run_cli("serve", folders["tri"], "--api-key-file", tmp_path / "key")
    assert code == 2 and "at least 8 characters" in err


def test_streamed_logprobs_cover_every_token_once(server):
    body = {
        "model": "gpt-char",
        "prompt": "the",
        "max_tokens": 10,
        "stream": True,
        "seed": 2,
        "logprobs": 2,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        events = sse_events(response)
    chunks = [e for e in events[:-2] if e["choices"][0]["logprobs"]]
    tokens = [t for e in chunks for t in e["choices"][0]["logprobs"]["tokens"]]
    text = "".join(e["choices"][0]["text"] for e in events[:-2])
    assert len(tokens) == events[-2]["usage"]["completion_tokens"]  # each token once
    assert text and all(e["choices"][0]["logprobs"] for e in events[:-2] if e["choices"][0]["text"])


FAMILY_SIZES = {
    "nnlm": {"context": 3, "d_model": 8, "d_hidden": 16},
    "rnn": {"d_model": 16, "n_layers": 1},
    "lstm": {"d_model": 16, "n_layers": 1},
    "elmo": {"d_model": 16, "n_layers": 2, "max_seq_len": 16, "dropout": 0.0},
    "seq2seq": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 16},
}


def test_every_other_family_is_served_for_what_it_can_do(tmp_path, start_server):
    from lmforge.folders import save_model
    from lmforge.tokenize import train_tokenizer
    from lmforge.workflows import build_model

    tok = train_tokenizer("word", ["the cat sat on the mat", "a dog sat"], rare_threshold=0)
    folders = {}
    for name, sizes in FAMILY_SIZES.items():
        torch.manual_seed(0)
        model, _ = build_model(name, tok.vocab_size, sizes)
        folders[name] = save_model(tmp_path / name, model, tok)
    running = start_server(folders)
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)
        for name in ("nnlm", "rnn", "lstm"):  # stepped row by row beside each other
            out = client.completions.create(model=name, prompt="the cat", max_tokens=4, seed=0)
            assert out.usage.completion_tokens <= 4 and out.choices[0].finish_reason
            scored = httpx.post(
                running.url + "/v1/completions",
                json={
                    "model": name,
                    "prompt": "the cat sat",
                    "max_tokens": 0,
                    "echo": True,
                    "logprobs": 0,
                },
            ).json()["choices"][0]["logprobs"]
            model, tokenizer, _ = load_model(folders[name])
            ids = [tokenizer.token_to_id(BOS), *tokenizer.encode("the cat sat", markers=False)]
            with torch.no_grad():
                expected, _ = model.log_probs(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
            assert np.allclose(scored["token_logprobs"], expected[0].tolist(), atol=1e-5), name
        translated = client.completions.create(model="seq2seq", prompt="the cat", max_tokens=5)
        assert isinstance(translated.choices[0].text, str)
        with pytest.raises(openai.BadRequestError, match="translates"):
            client.completions.create(model="seq2seq", prompt="the cat", stream=True)
        vectors = client.embeddings.create(model="elmo", input=["the cat", "a dog sat"]).data
        assert len(vectors) == 2 and abs(np.linalg.norm(vectors[0].embedding) - 1) < 1e-5
        with pytest.raises(openai.BadRequestError, match="cannot complete"):
            client.completions.create(model="elmo", prompt="the")
    finally:
        running.stop()


def test_a_classifier_folder_is_refused_with_what_to_serve(tmp_path, run_cli, folders):
    from lmforge.folders import save_model
    from lmforge.models.heads import HEADS

    model, tokenizer, _ = load_model(folders["bert"])
    torch.manual_seed(0)
    classifier = HEADS["sequence"](model, 2)
    save_model(tmp_path / "clf", classifier, tokenizer, labels=["a", "b"])
    code, _, err = run_cli("serve", tmp_path / "clf")
    assert code == 2 and "fine-tuned sequence classifier" in err and "Traceback" not in err


def test_token_id_prompts_are_read_and_bad_ids_refused(server):
    url = server.url + "/v1/completions"
    ids = httpx.post(server.url + "/tokenize", json={"model": "gpt-char", "text": "the"}).json()
    body = {"model": "gpt-char", "max_tokens": 3, "seed": 1}
    by_ids = httpx.post(url, json={**body, "prompt": ids["tokens"]}).json()
    by_text = httpx.post(url, json={**body, "prompt": "the"}).json()
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]
    bad = httpx.post(url, json={**body, "prompt": [10**9]})
    assert bad.status_code == 400 and "token ids" in bad.json()["error"]["message"]
