"""The worker alone (no HTTP): a client that never reads is closed as too slow while another stream goes on;
sessions nobody connects to expire; --max-sessions is a SessionLimit."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamchar.bundled import CHARACTER
from streamchar.serve.metrics import ServerMetrics
from streamchar.serve.worker import SessionLimit, Worker
from streamchar.streaming.media import load_image


def drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def test_a_slow_client_is_closed_and_does_not_stall_the_others(tiny_model):
    async def main():
        worker = Worker(tiny_model, asyncio.get_running_loop(), ServerMetrics(), max_sessions=4, queue_chunks=2,
                        max_lead_seconds=None, idle_seconds=60)
        worker.start()
        image = load_image(CHARACTER, 64, 64)
        try:
            slow = await worker.submit(lambda: worker.create(text="hello there", ref_image=image, max_seconds=30))
            fast = await worker.submit(lambda: worker.create(text="hello again", ref_image=image, max_seconds=5.5,
                                                             stop_at_end=False))
            slow.connected_at = fast.connected_at = time.monotonic()
            got = []
            while True:  # the fast client reads everything as it comes; the slow one reads nothing
                item = await asyncio.wait_for(fast.outbox.get(), timeout=60)
                got.append(item)
                if isinstance(item, dict) and item["type"] == "chunk":
                    worker.sent(fast)
                if isinstance(item, dict) and item["type"] in ("end", "error"):
                    break
            await asyncio.sleep(0.2)
            return got, drain(slow.outbox), slow, fast
        finally:
            worker.stop()

    got, slow_items, slow, fast = asyncio.run(main())
    assert got[-1] == {"type": "end", "reason": "max_seconds reached", "chunks": 4, "seconds": 5.5}
    assert slow.ended == "client too slow"
    assert slow_items[-1]["type"] == "error" and slow_items[-1]["reason"] == "client too slow"
    assert sum(isinstance(i, dict) and i["type"] == "chunk" for i in slow_items) == 2  # queue_chunks, then closed


def test_unused_sessions_expire_and_the_limit_holds(tiny_model):
    async def main():
        metrics = ServerMetrics()
        worker = Worker(tiny_model, asyncio.get_running_loop(), metrics, max_sessions=1, idle_seconds=0.3)
        worker.start()
        image = load_image(CHARACTER, 64, 64)
        try:
            s = await worker.submit(lambda: worker.create(text="hi", ref_image=image))
            with pytest.raises(SessionLimit, match="maximum of 1"):
                await worker.submit(lambda: worker.create(text="hi", ref_image=image))
            deadline = time.monotonic() + 10
            while s.id in worker.sessions and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return s, worker, metrics
        finally:
            worker.stop()

    s, worker, metrics = asyncio.run(main())
    assert s.id not in worker.sessions and s.ended == "closed"
    assert b"streamchar_sessions_expired_total 1.0" in metrics.text()
