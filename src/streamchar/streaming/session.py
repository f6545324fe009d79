"""The streaming session: one chunk at a time, from transcript to pixels and waveform.

Per chunk (33 frames, 1.375 s):
  0. record               the chunk's inputs from the stream's inputs and state (streaming/record.py)
  1. orchestrator prefix  [e_ref | E_txt | e_hist] encoded once -> KV cache            (`orchestrator` time)
  2. condition tokens     [reference | sink | motion] encoded once -> per-block KV     (`dit` time)
  3. denoise              the teacher's Euler / ancestral / renoise steps with classifier-free guidance (a pretrained model) or
                          the 4 student steps (a distilled one); each step runs the orchestrator's 33 E_cond
                          tokens on the cached prefix (-> c_a), then the DiT's noisy tokens on the cached
                          condition KV. Guidance batches the unconditional row (prompt, reference frame and
                          c_a dropped) with the conditional one in the same DiT pass.
  4. progress             the pointer reads c_a of the clean audio (t = 0): how much transcript is spoken
  5. decode               video latents -> 33 RGB frames, audio latents -> waveform    (`decode` time);
                          iterating a session pipelines it: chunk k decodes on a second thread (a CUDA
                          stream on GPU) while chunk k+1 runs steps 0-4
  6. state update         motion <- this chunk's latents (reused, never re-encoded); sink <- chunk 0;
                          history += this chunk's audio latents, exactly 15 s kept: when a chunk's audio has
                          left the window, the transcript it spoke (its pointer endpoint) leaves E_txt
The stream ends when the pointer reaches the end of the transcript, or at `max_seconds`.
State is bounded (motion, sink, 15 s of history), so memory does not grow with stream length.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from streamchar.config import SOLVERS
from streamchar.device import StageClock
from streamchar.diffusion.samplers import (ancestral_sample, euler_sample, guided, renoise_sample, student_sample,
                                          student_timesteps)
from streamchar.errors import StreamCharError
from streamchar.models.timeline import plan_end, reference_pace
from streamchar.streaming.media import voiced_span
from streamchar.streaming.record import StreamInputs, StreamState, advance, chunk_record, collate

PACE_RANGE = (0.4, 2.5)  # a plan's pace: beyond it a voice is not speaking the text it is said to


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
class Latents:
    """A generated chunk before decoding."""

    index: int
    z_v: torch.Tensor  # (1, C, K, h, w) video latents
    z_a: torch.Tensor  # (1, T_a, C_a) audio latents
    spoken: float  # the pointer's absolute endpoint after it
    clock: StageClock  # the orchestrator / DiT times of its generation
    ready: object = None  # CUDA: an event after its last kernel (the decode stream waits on it)


@dataclass
class Chunk:
    index: int
    frames: np.ndarray  # (33, H, W, 3) uint8
    audio: np.ndarray  # (channels, samples) float32 in [-1, 1]
    spoken: float  # transcript tokens spoken by the end of this chunk (pointer endpoint, absolute)
    timings: ChunkTimings
    wall: float | None = None  # in a stream: time since the previous chunk was delivered (set by the consumer)


class StreamSession:
    """Streams one character speaking one transcript. Iterate it to get `Chunk`s."""

    def __init__(self, model, *, text: str, ref_image: np.ndarray, ref_audio: np.ndarray | None = None,
                 ref_text: str | None = None, pace: float | None = None, prompt: str = "", seed: int = 0,
                 max_seconds: float | None = None, sampler: str | None = None,
                 guidance: tuple[float, float] | None = None, stop_at_end: bool = True, solver: str | None = None):
        """model: a `streamchar.pipeline.StreamChar`; ref_image: (H, W, 3) uint8 at the model's size;
        ref_audio: (channels, samples) float32 at the audio codec's rate, or None (e_ref reads its first
        `stream.history_seconds`); ref_text: what ref_audio says, to speak at its pace; pace: every planned
        duration times it (> 1 slower), None = ref_audio's pace with ref_text, else 1 (the training voices'
        mean; models/timeline.py); sampler: 'teacher' or
        'student', None = the model's (`stream.sampler`: teacher unless distilled); guidance: the teacher's
        (video, audio) guidance scales, None = the model's (`stream.guidance_*`); solver: the teacher's rule,
        'euler', 'ancestral' or 'renoise', None = the model's (`stream.teacher_solver`)."""
        cfg = model.cfg
        if not isinstance(text, str) or not text.strip():
            raise StreamCharError("the transcript is empty: give some text to speak")
        max_seconds = cfg.stream.max_seconds if max_seconds is None else max_seconds
        if not max_seconds > 0:
            raise StreamCharError(f"max_seconds must be > 0, got {max_seconds}")
        sampler = cfg.stream.sampler if sampler is None else sampler
        if sampler not in ("student", "teacher"):
            raise StreamCharError(f"sampler must be 'student' or 'teacher', got {sampler!r}")
        solver = cfg.stream.teacher_solver if solver is None else solver
        if solver not in SOLVERS:
            raise StreamCharError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
        guidance = (cfg.stream.guidance_video, cfg.stream.guidance_audio) if guidance is None else tuple(guidance)
        if len(guidance) != 2 or not all(0 < g < float("inf") for g in guidance):
            raise StreamCharError(f"guidance must be two scales > 0 (video, audio), got {guidance}")
        H, W = cfg.video.height, cfg.video.width
        if not isinstance(ref_image, np.ndarray) or ref_image.shape != (H, W, 3) or ref_image.dtype != np.uint8:
            got = (f"a {tuple(ref_image.shape)} {ref_image.dtype} array" if isinstance(ref_image, np.ndarray)
                   else type(ref_image).__name__)
            raise StreamCharError(f"reference image must be a ({H}, {W}, 3) uint8 array, got {got}")
        C = cfg.audio.channels
        if ref_audio is not None and (not isinstance(ref_audio, np.ndarray) or ref_audio.ndim != 2
                                      or ref_audio.shape[0] != C or ref_audio.shape[1] == 0
                                      or not np.issubdtype(ref_audio.dtype, np.floating)):
            got = (f"a {tuple(ref_audio.shape)} {ref_audio.dtype} array" if isinstance(ref_audio, np.ndarray)
                   else type(ref_audio).__name__)
            raise StreamCharError(f"reference audio must be a ({C}, samples) float array at "
                                  f"{cfg.audio.sample_rate} Hz, got {got}")
        if ref_text is not None and (ref_audio is None or not isinstance(ref_text, str) or not ref_text.strip()):
            given = "given" if ref_audio is not None else None
            raise StreamCharError("the reference text is what the reference audio says: give both, the text not "
                                  f"empty (got ref_text={ref_text!r}, ref_audio {given})")
        if pace is not None and not PACE_RANGE[0] <= pace <= PACE_RANGE[1]:
            raise StreamCharError(f"pace must be in [{PACE_RANGE[0]}, {PACE_RANGE[1]}] (1 = the training voices' "
                                  f"mean, > 1 slower), got {pace}")
        self.model, self.cfg = model, cfg
        self.sampler, self.stop_at_end, self.max_seconds = sampler, stop_at_end, max_seconds
        self.solver = solver if sampler == "teacher" else None
        self.guidance = guidance if sampler == "teacher" and guidance != (1.0, 1.0) else None
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.state = StreamState()
        self.done = False
        self.ended_by: str | None = None  # "transcript" (the pointer read it all spoken) or "max_seconds"
        self._text_kv = None  # the prompt's keys and values in every DiT block, made at the first chunk

        tok = model.tokenizer
        self.text = text.strip()
        enc = tok(self.text, add_special_tokens=False, return_offsets_mapping=True)
        transcript = enc["input_ids"]
        if not transcript:
            raise StreamCharError("the transcript has no tokens after tokenization")
        self._ends = [b for _, b in enc["offset_mapping"]]  # per token: where it ends in self.text (characters)
        self.timesteps = student_timesteps(cfg.stream.student_timesteps, cfg.stream.shift)

        # Encoded once per stream: prompt context, reference frame latent, reference voice latents.
        with torch.no_grad():
            img = torch.from_numpy(ref_image).to(self.device).permute(2, 0, 1)[None, :, None]  # (1, 3, 1, H, W)
            img = img.to(model.dtype) / 127.5 - 1.0
            voice = None
            if ref_audio is not None:  # at most the history's length, as training's reference voices
                wav = ref_audio[:, :round(cfg.stream.history_seconds * cfg.audio.sample_rate)]
                wav = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(self.device)
                voice = model.audio_codec.encode(wav[None].to(model.dtype))[0]  # (T_ref, C_a)
            ids = torch.tensor(transcript, dtype=torch.int64, device=self.device)
            self.pace = float(pace) if pace is not None else (
                self._reference_pace(ref_audio, ref_text) if ref_text is not None else 1.0)
            self.inputs = StreamInputs(
                reference=model.video_codec.encode(img)[0],  # (C, 1, h, w)
                ref_audio=voice,
                prompt_ids=prompt_ids(tok, prompt), null_prompt_ids=prompt_ids(tok, ""),
                transcript=ids,
                context=prompt_context(model, prompt)[0],  # (L_ctx, text_dim)
                audio_channels=cfg.audio.latent_channels,
                plan=model.orchestrator.plan(ids, pace=self.pace))  # when each token is spoken (models/timeline.py)

    def _reference_pace(self, ref_audio: np.ndarray, ref_text: str) -> float:
        """The reference voice's pace: its voiced span over what the plan gives its text (models/timeline.py)."""
        span = voiced_span(ref_audio, self.cfg.audio.sample_rate)
        if span is None:
            raise StreamCharError("the reference audio is silent: its pace cannot be measured from ref_text")
        ids = self.model.tokenizer(ref_text.strip(), add_special_tokens=False)["input_ids"]
        if not ids:
            raise StreamCharError("the reference text has no tokens after tokenization")
        durations = self.model.orchestrator.token_durations
        pace = reference_pace(torch.tensor(ids, device=durations.device), durations,
                              (span[1] - span[0]) * self.cfg.audio_latent_rate)
        if not PACE_RANGE[0] <= pace <= PACE_RANGE[1]:
            raise StreamCharError(f"the reference audio speaks its text at {pace:.2f} times the model's mean pace "
                                  f"(at most {PACE_RANGE[1]}, at least {PACE_RANGE[0]}): is ref_text what it says?")
        return pace

    @property
    def transcript(self) -> list[int]:
        return self.inputs.transcript.tolist()

    # -- live edits: the orchestrator reads the transcript anew every chunk, so they count from the next one --
    def append_text(self, text: str) -> None:
        """Add `text` to the end of the transcript; the pointer's end follows the new end. A stream that had
        ended because its transcript was spoken goes on (not one that reached `max_seconds`)."""
        ids, ends = self._tokens(text)
        inp = self.inputs  # the new words are planned from where the plan ends, or from the next chunk
        durations = self.model.orchestrator.token_durations * self.pace
        start = max(plan_end(inp.transcript, durations, inp.plan), self.state.frames)
        inp.plan = torch.cat([inp.plan, self.model.orchestrator.plan(ids, start=start, pace=self.pace)])
        inp.transcript = torch.cat([inp.transcript, ids])
        self._ends += [len(self.text) + b for b in ends]
        self.text = f"{self.text} {text.strip()}"
        self._reopen()

    def interrupt(self, text: str) -> None:
        """Barge-in: replace the part of the transcript not yet spoken (after the pointer) with `text`. The
        stream carries on from its current motion, sink and history."""
        ids, ends = self._tokens(text)
        spoken = max(self.state.text_offset, round(self.state.spoken))
        inp = self.inputs  # the new words are planned from the next chunk on
        inp.plan = torch.cat([inp.plan[:spoken], self.model.orchestrator.plan(ids, start=float(self.state.frames),
                                                                             pace=self.pace)])
        inp.transcript = torch.cat([inp.transcript[:spoken], ids])
        said = self._said(spoken)
        base = len(said) if said else -1  # `ends` count from the space before the new text
        self._ends = self._ends[:spoken] + [max(base + b, 0) for b in ends]
        self.text = f"{said} {text.strip()}".strip()
        self._reopen()

    def spoken_text(self) -> str:
        """The transcript up to the pointer: what has been said so far (its text, whatever the frontend)."""
        return self._said(round(self.state.spoken))

    def _said(self, n: int) -> str:
        """The text of the transcript's first `n` tokens."""
        n = min(n, len(self._ends))
        return self.text[:self._ends[n - 1]].strip() if n > 0 else ""

    def _tokens(self, text: str) -> tuple[torch.Tensor, list[int]]:
        """`text`'s token ids and where each ends, in characters of " " + text."""
        if not isinstance(text, str) or not text.strip():
            raise StreamCharError("the text is empty: give some text to speak")
        enc = self.model.tokenizer(" " + text.strip(), add_special_tokens=False, return_offsets_mapping=True)
        if not enc["input_ids"]:
            raise StreamCharError("the text has no tokens after tokenization")
        return (torch.tensor(enc["input_ids"], dtype=torch.int64, device=self.device),
                [b for _, b in enc["offset_mapping"]])

    def _reopen(self) -> None:
        if self.done and self.state.index * self.cfg.chunk_seconds < self.max_seconds - 1e-9:
            self.done, self.ended_by = False, None

    # -- one chunk ------------------------------------------------------------------------------------
    def step(self) -> Chunk:
        """The next chunk, generated and decoded in sequence."""
        return self._decode(self._generate())

    @torch.no_grad()
    def _generate(self) -> "Latents":
        """Steps 0-4 and 6: the chunk's latents and the stream's new state (no decoding)."""
        if self.done:
            raise RuntimeError("this stream has ended; start a new StreamSession")
        m, cfg, st, dev = self.model, self.cfg, self.state, self.device
        clock = StageClock(dev)

        # 0. The chunk's inputs; with guidance, a second row that drops what training drops together.
        horizon = cfg.text_horizon_frames  # E_txt reads as far ahead as training's clips did
        record = chunk_record(self.inputs, st, text_horizon=horizon)
        rows = record
        if self.guidance is not None:
            rows = collate([record, chunk_record(self.inputs, st, drop_prompt=True, drop_reference=True,
                                                 drop_audio_condition=True, text_horizon=horizon)])
        self.last_record = record

        # 1. Orchestrator prefix: [e_ref | prompt + remaining transcript | e_hist], once per chunk (the
        #    unconditional row drops c_a, so only the conditional row needs the orchestrator).
        prefix = m.orchestrator.encode_prefix(record.orchestrator)
        clock.mark("orchestrator")

        # 2. Condition tokens: their keys and values, once per chunk; the prompt's, once per stream. A compiled
        #    DiT gets the same shapes every chunk (chunk 0's absent sink and motion masked), so it never recompiles.
        if self._text_kv is None:
            self._text_kv = m.dit.embed_text(rows.context.to(m.dtype))
        static = cfg.video_latent_frames if _is_compiled(m.dit) else None
        cache = m.dit.encode_conditions(rows.conditions(m.dit, static, cfg.stream.sink), None, text_kv=self._text_kv,
                                        keep_mask=static is not None)
        clock.mark("dit")

        # 3. Denoise: every step = 33 orchestrator tokens on the prefix cache + the DiT's noisy tokens.
        def velocity(x_v, x_a, t):
            c_a, _ = m.orchestrator.condition(prefix, x_a, t)
            clock.mark("orchestrator")
            if self.guidance is None:
                v = m.dit(x_v, x_a, c_a, t, cache)
            else:  # [conditional | unconditional (c_a = 0)] in one pass
                v = guided(m.dit(torch.cat([x_v, x_v]), torch.cat([x_a, x_a]),
                                 torch.cat([c_a, torch.zeros_like(c_a)]), torch.cat([t, t]), cache), self.guidance)
            clock.mark("dit")
            return v

        h, w = cfg.latent_size
        shape_v = (1, cfg.video.latent_channels, cfg.video_latent_frames, h, w)
        shape_a = (1, cfg.audio_latent_frames, cfg.audio.latent_channels)
        x_v = torch.randn(shape_v, generator=self.generator, device=dev, dtype=m.dtype)
        x_a = torch.randn(shape_a, generator=self.generator, device=dev, dtype=m.dtype)
        if self.sampler == "student":
            z_v, z_a = student_sample(velocity, x_v, x_a, self.timesteps, generator=self.generator)
        elif self.solver in ("ancestral", "renoise"):
            sample = ancestral_sample if self.solver == "ancestral" else renoise_sample
            z_v, z_a = sample(velocity, x_v, x_a, cfg.stream.teacher_steps, cfg.stream.shift, generator=self.generator)
        else:
            z_v, z_a = euler_sample(velocity, x_v, x_a, cfg.stream.teacher_steps, cfg.stream.shift)

        # 4. Progress: the pointer on the clean audio's condition states.
        _, hidden = m.orchestrator.condition(prefix, z_a, torch.zeros(1, device=dev))
        spoken = record.text_offset[0] + m.orchestrator.pointer(prefix, hidden).endpoint  # a tensor: no sync
        clock.mark("orchestrator")

        # 6. State: motion <- this chunk, sink <- chunk 0, history of exactly 15 s. (The pointer's number is
        #    read here: the one sync of the chunk.)
        advance(st, z_v[0], z_a[0], float(spoken), history_frames=cfg.history_frames,
                text_lookback=cfg.stream.text_lookback, sink=cfg.stream.sink)
        finished = self.stop_at_end and round(st.spoken) >= len(self.inputs.transcript)
        capped = st.index * cfg.chunk_seconds >= self.max_seconds - 1e-9
        self.done = finished or capped
        self.ended_by = "transcript" if finished else "max_seconds" if capped else None
        return Latents(st.index - 1, z_v, z_a, st.spoken, clock)

    @torch.no_grad()
    def _decode(self, lat: "Latents") -> Chunk:
        """Step 5: both modalities' latents -> 33 RGB frames and the waveform."""
        t0 = time.perf_counter()
        m = self.model
        frames = m.video_codec.decode(lat.z_v)  # (1, 3, 33, H, W) in [-1, 1]
        audio = m.audio_codec.decode(lat.z_a)  # (1, channels, samples)
        frames = ((frames[0].permute(1, 2, 3, 0).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        audio = audio[0].float().cpu().numpy()  # the copies to the host wait for the decode: no extra sync
        stages = lat.clock.durations()
        timings = ChunkTimings(orchestrator=stages.get("orchestrator", 0.0), dit=stages.get("dit", 0.0),
                               decode=time.perf_counter() - t0)
        return Chunk(lat.index, frames, audio, lat.spoken, timings)

    # -- the stream ---------------------------------------------------------------------------------
    def __iter__(self):
        """Chunks in order, pipelined (see `chunks`)."""
        return self.chunks()

    def chunks(self, on_chunk=None, pipelined: bool = True, ahead: int = 2):
        """Yield every chunk in order. Pipelined (paper §5.1): one thread generates (orchestrator, DiT, pointer,
        state), another decodes (on CUDA on its own stream) and hands each chunk to `on_chunk` (e.g. a file
        writer, timed as `write`), so chunk k's decode and write overlap chunk k+1's generation, and chunk k is
        yielded as soon as it is decoded. At most `ahead` chunks are generated and not yet taken.
        `pipelined=False` does one thing at a time in the caller's thread."""
        import queue
        import threading
        from concurrent import futures
        from concurrent.futures import ThreadPoolExecutor

        def finish(lat: Latents) -> Chunk:
            if lat.ready is not None:  # CUDA: the decode stream waits for the generation stream's kernels
                self._decode_stream.wait_event(lat.ready)
                with torch.cuda.stream(self._decode_stream):
                    for z in (lat.z_v, lat.z_a):
                        z.record_stream(self._decode_stream)  # the allocator keeps them until this stream is done
                    chunk = self._decode(lat)
            else:
                chunk = self._decode(lat)
            if on_chunk is not None:
                t0 = time.perf_counter()
                on_chunk(chunk)
                chunk.timings.write = time.perf_counter() - t0
            return chunk

        cuda = self.device.type == "cuda"
        if not pipelined:
            while not self.done:
                yield finish(self._generate())
            return
        if cuda and getattr(self, "_decode_stream", None) is None:
            self._decode_stream = torch.cuda.Stream(self.device)
        decoded: queue.Queue = queue.Queue()  # futures of decoded chunks in order, then None (or an exception)
        slots, stop = threading.Semaphore(ahead), threading.Event()

        def generate(pool: ThreadPoolExecutor) -> None:
            try:
                first = True
                while not self.done:
                    slots.acquire()
                    if stop.is_set():
                        break
                    lat = self._generate()
                    if cuda:
                        lat.ready = torch.cuda.Event()
                        lat.ready.record()
                    future = pool.submit(finish, lat)
                    decoded.put(future)
                    if first:  # chunk 0 alone: nothing competes with the first chunk's decode (its latency)
                        first = False
                        futures.wait([future])
            except BaseException as e:  # the consumer raises it
                decoded.put(e)
            finally:
                decoded.put(None)

        # CPU: the two threads split the cores (torch's thread count is one setting for the process: a compiled
        # DiT is compiled for the count it streams with, so it is set for the whole stream, not per chunk)
        threads = torch.get_num_threads()
        if not cuda and threads > 1:
            torch.set_num_threads(max(1, threads // 2))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamchar-decode") as pool:
            producer = threading.Thread(target=generate, args=(pool,), name="streamchar-generate", daemon=True)
            producer.start()
            try:
                while (item := decoded.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    chunk = item.result()
                    slots.release()
                    yield chunk
            finally:  # also when the consumer stops early: the producer ends after its current chunk
                stop.set()
                slots.release()
                producer.join()
                torch.set_num_threads(threads)

    def estimated_chunks(self) -> int:
        """How many chunks this stream will have: from the pointer's pace once it has spoken (tokens per chunk
        so far), before that from where the plan ends; never more than `max_seconds` allows."""
        cap = math.ceil(self.max_seconds / self.cfg.chunk_seconds - 1e-9)
        if not self.stop_at_end:
            return cap
        st, n = self.state, len(self.inputs.transcript)
        if st.index and st.spoken > 0:
            guess = math.ceil(st.index * n / st.spoken)
        else:
            durations = self.model.orchestrator.token_durations * self.pace
            guess = max(1, math.ceil(plan_end(self.inputs.transcript, durations, self.inputs.plan)
                                     / self.cfg.audio_latent_frames))
        return max(st.index, min(cap, guess))

    @property
    def seconds(self) -> float:
        return self.state.index * self.cfg.chunk_seconds


def _is_compiled(module: torch.nn.Module) -> bool:
    """`module.compile()` was called (it wraps the module's call in torch.compile)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """E_txt's prompt part: the prompt's ids + [eos] as separator (the separator alone without a prompt)."""
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return (tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []) + sep


@torch.no_grad()
def prompt_context(model, prompt: str) -> torch.Tensor:
    """The DiT's prompt embeddings (1, L_ctx, text_dim); zeros without a prompt, as training drops it."""
    context = model.text_encoder.encode([prompt or ""])
    return torch.zeros_like(context) if not prompt else context
