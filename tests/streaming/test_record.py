"""The chunk record: training builds from a clip what streaming builds from its state, and streams end."""

import dataclasses

import numpy as np
import pytest
import torch

import streamchar.streaming.session as session_module
from streamchar.config import tiny
from streamchar.data.latents import write_random_latents
from streamchar.models.pap import PointerOutput
from streamchar.pipeline import StreamChar
from streamchar.streaming.record import StreamInputs, StreamState, advance, chunk_record, clip_state, collate
from streamchar.streaming.session import StreamSession, prompt_context, prompt_ids
from streamchar.train.latent_data import LatentChunks

PROMPT = "a cartoon person with short black hair"
CHUNKS = 6


@pytest.fixture(scope="module")
def model():
    cfg = tiny()
    cfg.stream = dataclasses.replace(cfg.stream, history_seconds=2.75, teacher_steps=2)  # 66 latents: 2 chunks
    return StreamChar.from_config(cfg.validate(), seed=0)


@pytest.fixture(scope="module")
def dataset(model, tmp_path_factory):
    folder = write_random_latents(tmp_path_factory.mktemp("rec") / "latents", model.cfg, {"train": [CHUNKS, 3]})
    tok, L = model.tokenizer, model.cfg.stream.text_lookback
    assert L is not None  # the tiny preset's E_txt rule (streaming/record.py)
    return LatentChunks(folder, "train", prompt=lambda clip: (prompt_ids(tok, PROMPT), prompt_context(model, PROMPT)[0]),
                        null_prompt_ids=prompt_ids(tok, ""), history_frames=model.cfg.history_frames,
                        ref_audio_prob=0.0, train=False, text_lookback=(L, L))


def forced_stream(model, clip, monkeypatch) -> tuple[StreamSession, list]:
    """A session streaming `clip`: its sampler returns the clip's true latents of the chunk and its pointer the
    true endpoint, so its state is the state of a stream that generated exactly the clip."""
    A = model.cfg.audio_latent_frames
    s = StreamSession(model, text="placeholder words", ref_image=np.zeros((64, 64, 3), np.uint8), prompt=PROMPT,
                      max_seconds=100)
    s.inputs = dataclasses.replace(s.inputs, reference=clip["reference_latent"], transcript=clip["token_ids"],
                                   plan=clip["plan"])  # the clip's timings, as training reads them

    def sample(f, x_v, x_a, *args, **kw):
        k = s.state.index
        return clip["video_latents"][k][None], clip["audio_latents"][k * A:(k + 1) * A][None]

    def pointer(prefix, hidden):
        k, offset = s.state.index, int(s.last_record.text_offset[0])
        end = torch.tensor([float(clip["pap_end"][k] - offset)])
        return PointerOutput(endpoint=end, raw=end, positions=end[:, None])

    monkeypatch.setattr(session_module, "euler_sample", sample)
    for rule in ("ancestral_sample", "renoise_sample"):
        monkeypatch.setattr(session_module, rule, sample)
    monkeypatch.setattr(model.orchestrator, "pointer", pointer)
    records = []
    while not s.done:
        s.step()
        records.append(s.last_record)
    return s, records


def assert_same(a, b, where):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            assert_same(x, y, f"{where}.{f.name}")
        elif x is None or y is None:
            assert x is None and y is None, f"{where}.{f.name}"
        else:
            assert x.shape == y.shape and torch.equal(x, y), f"{where}.{f.name}"


def test_training_and_streaming_build_the_same_record(model, dataset, monkeypatch):
    clip = dataset.clips[0]
    s, streamed = forced_stream(model, clip, monkeypatch)
    assert len(streamed) == CHUNKS  # the stream ended with the clip: its last chunk speaks the transcript
    for k, rec in enumerate(streamed):
        trained = dataset.sample(dataset.items.index((0, k)), np.random.default_rng(0))["record"]
        assert_same(trained, rec, f"chunk {k}")
    assert int(streamed[-1].text_offset[0]) > 0  # the window dropped spoken transcript on the way


def test_pointer_end_rule_stops_a_spoken_clip(model, dataset, monkeypatch):
    clip = dataset.clips[1]
    s, records = forced_stream(model, clip, monkeypatch)
    assert s.done and len(records) == 3 and s.state.spoken == len(clip["token_ids"])
    assert s.ended_by == "transcript"


@pytest.mark.parametrize("lookback", [None, 4])
def test_clip_state_equals_advance(lookback):
    g = torch.Generator().manual_seed(0)
    n, A, H = 7, 33, 80  # a window that ends inside a chunk
    video, audio = torch.randn(n, 4, 9, 2, 2, generator=g), torch.randn(n * A, 8, generator=g)
    ends = [3, 5, 9, 9, 14, 20, 22]
    st = StreamState()
    for k in range(n):
        ref = clip_state(video, audio, ends, k, history_frames=H, text_lookback=lookback)
        assert ref.index == st.index and ref.text_offset == st.text_offset and ref.spoken == st.spoken
        for name in ("motion", "sink", "history"):
            a, b = getattr(ref, name), getattr(st, name)
            assert (a is None and b is None) or torch.equal(a, b), (k, name)
        assert ref.chunks == st.chunks
        advance(st, video[k], audio[k * A:(k + 1) * A], ends[k], history_frames=H, text_lookback=lookback)
    assert st.history.shape[0] == H
    if lookback is None:
        assert st.text_offset == ends[n - 4]  # chunks 0..2 have left 80 latents
    else:
        assert st.text_offset == ends[n - 1] - lookback  # E_txt starts 4 tokens before the spoken end


def test_collate_pads_and_keeps_rows():
    g = torch.Generator().manual_seed(0)

    def inputs(T_ref, N):
        return StreamInputs(reference=torch.randn(4, 1, 2, 2, generator=g),
                            ref_audio=torch.randn(T_ref, 8, generator=g) if T_ref else None, prompt_ids=[5, 6, 0],
                            null_prompt_ids=[0], transcript=torch.randint(10, 99, (N,), generator=g),
                            context=torch.randn(3, 16, generator=g), audio_channels=8)

    st = StreamState()
    a = chunk_record(inputs(20, 9), st)
    advance(st, torch.randn(4, 9, 2, 2, generator=g), torch.randn(33, 8, generator=g), 4, history_frames=66)
    b = chunk_record(inputs(0, 5), st, drop_prompt=True, drop_reference=True, drop_audio_condition=True)
    r = collate([a, b])
    o = r.orchestrator
    assert o.ref_audio.shape == (2, 20, 8) and o.ref_len.tolist() == [20, 0]
    assert o.text_len.tolist() == [3 + 9, 1 + 5] and o.transcript_start.tolist() == [3, 1]
    assert o.history.shape == (2, 33, 8) and o.hist_len.tolist() == [0, 33]
    assert r.has_motion.tolist() == [False, True] and torch.equal(r.sink[0], torch.zeros_like(r.sink[0]))
    assert r.keep_audio_condition.tolist() == [1.0, 0.0]
    assert torch.equal(r.context[1], torch.zeros(3, 16)) and torch.equal(r.reference[1], torch.zeros(4, 1, 2, 2))


def test_without_the_sink_training_and_streaming_still_agree(model, monkeypatch, tmp_path):
    """stream.sink = False (the paper's "w/o sink" ablation): no record has a sink chunk, every later one has
    its motion frames, and the training records equal the streamed ones."""
    cfg = dataclasses.replace(model.cfg, stream=dataclasses.replace(model.cfg.stream, sink=False))
    nosink = StreamChar(cfg, model.dit, model.orchestrator, model.video_codec, model.audio_codec, model.text_encoder,
                        model.tokenizer)
    folder = write_random_latents(tmp_path / "latents", cfg, {"train": [CHUNKS]})
    tok, L = nosink.tokenizer, cfg.stream.text_lookback
    ds = LatentChunks(folder, "train", prompt=lambda clip: (prompt_ids(tok, PROMPT), prompt_context(nosink, PROMPT)[0]),
                      null_prompt_ids=prompt_ids(tok, ""), history_frames=cfg.history_frames, ref_audio_prob=0.0,
                      train=False, text_lookback=(L, L), sink=False)
    _, streamed = forced_stream(nosink, ds.clips[0], monkeypatch)
    assert all(r.sink is None for r in streamed) and all(r.motion is not None for r in streamed[1:])
    for k, rec in enumerate(streamed):
        assert_same(ds.sample(k, np.random.default_rng(0))["record"], rec, f"chunk {k}")


def test_pointer_error_moves_the_text_start_in_training_only(model, dataset):
    """pointer_error: a training chunk's spoken endpoint (so E_txt's start) carries the pointer's error;
    chunk 0 (nothing spoken) and validation keep the truth; the timeline positions stay the clip's timings."""
    tok, L = model.tokenizer, model.cfg.stream.text_lookback
    kw = dict(prompt=dataset.prompt, null_prompt_ids=prompt_ids(tok, ""), history_frames=model.cfg.history_frames,
              ref_audio_prob=0.0, text_lookback=(L, L), pointer_error=2.0)
    noisy = LatentChunks(dataset.folder, "train", train=True, **kw)
    val = LatentChunks(dataset.folder, "train", train=False, **kw)
    moved, A = [], model.cfg.audio_latent_frames
    for i, (c, k) in enumerate(noisy.items):
        clip = noisy.clips[c]
        true = max(0, int(max(clip["pap_end"][:k], default=0)) - L)
        for ds, exact in ((noisy, k == 0), (val, True)):
            rec = ds.sample(i, np.random.default_rng(i))["record"]
            offset = int(rec.text_offset[0])
            assert torch.equal(rec.orchestrator.text_positions[0], clip["plan"][offset:] - k * A)
            if exact:
                assert offset == true, (ds.train, c, k)
            else:
                moved.append(abs(offset - true))
        assert_same(noisy.sample(i, np.random.default_rng(i))["record"],
                    noisy.sample(i, np.random.default_rng(i))["record"], f"item {i}")
    assert moved and max(moved) >= 1
    with pytest.raises(Exception, match="pointer_error"):
        LatentChunks(dataset.folder, "train", **{**kw, "pointer_error": -1.0})


def test_e_txt_reads_as_far_ahead_as_the_horizon():
    """A 600-latent plan (25 s) with a 100-latent horizon: E_txt holds the spoken-from offset up to the tokens
    planned to start within 100 latents of the chunk; the rest joins chunk by chunk; no horizon, no plan: all."""
    g = torch.Generator().manual_seed(0)
    N = 200
    inputs = StreamInputs(reference=None, ref_audio=None, prompt_ids=[5, 6, 0], null_prompt_ids=[0],
                          transcript=torch.randint(10, 99, (N,), generator=g), context=torch.randn(3, 16, generator=g),
                          audio_channels=8, plan=torch.arange(N, dtype=torch.float32) * 3.0 + 0.5)
    for frames, offset in ((0, 0), (33, 5), (330, 100), (594, 190)):
        st = StreamState(frames=frames, text_offset=offset)
        rec = chunk_record(inputs, st, text_horizon=100)
        ids = rec.orchestrator.text_ids[0, 3:]  # after the prompt
        end = min(N, int(np.ceil((frames + 100 - 0.5) / 3.0)))  # tokens starting before frames + 100
        assert ids.tolist() == inputs.transcript[offset:end].tolist(), frames
        assert rec.orchestrator.text_positions.shape[1] == end - offset
        assert float(rec.orchestrator.text_positions[0, -1]) < 100
        whole = chunk_record(inputs, st)
        assert whole.orchestrator.text_ids.shape[1] == 3 + N - offset
    # at least one token, even when the plan has it later than the horizon
    late = dataclasses.replace(inputs, plan=inputs.plan + 1000.0)
    assert chunk_record(late, StreamState(), text_horizon=100).orchestrator.text_ids.shape[1] == 3 + 1
    unplanned = dataclasses.replace(inputs, plan=None)
    assert chunk_record(unplanned, StreamState(), text_horizon=100).orchestrator.text_ids.shape[1] == 3 + N


def test_a_long_stream_reads_its_transcript_chunk_by_chunk(model):
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # ~2,000 tokens, minutes of speech
    s = StreamSession(model, text=text, ref_image=np.zeros((64, 64, 3), np.uint8), max_seconds=100,
                      stop_at_end=False)
    horizon = model.cfg.text_horizon_frames
    assert horizon == 33 + 20 * 24
    s.step()
    n = len(s.transcript)
    read = int(s.last_record.orchestrator.text_len[0] - s.last_record.orchestrator.transcript_start[0])
    assert read == int((s.inputs.plan < horizon).sum()) < n / 4
