import dataclasses

import numpy as np
import pytest
import torch

from streamchar.config import tiny
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.streaming.session import StreamSession

IMG = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
TEXT = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm afternoon sun"


@pytest.fixture(scope="module")
def model():
    cfg = tiny()
    # 2 chunks of history; E_txt by the paper's window rule (the lookback rule: tests/streaming/test_record.py)
    cfg.stream = dataclasses.replace(cfg.stream, history_seconds=2.75, teacher_steps=4, text_lookback=None)
    return StreamChar.from_config(cfg.validate(), seed=0)


def test_state_across_chunks(model):
    s = StreamSession(model, text=TEXT, ref_image=IMG, seed=0, max_seconds=100, stop_at_end=False)
    offsets, sinks, chunks = [], [], []
    for _ in range(5):
        before_motion = s.state.motion
        c = s.step()
        chunks.append(c)
        assert c.frames.shape == (33, 64, 64, 3) and c.frames.dtype == np.uint8
        assert c.audio.shape == (1, 33 * 1024) and c.audio.dtype == np.float32
        assert s.state.history.shape == (min(33 * s.state.index, model.cfg.history_frames), 32)
        assert model.cfg.history_frames == 66
        assert s.state.motion is not before_motion and s.state.motion.shape == (model.cfg.video.latent_channels, 9, 8, 8)
        sinks.append(s.state.sink)
        offsets.append(s.state.text_offset)
        assert all(v >= 0 for v in dataclasses.asdict(c.timings).values())
    assert all(x is sinks[0] for x in sinks)  # the sink is chunk 0, forever
    # the text dropped with old history is what the pointer said those chunks spoke
    assert offsets[:2] == [0, 0] and offsets == sorted(offsets)
    assert s.state.text_offset == int(chunks[2].spoken)
    assert [c.spoken for c in chunks] == sorted(c.spoken for c in chunks)  # progress never goes backwards
    assert not np.array_equal(chunks[0].frames, chunks[1].frames)


def test_motion_and_sink_enter_the_dit(model, monkeypatch):
    seen = []
    orig = model.dit.condition_frames
    monkeypatch.setattr(model.dit, "condition_frames",
                        lambda r, s=None, m=None, p=None: seen.append((s, m)) or orig(r, s, m, p))
    s = StreamSession(model, text=TEXT, ref_image=IMG, seed=0, max_seconds=100, stop_at_end=False)
    s.step()
    first = s.state.motion
    s.step()
    s.step()
    assert seen[0] == (None, None)  # chunk 0: the reference frame alone
    assert torch.equal(seen[1][0][0], first) and torch.equal(seen[1][1][0], first)
    assert torch.equal(seen[2][0][0], first) and not torch.equal(seen[2][1][0], first)


def test_stops_at_the_end_of_the_transcript(model):
    with torch.no_grad():
        model.orchestrator.pap.offset.bias.fill_(1e4)  # the pointer says: everything is spoken
    try:
        s = StreamSession(model, text=TEXT, ref_image=IMG, max_seconds=100)
        assert len(list(s)) == 1 and s.state.spoken == len(s.transcript)
    finally:
        with torch.no_grad():
            model.orchestrator.pap.offset.bias.zero_()


def test_stops_at_max_seconds(model):
    s = StreamSession(model, text=TEXT, ref_image=IMG, max_seconds=3.0, stop_at_end=False)
    assert s.ended_by is None
    assert len(list(s)) == 3 and s.seconds == 3 * 1.375  # whole chunks, the last one reaching past the limit
    assert s.ended_by == "max_seconds"


def test_deterministic_by_seed(model):
    a = StreamSession(model, text=TEXT, ref_image=IMG, seed=5, max_seconds=1).step()
    b = StreamSession(model, text=TEXT, ref_image=IMG, seed=5, max_seconds=1).step()
    c = StreamSession(model, text=TEXT, ref_image=IMG, seed=6, max_seconds=1).step()
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)


def test_reference_audio_and_teacher_sampler(model):
    wav = (0.3 * np.sin(np.arange(24576) / 24576 * 2 * np.pi * 220)).astype(np.float32)[None]
    s = StreamSession(model, text=TEXT, ref_image=IMG, ref_audio=wav, max_seconds=1, sampler="teacher")
    assert s.inputs.ref_audio.shape == (24, model.cfg.audio.latent_channels)
    assert s.step().frames.shape == (33, 64, 64, 3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(text="   "), "empty"),
    (dict(max_seconds=0), "max_seconds"),
    (dict(ref_image=IMG[:32]), "reference image"),
    (dict(sampler="euler"), "sampler"),
    (dict(guidance=(0.0, 1.0)), "guidance"),
    (dict(solver="heun"), "solver must be one of"),
])
def test_bad_inputs(model, kwargs, match):
    args = dict(text=TEXT, ref_image=IMG) | kwargs
    with pytest.raises(StreamCharError, match=match):
        StreamSession(model, **args)


def test_guidance_scale_one_is_the_conditional_sampler(model):
    """With scales (1, 1) the batched [conditional | unconditional] pass gives the conditional velocity: the
    same stream as no guidance; other scales change it."""
    plain = StreamSession(model, text=TEXT, ref_image=IMG, seed=3, max_seconds=1, sampler="teacher",
                          guidance=(1.0, 1.0))
    assert plain.guidance is None  # (1, 1) needs no unconditional pass
    forced = StreamSession(model, text=TEXT, ref_image=IMG, seed=3, max_seconds=1, sampler="teacher",
                           guidance=(1.0, 1.0))
    forced.guidance = (1.0, 1.0)  # run the batched guidance pass anyway
    a, b = plain.step(), forced.step()
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1
    scale = np.abs(a.audio).max()  # random codecs: quiet audio
    assert np.abs(a.audio - b.audio).max() < 1e-3 * scale
    c = StreamSession(model, text=TEXT, ref_image=IMG, seed=3, max_seconds=1, sampler="teacher",
                      guidance=(3.0, 2.0)).step()
    assert np.abs(a.audio - c.audio).max() > 0.1 * scale


def test_sampler_follows_the_checkpoint(model):
    assert StreamSession(model, text=TEXT, ref_image=IMG).sampler == "teacher"  # a pretrained model
    cfg = dataclasses.replace(model.cfg, stream=dataclasses.replace(model.cfg.stream, sampler="student"))
    distilled = StreamChar(cfg, model.dit, model.orchestrator, model.video_codec, model.audio_codec,
                           model.text_encoder, model.tokenizer)
    assert StreamSession(distilled, text=TEXT, ref_image=IMG).sampler == "student"


def test_solver_follows_the_checkpoint_and_changes_the_stream(model):
    assert model.cfg.stream.teacher_solver == "ancestral"  # tiny()'s
    sessions = {rule: StreamSession(model, text=TEXT, ref_image=IMG, seed=4, max_seconds=1, solver=rule)
                for rule in ("renoise", "ancestral", "euler")}
    assert StreamSession(model, text=TEXT, ref_image=IMG).solver == "ancestral"
    assert StreamSession(model, text=TEXT, ref_image=IMG, sampler="student").solver is None
    audio = {rule: s.step().audio for rule, s in sessions.items()}
    scale = np.abs(audio["euler"]).max()
    for a, b in (("renoise", "euler"), ("ancestral", "euler"), ("renoise", "ancestral")):
        assert np.abs(audio[a] - audio[b]).max() > 1e-3 * scale, (a, b)
    again = StreamSession(model, text=TEXT, ref_image=IMG, seed=4, max_seconds=1).step()
    assert np.array_equal(audio["ancestral"], again.audio)  # fresh noise from the session's seeded generator


def test_estimated_chunks_follow_the_text_and_the_pointer(model):
    short = StreamSession(model, text="hello there", ref_image=IMG, max_seconds=600)
    assert short.estimated_chunks() <= 3  # two words, not 437 chunks of max_seconds
    from streamchar.models.timeline import plan_end

    planned = StreamSession(model, text=TEXT, ref_image=IMG, max_seconds=600)  # before speaking: the plan's end
    end = plan_end(planned.inputs.transcript, model.orchestrator.token_durations, planned.inputs.plan)
    assert planned.estimated_chunks() == -(-end // 33) > 1
    slow = StreamSession(model, text=TEXT, ref_image=IMG, max_seconds=600, pace=2.0)
    assert slow.estimated_chunks() >= 2 * planned.estimated_chunks() - 1
    s = StreamSession(model, text=TEXT, ref_image=IMG, max_seconds=600)
    with torch.no_grad():
        model.orchestrator.pap.offset.bias.fill_(2.0)  # the pointer: a couple of tokens per chunk
    try:
        s.step()
        assert s.estimated_chunks() == max(1, min(437, -(-len(s.transcript) // max(s.state.spoken, 1e-9))))
    finally:
        with torch.no_grad():
            model.orchestrator.pap.offset.bias.zero_()
    assert StreamSession(model, text=TEXT, ref_image=IMG, max_seconds=4, stop_at_end=False).estimated_chunks() == 3


def test_live_text_reaches_the_orchestrator_from_the_next_chunk(model):
    """append_text: E_txt of the next chunk ends with the new words; interrupt: what is not yet spoken is replaced,
    what is spoken stays; a stream that ended because its transcript was spoken goes on when text arrives."""
    s = StreamSession(model, text="hello there", ref_image=IMG, max_seconds=100, stop_at_end=False)
    s.step()
    before, frames = s.transcript, s.state.frames
    s.append_text("and good morning")
    added = model.tokenizer(" and good morning", add_special_tokens=False)["input_ids"]
    assert s.transcript == before + added and s.text == "hello there and good morning"
    s.step()
    ids = s.last_record.orchestrator.text_ids[0, :int(s.last_record.orchestrator.text_len[0])].tolist()
    assert ids[-len(added):] == added
    plan, durations = s.inputs.plan, model.orchestrator.token_durations
    n = len(before)  # the appended words are planned where the old plan ends (or from the next chunk)
    assert torch.equal(plan[:n], model.orchestrator.plan(torch.tensor(before)))
    start = max(float(plan[n - 1] + durations[before[-1]]), float(frames))
    assert torch.allclose(plan[n:], model.orchestrator.plan(torch.tensor(added), start=start))
    s.state.spoken = 2.0  # the pointer says: two tokens are spoken
    s.interrupt("stop, listen")
    new = model.tokenizer(" stop, listen", add_special_tokens=False)["input_ids"]
    assert s.transcript == before[:2] + new and s.text.endswith("stop, listen")
    assert s.inputs.plan.shape[0] == len(s.transcript) and torch.equal(s.inputs.plan[:2], plan[:2])
    assert float(s.inputs.plan[2]) == s.state.frames  # the new words from the next chunk on
    assert s.spoken_text() == "hello"  # two phonemes of "hello": the text of the word they are in
    with pytest.raises(StreamCharError, match="empty"):
        s.append_text("   ")
    s.done = True  # as if the transcript had been spoken
    s.append_text("one more thing")
    assert not s.done
    ended = StreamSession(model, text="hi", ref_image=IMG, max_seconds=1.0, stop_at_end=False)
    list(ended)
    ended.append_text("too late")  # max_seconds is reached: the stream stays ended
    assert ended.done


def test_pipelined_stream_equals_the_sequential_one(model):
    """Decoding chunk k on a second thread while chunk k+1 is generated changes nothing in the output (but float
    rounding), keeps the order, and hands every chunk to on_chunk (timed as `write`)."""
    seq = list(StreamSession(model, text=TEXT, ref_image=IMG, seed=4, max_seconds=5, stop_at_end=False)
               .chunks(pipelined=False))
    seen, threads = [], torch.get_num_threads()
    pipe = list(StreamSession(model, text=TEXT, ref_image=IMG, seed=4, max_seconds=5, stop_at_end=False)
                .chunks(on_chunk=lambda c: seen.append(c.index)))
    assert torch.get_num_threads() == threads  # the decode thread's single core is its own setting
    assert [c.index for c in pipe] == [c.index for c in seq] == seen == [0, 1, 2, 3]
    for a, b in zip(seq, pipe):
        # the same latents; the decode may run on fewer threads (another float summation order): +-1 level
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1 and a.spoken == b.spoken
        assert np.allclose(a.audio, b.audio, atol=1e-5)
        assert b.timings.write > 0 and b.timings.orchestrator > 0 and b.timings.dit > 0 and b.timings.decode > 0


def test_a_consumer_that_stops_early_stops_the_pipeline(model):
    s = StreamSession(model, text=TEXT, ref_image=IMG, seed=4, max_seconds=100, stop_at_end=False)
    it = iter(s)
    assert next(it).index == 0
    it.close()  # joins the generating thread: at most `ahead` chunks were made past the one taken
    assert 1 <= s.state.index <= 3
    assert s.step().index == s.state.index - 1  # the session goes on after a closed iterator


def test_static_condition_shapes_give_the_same_stream(model, monkeypatch):
    """What a compiled DiT gets (chunk 0's absent sink and motion as masked zero frames, the mask always
    passed) streams the same chunks as the dynamic shapes."""
    import streamchar.streaming.session as session_module

    plain = list(StreamSession(model, text=TEXT, ref_image=IMG, seed=2, max_seconds=3, stop_at_end=False)
                 .chunks(pipelined=False))
    monkeypatch.setattr(session_module, "_is_compiled", lambda module: True)
    static = list(StreamSession(model, text=TEXT, ref_image=IMG, seed=2, max_seconds=3, stop_at_end=False)
                  .chunks(pipelined=False))
    for a, b in zip(plain, static, strict=True):
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1
        assert np.allclose(a.audio, b.audio, atol=1e-4)


@pytest.mark.slow
def test_compiled_dit_never_recompiles_during_a_stream(model):
    """torch.compile of the DiT: chunk 0 (reference only) and later chunks (reference + sink + motion) share
    one graph, so streaming raises no recompile (dynamo is told to fail on one)."""
    import torch._dynamo

    cfg = model.cfg
    compiled = StreamChar.from_config(cfg, seed=0).eval()
    compiled.dit.compile()
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        chunks = list(StreamSession(compiled, text=TEXT, ref_image=IMG, seed=1, max_seconds=4, stop_at_end=False,
                                    sampler="student").chunks(pipelined=False))
    assert len(chunks) == 3
    eager = list(StreamSession(StreamChar.from_config(cfg, seed=0).eval(), text=TEXT, ref_image=IMG, seed=1,
                               max_seconds=4, stop_at_end=False, sampler="student").chunks(pipelined=False))
    for a, b in zip(chunks, eager):
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 2
