"""`streamchar serve` over real HTTP and WebSocket round trips on a local port."""

from __future__ import annotations

import asyncio
import io
import json
import time

import av
import httpx
import pytest
import websockets

CHUNK_FRAMES, FPS = 33, 24


def start(url: str, **fields) -> dict:
    data = {"text": "hello there, how are you today", **{k: str(v) for k, v in fields.items() if k != "files"}}
    r = httpx.post(f"{url}/v1/sessions", data=data, files=fields.get("files"), timeout=60)
    assert r.status_code == 201, r.text
    return r.json()


async def receive(url: str, session: dict, stop_after: int | None = None, **connect) -> tuple[bytes, list[dict]]:
    """The whole stream: the bytes of every binary message and the JSON events, until `end` (or `stop_after`
    chunks, then the client leaves)."""
    data, events = b"", []
    async with websockets.connect(url.replace("http", "ws") + session["stream"], max_size=None, **connect) as ws:
        async for message in ws:
            if isinstance(message, bytes):
                data += message
                continue
            event = json.loads(message)
            events.append(event)
            if event["type"] in ("end", "error"):
                break
            if stop_after is not None and sum(e["type"] == "chunk" for e in events) >= stop_after:
                break
    return data, events


def decode(data: bytes) -> tuple[int, float]:
    """-> (video frames, audio seconds) of a fragmented MP4 by PyAV."""
    with av.open(io.BytesIO(data)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(io.BytesIO(data)) as c:
        samples = [f for f in c.decode(audio=0)]
    return frames, sum(f.samples for f in samples) / samples[0].sample_rate


def test_a_stream_over_websocket_decodes_to_its_duration(server):
    session = start(server, max_seconds=4)  # rounded up to 3 chunks
    assert session["mime"].startswith('video/mp4; codecs="avc1.') and session["chunk_seconds"] == 1.375
    data, events = asyncio.run(receive(server, session))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end", kinds
    chunks = [e for e in events if e["type"] == "chunk"]
    assert [c["index"] for c in chunks] == list(range(len(chunks))) and 1 <= len(chunks) <= 3
    for c in chunks:
        assert set(c["timings"]) == {"orchestrator", "dit", "decode", "write"} and c["total_s"] > 0
        assert isinstance(c["deadline_met"], bool) and c["spoken"] >= 0 and c["transcript"].startswith("hello")
    frames, seconds = decode(data)
    assert frames == CHUNK_FRAMES * len(chunks)
    assert seconds == pytest.approx(len(chunks) * CHUNK_FRAMES / FPS, abs=0.06)
    assert events[-1]["chunks"] == len(chunks)
    health = httpx.get(f"{server}/v1/health").json()
    assert health["status"] == "ok" and health["sessions"] == 0


def test_text_and_interrupt_reach_the_transcript(server):
    paced = start(server, max_seconds=2, pace=1.5)
    assert paced["pace"] == 1.5  # the plan's pace, as asked
    assert httpx.delete(f"{server}/v1/sessions/{paced['id']}").status_code in (200, 204)
    session = start(server, max_seconds=2)
    assert session["pace"] == 1.0
    r = httpx.post(f"{server}/v1/sessions/{session['id']}/text", json={"text": "and one more thing"})
    assert r.status_code == 200 and r.json()["transcript"] == "hello there, how are you today and one more thing"
    r = httpx.post(f"{server}/v1/sessions/{session['id']}/interrupt", json={"text": "wait, stop"})
    assert r.status_code == 200 and r.json()["transcript"] == "wait, stop"  # nothing was spoken yet
    _, events = asyncio.run(receive(server, session))
    assert [e for e in events if e["type"] == "chunk"][0]["transcript"] == "wait, stop"
    r = httpx.post(f"{server}/v1/sessions/{session['id']}/text", json={"text": "too late"})
    assert r.status_code in (404, 409)  # the stream has ended (and its session may be gone)


def test_eight_concurrent_sessions_all_complete(server):
    sessions = [start(server, max_seconds=2.75, seed=i) for i in range(8)]

    async def all_streams():
        return await asyncio.gather(*(receive(server, s) for s in sessions))

    results = asyncio.run(all_streams())
    for data, events in results:
        assert events[-1]["type"] == "end", events[-1]
        n = sum(e["type"] == "chunk" for e in events)
        assert decode(data)[0] == CHUNK_FRAMES * n
    metrics = httpx.get(f"{server}/metrics").text
    assert "streamchar_chunks_total" in metrics and "streamchar_first_fragment_seconds_bucket" in metrics


def test_a_client_that_leaves_frees_its_session(server):
    session = start(server, max_seconds=60)
    data, events = asyncio.run(receive(server, session, stop_after=1))
    assert data and events[-1]["type"] == "chunk"
    deadline = time.monotonic() + 20
    while httpx.get(f"{server}/v1/health").json()["sessions"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{server}/v1/health").json()["sessions"] == 0
    assert httpx.delete(f"{server}/v1/sessions/{session['id']}").status_code == 404


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_memory_stays_flat_over_repeated_sessions(server):
    def one():
        asyncio.run(receive(server, start(server, max_seconds=1.375)))

    for _ in range(3):
        one()
    before = _rss_mb()
    for _ in range(8):
        one()
    assert _rss_mb() - before < 40, (before, _rss_mb())


BAD = {
    "empty text": ({"text": "  "}, None, 400, "empty"),
    "long text": ({"text": "a" * 20_001}, None, 413, "limit"),
    "long prompt": ({"text": "hi", "prompt": "p" * 2_001}, None, 413, "prompt"),
    "bad seed": ({"text": "hi", "seed": "-1"}, None, 422, "seed"),
    "bad max_seconds": ({"text": "hi", "max_seconds": "nan"}, None, 400, "max_seconds"),
    "garbage image": ({"text": "hi"}, {"ref_image": ("x.png", b"\x89PNG garbage")}, 400, "ref_image"),
    "empty image": ({"text": "hi"}, {"ref_image": ("x.png", b"")}, 400, "ref_image is empty"),
    "garbage audio": ({"text": "hi"}, {"ref_audio": ("v.wav", b"RIFF0000WAVE garbage")}, 400, "ref_audio"),
    "ref_text alone": ({"text": "hi", "ref_text": "what a voice says"}, None, 400, "upload ref_audio with it"),
    "pace too slow": ({"text": "hi", "pace": "9"}, None, 400, "pace must be in"),
    "no text": ({}, None, 422, "text"),
}


@pytest.mark.parametrize("data,files,status,words", BAD.values(), ids=BAD.keys())
def test_bad_requests_get_4xx_json(server, data, files, status, words):
    r = httpx.post(f"{server}/v1/sessions", data=data, files=files, timeout=60)
    assert r.status_code == status, r.text
    assert words in json.dumps(r.json()["detail"])


def test_errors_on_sessions_and_limits(tiny_model, start_server):
    with start_server(tiny_model, max_sessions=1, token="s3cret", max_image_bytes=1000,
                        max_lead_seconds=None) as (url, _):
        auth = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/v1/sessions", data={"text": "hi"}).status_code == 401
        r = httpx.post(f"{url}/v1/sessions", data={"text": "hi"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and "token" in r.json()["detail"]
        big = {"ref_image": ("x.png", b"0" * 2000)}
        r = httpx.post(f"{url}/v1/sessions", data={"text": "hi"}, files=big, headers=auth)
        assert r.status_code == 413 and "ref_image" in r.json()["detail"]
        r = httpx.post(f"{url}/v1/sessions", data={"text": "hi", "max_seconds": "3"}, headers=auth)
        assert r.status_code == 201
        session = r.json()
        r = httpx.post(f"{url}/v1/sessions", data={"text": "again"}, headers=auth)
        assert r.status_code == 429 and "maximum of 1" in r.json()["detail"]
        assert httpx.post(f"{url}/v1/sessions/nope/text", json={"text": "x"}, headers=auth).status_code == 404
        r = httpx.post(f"{url}/v1/sessions/{session['id']}/text", json={"txt": "x"}, headers=auth)
        assert r.status_code == 422
        r = httpx.post(f"{url}/v1/sessions/{session['id']}/text", content=b"{not json", headers=auth)
        assert r.status_code == 422

        async def refused(path, **kw):
            with pytest.raises(websockets.exceptions.WebSocketException) as e:
                async with websockets.connect(url.replace("http", "ws") + path, **kw) as ws:
                    await ws.recv()
            return str(e.value)

        assert "4401" in asyncio.run(refused(session["stream"]))
        assert "4404" in asyncio.run(refused("/v1/sessions/nope/stream?token=s3cret"))
        data, events = asyncio.run(receive(url, session, additional_headers=auth))
        assert events[-1]["type"] == "end" and decode(data)[0] > 0
        assert httpx.get(f"{url}/v1/health").status_code == 200  # health needs no token
        spec = httpx.get(f"{url}/openapi.json").json()
        assert {"/v1/sessions", "/v1/sessions/{session_id}/text", "/v1/health"} <= set(spec["paths"])
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and "MediaSource" in page.text


def test_worker_round_robin_gives_every_session_a_chunk_in_turn(tiny_model, start_server):
    """Two sessions connected together: their chunks alternate instead of one stream finishing first."""
    with start_server(tiny_model, max_sessions=2, max_lead_seconds=None) as (url, app):
        a, b = start(url, max_seconds=4.1), start(url, max_seconds=4.1)
        order = []

        async def watch(session, name):
            async with websockets.connect(url.replace("http", "ws") + session["stream"], max_size=None) as ws:
                async for message in ws:
                    if isinstance(message, str):
                        event = json.loads(message)
                        if event["type"] == "chunk":
                            order.append((name, time.monotonic()))
                        if event["type"] in ("end", "error"):
                            return

        async def both():
            await asyncio.gather(watch(a, "a"), watch(b, "b"))

        asyncio.run(both())
        names = [n for n, _ in sorted(order, key=lambda x: x[1])]
        assert sorted(names) == sorted(names) and names.count("a") >= 1 and names.count("b") >= 1
        first_a, first_b = names.index("a"), names.index("b")
        assert abs(first_a - first_b) == 1  # the second session's first chunk comes right after the first's


@pytest.mark.parametrize("args,words", [
    (["--checkpoint", "tiny-codecs"], "holds the codecs only"),
    (["--checkpoint", "tiny", "--random-init"], "exclude each other"),
    (["--random-init", "--port", "70000"], "--port must be between 1 and 65535"),
    (["--random-init", "--max-sessions", "0"], "--max-sessions must be >= 1"),
    (["--random-init", "--token", " "], "--token is empty"),
    (["--random-init", "--ref-image", "/nonexistent.png"], "--ref-image not found"),
])
def test_serve_bad_options_fail_in_one_line(capsys, args, words):
    from streamchar.cli import main

    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_streamchar_serve_command_answers(tmp_path):
    """The command itself: a subprocess on a free port answers /v1/health, then stops on SIGTERM."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamchar.cli", "serve", "--random-init", "--port", str(port),
                             "--device", "cpu"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["preset"] == "tiny"
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    err = proc.stderr.read()
    assert code in (0, -15) and "Traceback" not in err, err  # uvicorn shuts down, then re-raises SIGTERM
    assert "RANDOM weights" in err
