"""The worker: one thread owns the model and streams every live session, one chunk at a time, round-robin.

The HTTP handlers never touch the model. They hand the worker jobs (create a session, append text,
interrupt, close) that it runs between chunks, and each session's client reads an outbox the worker fills:
the init segment, one fragment per chunk (bytes) and JSON events (dicts). A session starts streaming when
its client connects. Fairness: every streaming session gets one chunk before any gets a second. Bounded: a
client more than `queue_chunks` chunks behind is too slow for its stream and is closed with that reason, so
it never holds the others back. A session nobody connects to, or whose client is gone, expires after
`idle_seconds`. `max_lead_seconds` keeps generation at most that far ahead of playback (the time since the
first chunk), so text pushed into a live stream is heard soon; None lets it run as fast as it can.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field

from streamchar.errors import StreamCharError
from streamchar.streaming.fragments import FragmentWriter
from streamchar.streaming.session import StreamSession


@dataclass
class LiveSession:
    id: str
    stream: StreamSession
    writer: FragmentWriter
    outbox: asyncio.Queue  # bytes (init, fragments) and dicts (events), read by the client's WebSocket
    created: float = field(default_factory=time.monotonic)
    connected_at: float | None = None  # when the client's WebSocket attached (None: not yet)
    first_chunk_at: float | None = None  # when chunk 0 was ready: playback time 0
    last_seen: float = field(default_factory=time.monotonic)
    queued: int = 0  # chunks in the outbox, not yet sent to the client
    ended: str | None = None  # why the stream ended (None: live)

    @property
    def streaming(self) -> bool:
        return self.connected_at is not None and self.ended is None


class Worker:
    def __init__(self, model, loop: asyncio.AbstractEventLoop, metrics, *, max_sessions: int = 4,
                 queue_chunks: int = 8, idle_seconds: float = 60.0, max_lead_seconds: float | None = 4.0):
        self.model, self.loop, self.metrics = model, loop, metrics
        self.cfg = model.cfg
        self.max_sessions, self.queue_chunks = max_sessions, queue_chunks
        self.idle_seconds, self.max_lead_seconds = idle_seconds, max_lead_seconds
        self.sessions: dict[str, LiveSession] = {}
        self._jobs: list[tuple[concurrent.futures.Future, callable]] = []
        self._order = itertools.count()  # round-robin: the session served longest ago goes next
        self._served: dict[str, int] = {}
        self._wake = threading.Condition()
        self._stop = False
        self.error: BaseException | None = None  # what stopped the thread, if anything did
        self.thread = threading.Thread(target=self._run, name="streamchar-worker", daemon=True)

    # -- called from the event loop --------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self.thread.join(timeout=30)

    def submit(self, fn) -> asyncio.Future:
        """Run `fn()` on the worker thread between chunks; await the result."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._wake:
            if self._stop or not self.thread.is_alive():
                raise StreamCharError("the worker has stopped")
            self._jobs.append((future, fn))
            self._wake.notify()
        return asyncio.wrap_future(future)

    def create(self, **session_args) -> LiveSession:
        """(Worker thread.) A new session: the reference is encoded here, with the model."""
        if len([s for s in self.sessions.values() if s.ended is None]) >= self.max_sessions:
            raise SessionLimit(f"the server holds its maximum of {self.max_sessions} live sessions; "
                               "try again when one ends")
        stream = StreamSession(self.model, **session_args)
        cfg = self.cfg
        writer = FragmentWriter(fps=cfg.video.fps, width=cfg.video.width, height=cfg.video.height,
                                sample_rate=cfg.audio.sample_rate, channels=cfg.audio.channels,
                                frames_per_chunk=cfg.stream.frames_per_chunk)
        session = LiveSession(uuid.uuid4().hex, stream, writer, asyncio.Queue())
        self.sessions[session.id] = session
        self.metrics.sessions_created.inc()
        self._update_gauge()
        return session

    def sent(self, session: LiveSession) -> None:
        """(Event loop.) The client took a chunk from the outbox."""
        session.queued -= 1
        session.last_seen = time.monotonic()

    # -- the thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    while not self._stop and not self._jobs and self._next() is None:
                        self._wake.wait(timeout=0.05)
                        self._expire()
                    if self._stop:
                        break
                    jobs, self._jobs = self._jobs, []
                for future, fn in jobs:
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(fn())
                        except BaseException as e:  # the caller gets it
                            future.set_exception(e)
                session = self._next()
                if session is not None:
                    self._step(session)
                self._expire()
        except BaseException as e:  # a bug: every client hears of it, none waits forever
            self.error = e
            for s in list(self.sessions.values()):
                self._end(s, "error", message=f"the server's worker failed: {e.__class__.__name__}: {e}")
        finally:
            for s in list(self.sessions.values()):
                if s.ended is None:
                    self._end(s, "shutdown")

    def _next(self) -> LiveSession | None:
        """The streaming session served longest ago that may have its next chunk now."""
        now, best = time.monotonic(), None
        for s in self.sessions.values():
            if not s.streaming or s.queued >= self.queue_chunks:
                continue
            if self.max_lead_seconds is not None and s.first_chunk_at is not None:
                ahead = s.stream.seconds - (now - s.first_chunk_at)
                if ahead > self.max_lead_seconds:
                    continue
            if best is None or self._served.get(s.id, -1) < self._served.get(best.id, -1):
                best = s
        return best

    def _step(self, s: LiveSession) -> None:
        self._served[s.id] = next(self._order)
        t0 = time.perf_counter()
        try:
            chunk = s.stream.step()
            t1 = time.perf_counter()
            fragment = s.writer.write(chunk.frames, chunk.audio)
        except Exception as e:
            self._end(s, "error", message=f"{e.__class__.__name__}: {e}")
            return
        now = time.monotonic()
        chunk.timings.write = time.perf_counter() - t1
        first = s.first_chunk_at is None
        if first:
            s.first_chunk_at = now
            self._put(s, s.writer.init)
            self.metrics.first_fragment.observe(now - s.connected_at)
        # chunk k plays at first_chunk_at + k * chunk_seconds: it must be there by then
        deadline = s.first_chunk_at + chunk.index * self.cfg.chunk_seconds
        met = now <= deadline + 1e-3
        self.metrics.chunks.inc()
        self.metrics.chunk_seconds.observe(time.perf_counter() - t0)
        if not met:
            self.metrics.deadline_misses.inc()
        s.queued += 1
        self._put(s, fragment)
        self._put(s, {"type": "chunk", "index": chunk.index, "seconds": round(s.stream.seconds, 3),
                      "timings": {k: round(v, 4) for k, v in vars(chunk.timings).items()},
                      "total_s": round(chunk.timings.total, 4), "spoken": round(chunk.spoken, 2),
                      "transcript_tokens": len(s.stream.transcript), "spoken_text": s.stream.spoken_text(),
                      "transcript": s.stream.text, "deadline_met": met,
                      "late_s": round(max(0.0, now - deadline), 4), "ready_unix": time.time()})
        if s.stream.done:
            reason = "transcript spoken" if round(s.stream.state.spoken) >= len(s.stream.transcript) \
                else "max_seconds reached"
            self._end(s, reason)
        elif s.queued >= self.queue_chunks:
            self._end(s, "client too slow", message=f"the client is {s.queued} chunks behind its stream")

    def _end(self, s: LiveSession, reason: str, message: str | None = None) -> None:
        if s.ended is not None:
            return
        s.ended = reason
        try:
            tail = s.writer.close()
        except Exception:
            tail = b""
        if tail and s.first_chunk_at is not None and reason not in ("error", "client too slow"):
            self._put(s, tail)
        event = {"type": "error", "message": message or reason} if reason in ("error", "client too slow") \
            else {"type": "end", "reason": reason, "chunks": s.stream.state.index,
                  "seconds": round(s.stream.seconds, 3)}
        if reason == "client too slow":
            event["reason"] = reason
            self.metrics.slow_clients.inc()
        self._put(s, event)
        self._update_gauge()

    def remove(self, session_id: str) -> bool:
        """(Worker thread.) Forget a session (its client left or asked); True if it was there."""
        s = self.sessions.pop(session_id, None)
        self._served.pop(session_id, None)
        if s is None:
            return False
        if s.ended is None:
            self._end(s, "closed")
        self._update_gauge()
        return True

    def _expire(self) -> None:
        now = time.monotonic()
        for s in list(self.sessions.values()):
            waiting = s.connected_at is None and now - s.created > self.idle_seconds
            gone = s.ended is not None and now - s.last_seen > self.idle_seconds
            if waiting or gone:
                if s.ended is None:
                    self.metrics.expired.inc()
                self.remove(s.id)

    def _put(self, s: LiveSession, item) -> None:
        self.loop.call_soon_threadsafe(s.outbox.put_nowait, item)

    def _update_gauge(self) -> None:
        self.metrics.live.set(sum(1 for s in self.sessions.values() if s.ended is None))


class SessionLimit(StreamCharError):
    """--max-sessions live sessions already: the server answers 429."""
