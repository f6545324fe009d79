"""The streaming session: one chunk at a time, from transcript to pixels and waveform.

Per chunk (33 frames, 1.375 s):
  1. orchestrator prefix  [e_ref | E_txt | e_hist] encoded once -> KV cache            (`orchestrator` time)
  2. condition tokens     [reference | sink | motion] encoded once -> per-block KV     (`dit` time)
  3. denoise              4 student steps (or N teacher Euler steps); each step runs the orchestrator's 33
                          E_cond tokens on the cached prefix (-> c_a), then the DiT's noisy tokens on the
                          cached condition KV
  4. progress             the pointer reads c_a of the clean audio (t = 0): how much transcript is spoken
  5. decode               video latents -> 33 RGB frames, audio latents -> waveform    (`decode` time)
  6. state update         motion <- this chunk's latents (reused, never re-encoded); sink <- chunk 0;
                          history += this chunk's audio latents, at most 15 s: when the oldest chunk
                          leaves the window, the transcript it spoke (its pointer endpoint) leaves E_txt
The stream ends when the pointer reaches the end of the transcript, or at `max_seconds`.
State is bounded (motion, sink, <= 15 s of history), so memory does not grow with stream length.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from streamchar.device import sync
from streamchar.diffusion.samplers import euler_sample, student_sample, student_timesteps
from streamchar.errors import StreamCharError


@dataclass
class ChunkTimings:
    orchestrator: float = 0.0  # prefix + the E_cond passes of every step + the pointer
    dit: float = 0.0  # condition pass + noisy passes
    decode: float = 0.0  # both codecs
    write: float = 0.0  # filled in by whoever writes the chunk

    @property
    def total(self) -> float:
        return self.orchestrator + self.dit + self.decode + self.write


@dataclass
class Chunk:
    index: int
    frames: np.ndarray  # (33, H, W, 3) uint8
    audio: np.ndarray  # (channels, samples) float32 in [-1, 1]
    spoken: float  # transcript tokens spoken by the end of this chunk (pointer endpoint, absolute)
    timings: ChunkTimings


@dataclass
class HistoryEntry:
    audio: torch.Tensor  # (1, T_a, C_a) one chunk's audio latents
    spoken: float  # absolute pointer endpoint after that chunk


@dataclass
class StreamState:
    index: int = 0
    motion: torch.Tensor | None = None  # (1, C, K, h, w) the previous chunk's video latents
    sink: torch.Tensor | None = None  # (1, C, K, h, w) chunk 0's video latents
    history: deque = field(default_factory=deque)  # of HistoryEntry, at most `history_chunks`
    text_offset: int = 0  # transcript tokens dropped together with old history
    spoken: float = 0.0


class StreamSession:
    """Streams one character speaking one transcript. Iterate it to get `Chunk`s."""

    def __init__(self, model, *, text: str, ref_image: np.ndarray, ref_audio: np.ndarray | None = None,
                 prompt: str = "", seed: int = 0, max_seconds: float | None = None, sampler: str = "student",
                 stop_at_end: bool = True):
        """model: a `streamchar.pipeline.StreamChar`; ref_image: (H, W, 3) uint8 at the model's size;
        ref_audio: (channels, samples) float32 at the audio codec's rate, or None."""
        cfg = model.cfg
        if not isinstance(text, str) or not text.strip():
            raise StreamCharError("the transcript is empty: give some text to speak")
        max_seconds = cfg.stream.max_seconds if max_seconds is None else max_seconds
        if not max_seconds > 0:
            raise StreamCharError(f"max_seconds must be > 0, got {max_seconds}")
        if sampler not in ("student", "teacher"):
            raise StreamCharError(f"sampler must be 'student' or 'teacher', got {sampler!r}")
        H, W = cfg.video.height, cfg.video.width
        if not isinstance(ref_image, np.ndarray) or ref_image.shape != (H, W, 3) or ref_image.dtype != np.uint8:
            got = getattr(ref_image, "shape", type(ref_image).__name__)
            raise StreamCharError(f"reference image must be a ({H}, {W}, 3) uint8 array, got {got}")
        self.model, self.cfg = model, cfg
        self.sampler, self.stop_at_end, self.max_seconds = sampler, stop_at_end, max_seconds
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.state = StreamState()
        self.done = False

        tok = model.tokenizer
        self.transcript = tok(text.strip(), add_special_tokens=False)["input_ids"]
        if not self.transcript:
            raise StreamCharError("the transcript has no tokens after tokenization")
        sep = [tok.eos_token_id] if tok.eos_token_id is not None else []
        self.prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"] + sep if prompt else sep
        self.timesteps = student_timesteps(cfg.stream.student_timesteps, cfg.stream.shift)

        # Encoded once per stream: prompt context, reference frame latent, reference voice latents.
        with torch.no_grad():
            self.context = model.text_encoder.encode([prompt])  # (1, L_txt, text_dim)
            img = torch.from_numpy(ref_image).to(self.device).permute(2, 0, 1)[None, :, None]  # (1, 3, 1, H, W)
            img = img.to(model.dtype) / 127.5 - 1.0
            self.reference = model.video_codec.encode(img)  # (1, C, 1, h, w)
            self.ref_audio = None
            if ref_audio is not None:
                wav = torch.from_numpy(np.ascontiguousarray(ref_audio, dtype=np.float32)).to(self.device)
                self.ref_audio = model.audio_codec.encode(wav[None].to(model.dtype))  # (1, T_ref, C_a)

    # -- one chunk ------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> Chunk:
        if self.done:
            raise RuntimeError("this stream has ended; start a new StreamSession")
        m, cfg, st, dev = self.model, self.cfg, self.state, self.device
        timings = ChunkTimings()

        # 1. Orchestrator prefix: [e_ref | prompt + remaining transcript | e_hist], once per chunk.
        t0 = time.perf_counter()
        text_ids = torch.tensor([self.prompt_ids + self.transcript[st.text_offset:]], device=dev)
        hist = torch.cat([h.audio for h in st.history], 1) if st.history else None
        prefix = m.orchestrator.encode_prefix(self.ref_audio, text_ids, len(self.prompt_ids), hist)
        sync(dev)
        timings.orchestrator += time.perf_counter() - t0

        # 2. Condition tokens: their keys and values, once per chunk.
        t0 = time.perf_counter()
        cache = m.dit.encode_conditions(m.dit.condition_frames(self.reference, st.sink, st.motion), self.context)
        sync(dev)
        timings.dit += time.perf_counter() - t0

        # 3. Denoise: every step = 33 orchestrator tokens on the prefix cache + the DiT's noisy tokens.
        def velocity(x_v, x_a, t):
            t0 = time.perf_counter()
            c_a, _ = m.orchestrator.condition(prefix, x_a, t)
            sync(dev)
            t1 = time.perf_counter()
            v = m.dit(x_v, x_a, c_a, t, cache)
            sync(dev)
            timings.orchestrator += t1 - t0
            timings.dit += time.perf_counter() - t1
            return v

        h, w = cfg.latent_size
        shape_v = (1, cfg.video.latent_channels, cfg.video_latent_frames, h, w)
        shape_a = (1, cfg.audio_latent_frames, cfg.audio.latent_channels)
        x_v = torch.randn(shape_v, generator=self.generator, device=dev, dtype=m.dtype)
        x_a = torch.randn(shape_a, generator=self.generator, device=dev, dtype=m.dtype)
        if self.sampler == "student":
            z_v, z_a = student_sample(velocity, x_v, x_a, self.timesteps, generator=self.generator)
        else:
            z_v, z_a = euler_sample(velocity, x_v, x_a, cfg.stream.teacher_steps, cfg.stream.shift)

        # 4. Progress: the pointer on the clean audio's condition states.
        t0 = time.perf_counter()
        _, hidden = m.orchestrator.condition(prefix, z_a, torch.zeros(1, device=dev))
        spoken = st.text_offset + m.orchestrator.pointer(prefix, hidden).endpoint.item()
        st.spoken = max(st.spoken, spoken)  # progress never goes backwards
        sync(dev)
        timings.orchestrator += time.perf_counter() - t0

        # 5. Decode both modalities.
        t0 = time.perf_counter()
        frames = m.video_codec.decode(z_v)  # (1, 3, 33, H, W) in [-1, 1]
        audio = m.audio_codec.decode(z_a)  # (1, channels, samples)
        frames = ((frames[0].permute(1, 2, 3, 0).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        audio = audio[0].float().cpu().numpy()
        timings.decode = time.perf_counter() - t0

        # 6. State: motion <- this chunk, sink <- chunk 0, history window of whole chunks <= 15 s.
        st.motion = z_v
        if st.sink is None:
            st.sink = z_v
        st.history.append(HistoryEntry(z_a, st.spoken))
        while len(st.history) > cfg.history_chunks:
            dropped = st.history.popleft()
            st.text_offset = max(st.text_offset, min(int(dropped.spoken), len(self.transcript) - 1))
        chunk = Chunk(st.index, frames, audio, st.spoken, timings)
        st.index += 1
        finished = self.stop_at_end and round(st.spoken) >= len(self.transcript)
        self.done = finished or st.index * cfg.chunk_seconds >= self.max_seconds - 1e-9
        return chunk

    def __iter__(self):
        while not self.done:
            yield self.step()

    @property
    def seconds(self) -> float:
        return self.state.index * self.cfg.chunk_seconds
