"""Where a stream ended: against the truth's last word, and against the stream's own last voiced frame.

A stream ends when the pointer says the transcript is spoken. `stream_end` places that end against the chunk
holding the true clip's last word (SynthTalk's word timings) and, given `voice_end` of the stream's soundtrack,
against the chunk of its own last voiced frame; `stream_end_metrics` turns the per-stream results into the
report's two shares.
"""

from __future__ import annotations

import math

import numpy as np

from streamchar.streaming.media import voiced_span


def voice_end(audio: np.ndarray, sample_rate: int) -> float | None:
    """Where the soundtrack's last voiced 20 ms frame ends, in seconds (`streaming.media.voiced_span`). None
    when nothing is voiced."""
    span = voiced_span(audio, sample_rate)
    return None if span is None else span[1]


def stream_end(timings: dict, protocol_seconds: float, voice_end_s: float | None = None) -> dict:
    """Where a stream ended against the chunk that holds its truth's last word (`speech_end_s`). A stream its
    length cap stopped before that chunk cannot show where the pointer would have ended it: `censored`, left
    out of the share (older timings files lack "ended_by": capped when the stream reached the protocol's
    length). With `voice_end_s` (`voice_end` of the stream's own soundtrack) also against the chunk of its own
    last voiced frame: the truth's timing carries its voice's speaking rate, the stream speaks at its own, so
    this one asks only whether the stream stopped when its speech did (`voice_error_chunks` >= 0: chunks of
    silence after it)."""
    chunk = float(timings["chunk_seconds"])
    truth = math.ceil(float(timings["speech_end_s"]) / chunk - 1e-9)
    chunks = len(timings["per_chunk"])
    capped = (timings["ended_by"] == "max_seconds" if "ended_by" in timings
              else chunks * chunk >= protocol_seconds - 1e-9)
    out = {"chunks": chunks, "truth_chunks": truth, "error_chunks": chunks - truth,
           "censored": bool(capped and truth > chunks)}
    if voice_end_s is not None:  # against the stream's own speech: the chunk its last voiced frame is in
        voice = math.ceil(voice_end_s / chunk - 1e-9)
        out.update(voice_chunks=voice, voice_error_chunks=chunks - voice, capped=bool(capped))
    return out


def stream_end_metrics(judged: list[dict], skipped: dict) -> dict:
    """`stream_end` of every timed stream -> the report's metrics, as keyword arguments of a metric record
    (value, backend_record, direction, videos, extras). A share nothing can judge is named in `skipped`."""
    out = {}
    ends = [j["error_chunks"] for j in judged if not j.get("censored")]
    if ends:
        out["stream_end_within_one_chunk"] = dict(
            value=float(np.mean([abs(x) <= 1 for x in ends])),
            backend_record={"backend": "timings files (speech_end_s from the truth's word timings)", "proxy": False},
            direction="higher", videos=len(ends),
            aggregate="share of streams whose chunk count is within one of the chunk holding the truth's last "
                      "word (streams the length cap stopped before it are left out: censored)",
            mean_error_chunks=float(np.mean(ends)), censored=len(judged) - len(ends))
    own = [j["voice_error_chunks"] for j in judged if "voice_error_chunks" in j and not j["capped"]]
    if own:
        out["stream_end_after_own_speech"] = dict(
            value=float(np.mean([0 <= x <= 1 for x in own])),
            backend_record={"backend": "timings files and the soundtrack's last voiced frame (RMS within 30 dB of "
                                       "its peak)", "proxy": True},
            direction="higher", videos=len(own),
            aggregate="share of streams that ended in the chunk of their own last voiced frame or the next (streams "
                      "their length cap stopped are left out)",
            mean_error_chunks=float(np.mean(own)), capped=len(judged) - len(own))
    if not ends and judged:
        skipped["stream_end_within_one_chunk"] = (
            f"all {len(judged)} streams were stopped by their length cap before the truth's last word (censored): "
            "give --seconds beyond the clips' speech to see where the pointer ends them")
    return out
