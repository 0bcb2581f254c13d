"""``lmforge serve``'s web application: the OpenAI API over the served model folders, lmforge's
extras, and the page.

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (whole or
streamed, ``lmforge.serve.generation``; an any-to-any model's with images and sounds,
``lmforge.serve.omni``), ``POST /v1/embeddings``, lmforge's ``POST
/v1/fill-mask``, ``POST /tokenize``, ``POST /detokenize``, ``GET /v1/catalogue``, ``GET
/health``, and the page at ``/`` (static files shipped in ``lmforge/serve/static``). In front of
them all, ``lmforge.serve.guard.Guard``: hosts, key, body size.
"""

from __future__ import annotations

import base64
from contextlib import asynccontextmanager
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from lmforge.errors import LMForgeError
from lmforge.serve.generation import chat_completions, completions
from lmforge.serve.guard import Guard, ServeSettings, error_response
from lmforge.serve.models import ModelSet, Refused
from lmforge.serve.omni import ServedOmni, omni_chat
from lmforge.serve.requests import read_body

__all__ = ["ServeSettings", "create_app"]


def create_app(models: ModelSet, settings: ServeSettings | None = None) -> FastAPI:
    """The server's app over ``models`` (closed when the app shuts down), with ``settings``'
    limits and guards (default: ``ServeSettings()``)."""
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app):
        yield
        models.close()

    app = FastAPI(
        title="lmforge", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    static = resources.files("lmforge.serve") / "static"

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused):
        headers = {"Retry-After": "1"} if err.status in (429, 503) else None
        return error_response(err.status, err.message, err.code, err.param, headers)

    @app.exception_handler(LMForgeError)
    async def library_error(request: Request, err: LMForgeError):
        return error_response(400, str(err))

    @app.exception_handler(404)
    async def not_found(request: Request, err):
        return error_response(404, f"no such route: {request.method} {request.url.path}")

    @app.exception_handler(405)
    async def not_allowed(request: Request, err):
        return error_response(405, f"{request.method} is not allowed on {request.url.path}")

    @app.get("/")
    async def page():
        index = static / "index.html"
        if not index.is_file():
            return Response(
                "lmforge serve: the API is at /v1 (the page is not installed)",
                media_type="text/plain",
            )
        return FileResponse(str(index), headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    async def static_file(name: str):
        target = static / name
        if "/" in name or name.startswith(".") or not target.is_file():
            raise Refused(404, f"no such file: {name}")
        return FileResponse(str(target), headers={"Cache-Control": "no-store"})

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "models": {
                name: (m.engine.load if m.engine else {}) for name, m in models.models.items()
            },
        }

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [m.info() for m in models.models.values()]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str):
        return models.get(name, omni=True).info()

    @app.get("/v1/catalogue")
    async def catalogue():
        from lmforge.serve.catalogue import catalogue_rows

        local: dict[str, list[dict]] = {}
        for m in models.models.values():
            info = m.info()
            local.setdefault(info["family"], []).append(
                {k: info[k] for k in ("id", "perplexity", "parameters", "corpus")}
            )
        return {"object": "list", "data": catalogue_rows(local)}

    @app.post("/v1/completions")
    async def completions_route(request: Request):
        body = await read_body(request)
        return await completions(models.get(body.data.get("model")), body, settings)

    @app.post("/v1/chat/completions")
    async def chat_route(request: Request):
        body = await read_body(request)
        served = models.get(body.data.get("model"), omni=True)
        if isinstance(served, ServedOmni):
            return await omni_chat(served, body, settings)
        return await chat_completions(served, body, settings)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = await read_body(request)
        served = models.get(body.data.get("model"))
        texts = body.data.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise Refused(
                400, "'input' must be a string or a non-empty list of strings", param="input"
            )
        if len(texts) > 256:
            raise Refused(400, f"'input' lists {len(texts)} texts; at most 256 a request")
        encoding = body.get("encoding_format", str, "float")
        if encoding not in ("float", "base64"):
            raise Refused(400, "'encoding_format' must be 'float' or 'base64'")
        if not served.can_embed:
            raise Refused(400, served.cannot("embed text", "a bert, MiniLM or elmo model"))
        counts = [len(served.encode(t)) for t in texts]
        if max(counts) > settings.max_prompt_tokens:
            raise Refused(
                400, f"an input has {max(counts)} tokens; at most {settings.max_prompt_tokens}"
            )
        vectors = await run_in_threadpool(served.embed, texts)
        data = []
        for i, v in enumerate(np.asarray(vectors, dtype=np.float32)):
            value = (
                base64.b64encode(v.astype("<f4").tobytes()).decode()
                if encoding == "base64"
                else v.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {
            "object": "list",
            "data": data,
            "model": served.id,
            "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
        }

    @app.post("/v1/fill-mask")
    async def fill_mask(request: Request):
        body = await read_body(request)
        served = models.get(body.data.get("model"))
        text = body.get("input", str, None) or body.get("text", str, None)
        if not text:
            raise Refused(400, "'input' must be a text with [MASK] in it", param="input")
        top_k = body.get("top_k", int, 5, 1, 100)
        found = await run_in_threadpool(served.fill_mask, text, top_k)
        return {
            "object": "list",
            "model": served.id,
            "data": [[{"token": t, "score": p} for t, p in mask] for mask in found],
        }

    @app.post("/tokenize")
    async def tokenize(request: Request):
        body = await read_body(request)
        served = models.get(body.data.get("model"))
        text = body.get("text", str, None)
        text = body.get("content", str, "") if text is None else text
        ids = served.encode(text)
        return {"model": served.id, "tokens": ids, "pieces": served.pieces(ids), "count": len(ids)}

    @app.post("/detokenize")
    async def detokenize(request: Request):
        body = await read_body(request)
        served = models.get(body.data.get("model"))
        ids = body.data.get("tokens")
        size = served.vocab_size
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < size for i in ids
        ):
            raise Refused(
                400, f"'tokens' must be a list of token ids in 0..{size - 1}", param="tokens"
            )
        return {"model": served.id, "text": served.decode(ids)}

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Guard, settings=settings)
    return app
