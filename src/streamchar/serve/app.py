"""The HTTP / WebSocket API of `streamchar serve` (FastAPI). The model lives in the worker; see worker.py.

    POST   /v1/sessions                 multipart: ref_image?, ref_audio?, ref_text?, pace?, text, prompt?, seed?,
                                        max_seconds?
                                        -> 201 {"id", "mime", "chunk_seconds", ...}
    POST   /v1/sessions/{id}/text       {"text"}: appended to the live transcript (from the next chunk on)
    POST   /v1/sessions/{id}/interrupt  {"text"}: replaces what is not yet spoken (barge-in)
    WS     /v1/sessions/{id}/stream     binary: init segment, then one fMP4 fragment per chunk;
                                        text: JSON events {"type": "start" | "chunk" | "end" | "error", ...}
    DELETE /v1/sessions/{id}
    GET    /v1/health, /metrics (Prometheus), /openapi.json, / (the player page)

Errors are JSON `{"detail": "what is wrong"}` with a 4xx status; with `token`, every request needs
`Authorization: Bearer <token>` (the WebSocket: that header or `?token=`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

from streamchar.bundled import CHARACTER
from streamchar.errors import StreamCharError
from streamchar.serve.metrics import ServerMetrics
from streamchar.serve.worker import SessionLimit, Worker

PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServeOptions:
    token: str | None = None
    max_sessions: int = 4
    queue_chunks: int = 8  # a client this many chunks behind is too slow for its stream
    idle_seconds: float = 60.0  # unused sessions expire after this long
    max_lead_seconds: float | None = 4.0  # generation runs at most this far ahead of playback (None: no limit)
    max_image_bytes: int = 20 * 2**20
    max_audio_bytes: int = 50 * 2**20
    max_text_chars: int = 20_000
    max_prompt_chars: int = 2_000
    max_seconds: float = 3600.0  # the longest stream a request may ask for
    reference_image: Path | None = None  # the character used when a request uploads none
    sampler: str | None = None  # None: the model's (the teacher unless it is distilled)


class TextIn(BaseModel):
    text: str = Field(..., description="text to speak", min_length=1)


def create_app(model, options: ServeOptions | None = None) -> FastAPI:
    """The app for one loaded model (a `streamchar.pipeline.StreamChar`)."""
    opts = options or ServeOptions()
    metrics = ServerMetrics()
    cfg = model.cfg
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = Worker(model, asyncio.get_running_loop(), metrics, max_sessions=opts.max_sessions,
                        queue_chunks=opts.queue_chunks, idle_seconds=opts.idle_seconds,
                        max_lead_seconds=opts.max_lead_seconds)
        worker.start()
        state["worker"] = worker
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="streamchar", version=_version(), lifespan=lifespan,
                  description="Stream a talking character live: speech and video from text, chunk by chunk.")

    def worker() -> Worker:
        return state["worker"]

    def authorized(request: Request) -> None:
        if opts.token is None:
            return
        header = request.headers.get("authorization", "")
        if not hmac.compare_digest(header.encode(), f"Bearer {opts.token}".encode()):
            raise HTTPException(401, "missing or wrong token: send the header 'Authorization: Bearer <token>'")

    def session_of(session_id: str):
        s = worker().sessions.get(session_id)
        if s is None:
            raise HTTPException(404, f"no session {session_id!r} (it ended and expired, or never existed)")
        return s

    @app.exception_handler(StreamCharError)
    async def _bad_input(request, exc: StreamCharError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text())

    @app.get("/v1/health")
    async def health():
        w = worker()
        alive = w.thread.is_alive() and w.error is None
        body = {"status": "ok" if alive else "failed", "preset": cfg.preset,
                "sessions": sum(1 for s in w.sessions.values() if s.ended is None),
                "max_sessions": opts.max_sessions, "chunk_seconds": cfg.chunk_seconds,
                "width": cfg.video.width, "height": cfg.video.height}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/metrics", response_class=Response)
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/sessions", status_code=201, dependencies=[Depends(authorized)])
    async def create_session(text: str = Form(..., description="the transcript to speak"),
                             prompt: str = Form("", description="visual prompt"),
                             seed: int = Form(0, ge=0, le=2**32 - 1),
                             max_seconds: float | None = Form(None, description="stop after this much video"),
                             ref_image: UploadFile | None = File(None, description="the character (default: the "
                                                                                    "bundled one)"),
                             ref_audio: UploadFile | None = File(None, description="a reference voice"),
                             ref_text: str | None = Form(None, description="what ref_audio says: the stream "
                                                                           "speaks at that voice's pace"),
                             pace: float | None = Form(None, description="planned durations times this (1 = the "
                                                                         "training voices' mean, > 1 slower)")):
        _check_text(text, opts.max_text_chars)
        if ref_text is not None:
            if ref_audio is None:
                raise HTTPException(400, "ref_text is what ref_audio says: upload ref_audio with it")
            _check_text(ref_text, opts.max_text_chars)
        if len(prompt) > opts.max_prompt_chars:
            raise HTTPException(413, f"prompt has {len(prompt)} characters; the limit is {opts.max_prompt_chars}")
        if max_seconds is not None and not (0 < max_seconds <= opts.max_seconds and math.isfinite(max_seconds)):
            raise HTTPException(400, f"max_seconds must be in (0, {opts.max_seconds:g}], got {max_seconds}")
        image = await _read(ref_image, "ref_image", opts.max_image_bytes) if ref_image is not None else None
        audio = await _read(ref_audio, "ref_audio", opts.max_audio_bytes) if ref_audio is not None else None
        image_array = _decode_image(image, opts.reference_image or CHARACTER, cfg)  # the bundled character
        audio_array = _decode_audio(audio, cfg, whole=ref_text is not None) if audio is not None else None
        args = dict(text=text, ref_image=image_array, ref_audio=audio_array, ref_text=ref_text, pace=pace,
                    prompt=prompt, seed=seed,
                    max_seconds=max_seconds, sampler=opts.sampler)
        try:
            s = await worker().submit(lambda: worker().create(**args))
        except SessionLimit as e:
            metrics.rejected.inc()
            raise HTTPException(429, str(e)) from None
        return {"id": s.id, "mime": s.writer.mime,
                "chunk_seconds": cfg.chunk_seconds, "stream": f"/v1/sessions/{s.id}/stream",
                "transcript_tokens": len(s.stream.transcript), "max_seconds": s.stream.max_seconds,
                "pace": s.stream.pace}

    @app.post("/v1/sessions/{session_id}/text", dependencies=[Depends(authorized)])
    async def append_text(session_id: str, body: TextIn):
        s = _live(session_of(session_id))
        _check_text(body.text, opts.max_text_chars)
        await worker().submit(lambda: s.stream.append_text(body.text))
        return {"id": s.id, "transcript": s.stream.text, "transcript_tokens": len(s.stream.transcript)}

    @app.post("/v1/sessions/{session_id}/interrupt", dependencies=[Depends(authorized)])
    async def interrupt(session_id: str, body: TextIn):
        s = _live(session_of(session_id))
        _check_text(body.text, opts.max_text_chars)
        await worker().submit(lambda: s.stream.interrupt(body.text))
        return {"id": s.id, "transcript": s.stream.text, "transcript_tokens": len(s.stream.transcript)}

    @app.delete("/v1/sessions/{session_id}", dependencies=[Depends(authorized)])
    async def delete_session(session_id: str):
        session_of(session_id)
        await worker().submit(lambda: worker().remove(session_id))
        return {"id": session_id, "deleted": True}

    @app.websocket("/v1/sessions/{session_id}/stream")
    async def stream(ws: WebSocket, session_id: str):
        await ws.accept()  # then a refusal can say why: close codes 4401, 4404, 4409 with a reason
        if opts.token is not None:
            given = ws.query_params.get("token") or ws.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), opts.token.encode()):
                await ws.close(code=4401, reason="missing or wrong token")
                return
        s = worker().sessions.get(session_id)
        if s is None:
            await ws.close(code=4404, reason=f"no session {session_id!r}"[:120])
            return
        if s.connected_at is not None:
            await ws.close(code=4409, reason="this session already has a client")
            return
        s.connected_at = s.last_seen = time.monotonic()  # the worker starts streaming it (an atomic store)
        await ws.send_json({"type": "start", "id": s.id, "mime": s.writer.mime, "chunk_seconds": cfg.chunk_seconds,
                            "transcript": s.stream.text})
        listener = asyncio.create_task(_until_closed(ws))
        try:
            while True:
                getter = asyncio.create_task(s.outbox.get())
                done, _ = await asyncio.wait({getter, listener}, return_when=asyncio.FIRST_COMPLETED)
                if listener in done:
                    getter.cancel()
                    break
                item = getter.result()
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                    continue
                await ws.send_json(item)
                if item["type"] == "chunk":
                    worker().sent(s)
                elif item["type"] in ("end", "error"):
                    await ws.close(code=1000 if item["type"] == "end" else 1011,
                                   reason=item.get("reason", "error")[:100])
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            listener.cancel()
            with contextlib.suppress(StreamCharError):
                await worker().submit(lambda: worker().remove(s.id))  # the client is gone: free its session

    return app


async def _until_closed(ws: WebSocket) -> None:
    """Returns when the client closes (or sends anything: the stream is one-way)."""
    with contextlib.suppress(Exception):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


def _live(s):
    if s.ended is not None:
        raise HTTPException(409, f"session {s.id} has ended ({s.ended}); start a new one")
    return s


def _check_text(text: str, limit: int) -> None:
    if not text.strip():
        raise HTTPException(400, "text is empty: give some text to speak")
    if len(text) > limit:
        raise HTTPException(413, f"text has {len(text)} characters; the limit is {limit}")


async def _read(upload: UploadFile, field: str, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{field} is larger than the limit of {limit // 2**20} MiB")
    if not data:
        raise HTTPException(400, f"{field} is empty")
    return data


def _decode_image(data: bytes | None, default: Path, cfg):
    from streamchar.streaming.media import load_image

    if data is None:
        return load_image(default, cfg.video.height, cfg.video.width)
    return _via_file(data, "ref_image", lambda p: load_image(p, cfg.video.height, cfg.video.width))


def _decode_audio(data: bytes, cfg, whole: bool = False):
    """The reference voice; its first `history_seconds` unless `whole` (its pace is measured over all of it)."""
    from streamchar.streaming.media import load_audio

    return _via_file(data, "ref_audio", lambda p: load_audio(p, cfg.audio.sample_rate, cfg.audio.channels,
                                                              None if whole else cfg.stream.history_seconds))


def _via_file(data: bytes, field: str, load):
    """The loaders read files (PIL, PyAV probe by content): the upload goes to a temporary one; errors name the
    field, not the temporary path."""
    with tempfile.NamedTemporaryFile(suffix=".upload") as f:
        f.write(data)
        f.flush()
        try:
            return load(f.name)
        except StreamCharError as e:
            raise HTTPException(400, str(e).replace(f.name, field)) from None


def _version() -> str:
    from streamchar import __version__

    return __version__
