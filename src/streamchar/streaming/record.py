"""The chunk record: everything one chunk is conditioned on, built by one function for streaming and training.

A stream is what stays fixed for its whole length (`StreamInputs`: reference frame and voice, prompt,
transcript) and what changes from chunk to chunk (`StreamState`: motion, sink, history window, how much
transcript has left E_txt). `chunk_record(inputs, state)` turns the two into the model's inputs for the next
chunk (`ChunkRecord`):

    orchestrator   [e_ref | E_txt | e_hist]: reference-voice latents, prompt ids + separator + the transcript
                   from `text_offset` on, the history latents, and where each E_txt token is spoken
                   relative to the chunk (the stream's timeline plan)              (an `OrchestratorInputs`)
    DiT            prompt context, condition frames: reference (t0 = layout), sink and motion (chunk >= 1)
    guidance       which conditions this row drops (prompt, reference frame, audio condition c_a)

`advance(state, ...)` is the state update after a chunk (motion <- this chunk, sink <- chunk 0, history +=
this chunk's audio, exactly `history_frames` latents (15 s) kept; a chunk whose audio has left the window
takes its transcript out of E_txt).

When spoken text leaves E_txt the paper does not say. Two rules (`stream.text_lookback`):
    None   the window rule above: E_txt keeps all text whose audio is still in the history, so the LM must
           find the current chunk's words by matching up to 15 s of audio against the text (the paper's
           3B LM, trained on 80k x 640 samples, can);
    L      E_txt starts L tokens before the pointer's spoken endpoint (the window rule's offset if that is
           later): the chunk's words are near its start, and the LM matches only the last L tokens against
           the end of the history. The `tiny` preset's choice: its 4-layer LM, trained for a few CPU-hours,
           did not learn the window rule's alignment (train/alignment.py has the measurement).

How far ahead E_txt reads (`stream.text_lookahead_seconds`, `text_horizon`): the tokens the plan starts before
the chunk's end plus 20 s, as far ahead as a training clip's text reaches; the rest of a long transcript joins
E_txt chunk by chunk. Without a plan (or with None) E_txt reads to the transcript's end.

Streaming (streaming/session.py) calls `chunk_record` and `advance` on what it generates. Training
(train/latent_data.py) builds the state a stream of a clip's true latents has before chunk k with
`clip_state` (by slicing, in O(1)) and calls the same `chunk_record`; a test streams a clip through the
session and checks that both give the same tensors. `collate` pads B one-row records into one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from streamchar.models.orchestrator import OrchestratorInputs


@dataclass
class StreamInputs:
    """What one stream is conditioned on from start to end."""

    reference: torch.Tensor | None  # (C, 1, h, w) reference frame latent; None for speech alone (stage 1)
    ref_audio: torch.Tensor | None  # (T_ref, C_a) reference-voice latents, or None
    prompt_ids: list[int]  # the orchestrator's prompt ids + separator
    null_prompt_ids: list[int]  # the same for no prompt: the separator alone
    transcript: torch.Tensor  # (N,) int64 transcript token ids
    context: torch.Tensor  # (L_ctx, text_dim) the DiT's prompt embeddings (zeros: no prompt)
    audio_channels: int  # C_a (the width of an absent reference voice or history)
    # (N,) float: where each transcript token starts, in audio latents from the stream's start (models/timeline.py:
    # the clip's timings in training, the orchestrator's plan when streaming); None: no timeline
    plan: torch.Tensor | None = None


@dataclass
class HistoryChunk:
    end: int  # absolute audio-latent index where the chunk's audio ends
    spoken: float  # the pointer's absolute endpoint after it


@dataclass
class StreamState:
    index: int = 0  # chunks generated so far
    frames: int = 0  # audio latents generated so far (where the next chunk starts on the timeline)
    motion: torch.Tensor | None = None  # (C, K, h, w) the previous chunk's video latents
    sink: torch.Tensor | None = None  # (C, K, h, w) chunk 0's video latents
    history: torch.Tensor | None = None  # (T_h, C_a) the last <= history_frames generated audio latents
    chunks: list = field(default_factory=list)  # HistoryChunk of every chunk with audio in the window
    text_offset: int = 0  # transcript tokens that left the window with their audio (E_txt keeps >= 1 token)
    spoken: float = 0.0  # absolute pointer endpoint: transcript tokens spoken so far


def advance(state: StreamState, z_v: torch.Tensor | None, z_a: torch.Tensor, spoken: float, *,
            history_frames: int, text_lookback: int | None = None, sink: bool = True) -> None:
    """The state after a chunk with video latents z_v (C, K, h, w) (None: speech alone), audio latents
    z_a (T_a, C_a) and pointer endpoint `spoken` (absolute). Progress never goes backwards.
    text_lookback: None = the window rule, L = E_txt from L tokens before `spoken` (module docstring).
    sink: False keeps no sink chunk (the paper's "w/o sink" ablation, §5.5)."""
    if z_v is not None:
        state.motion = z_v
        if state.sink is None and sink:
            state.sink = z_v
    state.spoken = max(state.spoken, float(spoken))
    history = z_a if state.history is None else torch.cat([state.history, z_a], 0)
    state.history = history[-history_frames:]
    state.frames += z_a.shape[0]
    end = state.frames
    state.chunks.append(HistoryChunk(end, state.spoken))
    start = end - state.history.shape[0]  # absolute index of the window's first latent
    while state.chunks and state.chunks[0].end <= start:
        dropped = state.chunks.pop(0)
        state.text_offset = max(state.text_offset, int(dropped.spoken))
    if text_lookback is not None:
        state.text_offset = max(state.text_offset, int(state.spoken) - text_lookback)
    state.index += 1


def clip_state(video_latents: torch.Tensor | None, audio_latents: torch.Tensor, pap_end: list[int], k: int, *,
               history_frames: int, text_lookback: int | None = None, sink: bool = True,
               pointer_error: float = 0.0) -> StreamState:
    """The state a stream has before chunk k of a clip when it generated the clip's true latents and its
    pointer read the true endpoints: what `advance` leaves after chunks 0..k-1, by slicing.

    video_latents: (n, C, K, h, w) or None; audio_latents: (n * T_a, C_a); pap_end[j]: transcript tokens
    spoken by the end of chunk j; pointer_error: tokens added to the last endpoint (training draws the
    pointer's error at inference, so the model learns not to trust it blindly)."""
    n = len(pap_end)
    A = audio_latents.shape[0] // n
    state = StreamState(index=k, frames=k * A)
    if k == 0:
        return state
    if video_latents is not None:
        state.motion, state.sink = video_latents[k - 1], video_latents[0] if sink else None
    start = max(0, k * A - history_frames)  # the window [start, k A)
    state.history = audio_latents[start:k * A]
    state.spoken = max(0.0, float(max(pap_end[:k])) + pointer_error)
    gone = [j for j in range(k) if (j + 1) * A <= start]  # chunks whose audio has left the window
    if gone:
        state.text_offset = int(max(pap_end[j] for j in gone))
    if text_lookback is not None:
        state.text_offset = max(state.text_offset, int(state.spoken) - text_lookback)
    state.chunks = [HistoryChunk((j + 1) * A, float(max(pap_end[:j + 1]))) for j in range(k) if (j + 1) * A > start]
    return state


@dataclass
class ChunkRecord:
    """The inputs of B chunks (B = 1 from `chunk_record`, more from `collate`)."""

    orchestrator: OrchestratorInputs
    context: torch.Tensor  # (B, L_ctx, text_dim) prompt embeddings, zeros where the prompt is dropped
    reference: torch.Tensor | None  # (B, C, 1, h, w), zeros where dropped; None: speech alone
    sink: torch.Tensor | None  # (B, C, K, h, w) or None when no row has one
    motion: torch.Tensor | None  # (B, C, K, h, w)
    has_motion: torch.Tensor  # (B,) bool: rows with a sink and motion (chunk >= 1)
    keep_audio_condition: torch.Tensor  # (B,) 1.0, or 0.0 where c_a is dropped (the unconditional pass)
    text_offset: torch.Tensor  # (B,) int64 transcript tokens dropped before E_txt (pointer = offset + endpoint)

    @property
    def batch_size(self) -> int:
        return self.context.shape[0]

    def conditions(self, dit, static_frames: int | None = None, sink_slot: bool = True) -> list:
        """The DiT's condition frames (reference, sink, motion placed on the timeline). `static_frames` (a
        chunk's video latent frames): the same shapes for every chunk, as a compiled DiT wants them: chunk 0
        gets zero sink and motion frames that the key mask hides, and the mask is always passed; `sink_slot`:
        whether the stream keeps a sink (stream.sink), so chunk 0 has its slot."""
        if self.reference is None:
            return []
        if static_frames is None:
            present = None if bool(self.has_motion.all()) else self.has_motion
            return dit.condition_frames(self.reference, self.sink, self.motion, present)
        sink, motion = self.sink, self.motion
        if motion is None:  # chunk 0: zero frames in their place, masked
            B, C, _, h, w = self.reference.shape
            motion = self.reference.new_zeros(B, C, static_frames, h, w)
            sink = motion if sink_slot else None
        return dit.condition_frames(self.reference, sink, motion, self.has_motion.to(self.reference.device))

    def to(self, device) -> "ChunkRecord":
        def move(x):
            return x.to(device) if isinstance(x, torch.Tensor) else x

        o = self.orchestrator
        orch = OrchestratorInputs(*(move(getattr(o, f)) for f in OrchestratorInputs.FIELDS))
        return ChunkRecord(orch, move(self.context), move(self.reference), move(self.sink), move(self.motion),
                           move(self.has_motion), move(self.keep_audio_condition), move(self.text_offset))


def text_end(inputs: StreamInputs, state: StreamState, offset: int, text_horizon: int | None) -> int:
    """Where E_txt ends in the transcript: after the tokens the plan starts within `text_horizon` audio latents
    of the chunk's first (at least one token after `offset`); the transcript's end without a horizon or plan."""
    N = inputs.transcript.shape[0]
    if text_horizon is None or inputs.plan is None:
        return N
    ahead = torch.cummax(inputs.plan[offset:].float(), 0).values  # a token never starts before the one it follows
    limit = torch.tensor([float(state.frames + text_horizon)], device=ahead.device)
    return offset + max(1, int(torch.searchsorted(ahead, limit)[0]))


def chunk_record(inputs: StreamInputs, state: StreamState, *, drop_prompt: bool = False,
                 drop_reference: bool = False, drop_audio_condition: bool = False,
                 text_horizon: int | None = None) -> ChunkRecord:
    """The inputs of the next chunk of a stream (one row). The drops are those of classifier-free guidance:
    training draws them, the teacher sampler's unconditional pass sets all three. text_horizon: E_txt's reach in
    audio latents from the chunk's start (`StreamCharConfig.text_horizon_frames`), None = the whole rest."""
    N = inputs.transcript.shape[0]
    if inputs.plan is not None and inputs.plan.shape[0] != N:
        raise ValueError(f"the timeline plan has {inputs.plan.shape[0]} tokens, the transcript {N}")
    offset = min(state.text_offset, N - 1)
    end = text_end(inputs, state, offset, text_horizon)
    prompt = inputs.null_prompt_ids if drop_prompt else inputs.prompt_ids
    text = torch.cat([torch.tensor(prompt, dtype=torch.int64, device=inputs.transcript.device),
                      inputs.transcript[offset:end]])  # (L_txt,)
    def latents(x):  # (T, C_a) or None -> (1, T, C_a), its length
        if x is None:
            return inputs.context.new_zeros(1, 0, inputs.audio_channels), 0
        return x[None], x.shape[0]

    ref, ref_len = latents(inputs.ref_audio)
    hist, hist_len = latents(state.history)
    orch = OrchestratorInputs(ref_audio=ref, ref_len=torch.tensor([ref_len]), text_ids=text[None],
                              text_len=torch.tensor([text.shape[0]]), transcript_start=torch.tensor([len(prompt)]),
                              history=hist, hist_len=torch.tensor([hist_len]),
                              text_positions=None if inputs.plan is None else (inputs.plan[offset:end] - state.frames)[None])
    context = torch.zeros_like(inputs.context) if drop_prompt else inputs.context
    reference = None
    if inputs.reference is not None:
        reference = (torch.zeros_like(inputs.reference) if drop_reference else inputs.reference)[None]
    has = state.motion is not None and reference is not None
    return ChunkRecord(
        orchestrator=orch, context=context[None], reference=reference,
        sink=state.sink[None] if has and state.sink is not None else None, motion=state.motion[None] if has else None,
        has_motion=torch.tensor([has]), keep_audio_condition=torch.tensor([0.0 if drop_audio_condition else 1.0]),
        text_offset=torch.tensor([offset]))


def _pad_stack(xs: list[torch.Tensor]) -> torch.Tensor:
    """(1, T_i, ...) tensors -> (B, max T_i, ...), zero-padded on the right of dim 1."""
    T = max(x.shape[1] for x in xs)
    return torch.cat([F.pad(x, (0, 0) * (x.ndim - 2) + (0, T - x.shape[1])) for x in xs], 0)


def _pad_positions(xs: list[torch.Tensor | None]) -> torch.Tensor | None:
    """(1, N_i) timeline positions -> (B, max N_i), or None when no row has them."""
    if all(x is None for x in xs):
        return None
    if any(x is None for x in xs):
        raise ValueError("collate: some records have timeline positions and some do not")
    return _pad_stack([x[..., None] for x in xs])[..., 0]


def collate(records: list[ChunkRecord]) -> ChunkRecord:
    """B records -> one batch: ragged parts zero-padded with their lengths; rows without a sink and motion
    get zeros and `has_motion` False (the DiT masks them out)."""
    if not records:
        raise ValueError("collate needs at least one record")
    if len(records) == 1:
        return records[0]
    os_ = [r.orchestrator for r in records]
    orch = OrchestratorInputs(
        ref_audio=_pad_stack([o.ref_audio for o in os_]), ref_len=torch.cat([o.ref_len for o in os_]),
        text_ids=_pad_stack([o.text_ids[..., None] for o in os_])[..., 0],
        text_len=torch.cat([o.text_len for o in os_]), transcript_start=torch.cat([o.transcript_start for o in os_]),
        history=_pad_stack([o.history for o in os_]), hist_len=torch.cat([o.hist_len for o in os_]),
        text_positions=_pad_positions([o.text_positions for o in os_]))
    if any((r.reference is None) != (records[0].reference is None) for r in records):
        raise ValueError("collate: some records have a reference frame and some do not (mixed stages)")
    reference = torch.cat([r.reference for r in records]) if records[0].reference is not None else None
    sink = motion = None
    with_motion = [r for r in records if r.motion is not None]
    if with_motion:
        zero = torch.zeros_like(with_motion[0].motion)
        if any((r.sink is None) != (with_motion[0].sink is None) for r in with_motion):
            raise ValueError("collate: some records keep a sink chunk and some do not")
        if with_motion[0].sink is not None:
            sink = torch.cat([r.sink if r.sink is not None else zero for r in records])
        motion = torch.cat([r.motion if r.motion is not None else zero for r in records])
    return ChunkRecord(
        orchestrator=orch, context=torch.cat([r.context for r in records]), reference=reference, sink=sink,
        motion=motion, has_motion=torch.cat([r.has_motion for r in records]),
        keep_audio_condition=torch.cat([r.keep_audio_condition for r in records]),
        text_offset=torch.cat([r.text_offset for r in records]))
