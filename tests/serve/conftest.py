"""A real `streamchar serve` app on a free local port (uvicorn in a thread), with a tiny random-weights model."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest


@pytest.fixture(scope="session")
def tiny_model():
    from streamchar.config import tiny
    from streamchar.pipeline import StreamChar

    return StreamChar.from_config(tiny(), seed=0).eval()


@contextlib.contextmanager
def running_server(model, **options):
    """Yields the base URL of a server for `model` with ServeOptions(**options); stops it afterwards."""
    import uvicorn

    from streamchar.serve.app import ServeOptions, create_app

    app = create_app(model, ServeOptions(**options))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_ping_interval=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="session")
def start_server():
    """start_server(model, **ServeOptions) -> a context manager yielding (url, app)."""
    return running_server


@pytest.fixture
def server(tiny_model):
    with running_server(tiny_model, max_sessions=8, max_lead_seconds=None, idle_seconds=30) as (url, _):
        yield url
