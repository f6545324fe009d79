import dataclasses

import pytest
import torch

from streamchar.config import tiny
from streamchar.models.orchestrator import Orchestrator, OrchestratorInputs
from streamchar.streaming.record import collate

CFG = tiny()
C_A = CFG.audio.latent_channels


POSITIONS = ("sequence", "timeline")


def build(positions="timeline"):
    torch.manual_seed(0)
    hint = positions == "timeline"  # the frame hint follows the timeline plan
    cfg = CFG.override([f"orchestrator.positions={positions}", f"orchestrator.frame_hint={hint}"])
    return Orchestrator.from_config(cfg).eval()


def inputs(b=1, hist=66, ref=24, text=30, start=6, seed=3, lag=0.0):
    g = torch.Generator().manual_seed(seed)
    x = OrchestratorInputs.unpadded(torch.randn(b, ref, C_A, generator=g) if ref else None,
                                    torch.randint(0, 1000, (b, text), generator=g), start,
                                    torch.randn(b, hist, C_A, generator=g) if hist else None, C_A)
    n = text - start  # the transcript on a timeline: 2 latents per token, the first `lag` latents back
    return replace(x, text_positions=(torch.arange(n) * 2.0 - lag).expand(b, n).clone())


def replace(x: OrchestratorInputs, **kw) -> OrchestratorInputs:
    return dataclasses.replace(x, **kw)


def test_shapes_and_transcript_span():
    o, x = build(), inputs(b=2)
    with torch.no_grad():
        prefix = o.encode_prefix(x)
        c_a, hidden = o.condition(prefix, torch.randn(2, 33, C_A), torch.rand(2))
    assert prefix.lengths.tolist() == [24 + 30 + 66] * 2 and prefix.mask is None  # nothing padded, no mask
    assert prefix.transcript.shape == (2, 30 - 6, CFG.orchestrator.hidden_size)
    assert c_a.shape == (2, 33, CFG.dit.dim) and hidden.shape == (2, 33, CFG.orchestrator.hidden_size)


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_prefix_equals_recomputation(positions):
    o = build(positions)
    for kw in (inputs(lag=7.5), inputs(hist=0, ref=0)):  # first chunk: no history, no reference voice
        with torch.no_grad():
            prefix = o.encode_prefix(kw)
            for t in (0.95, 0.5, 0.1):  # one prefix cache serves every denoise step
                x_a = torch.randn(1, 33, C_A)
                c1, h1 = o.condition(prefix, x_a, torch.tensor([t]))
                c2, h2, tr, _ = o.forward_full(kw, x_a, torch.tensor([t]))
                assert (c1 - c2).abs().max() < 1e-5 and (h1 - h2).abs().max() < 1e-5
            assert (prefix.transcript - tr).abs().max() < 1e-5


def test_prefix_cache_is_not_mutated_by_steps():
    o, x = build(), inputs()
    with torch.no_grad():
        prefix = o.encode_prefix(x)
        before = [k.clone() for k, _ in prefix.kv]
        x_a = torch.randn(1, 33, C_A)
        first, _ = o.condition(prefix, x_a, torch.tensor([0.5]))
        o.condition(prefix, torch.randn(1, 33, C_A), torch.tensor([0.2]))
        again, _ = o.condition(prefix, x_a, torch.tensor([0.5]))
    assert all(torch.equal(a, k) for a, (k, _) in zip(before, prefix.kv))
    assert torch.equal(first, again)


def test_condition_depends_on_noisy_audio_timestep_and_text():
    o, x = build(), inputs()
    x_a = torch.randn(1, 33, C_A)
    with torch.no_grad():
        prefix = o.encode_prefix(x)
        base, _ = o.condition(prefix, x_a, torch.tensor([0.5]))
        other_t, _ = o.condition(prefix, x_a, torch.tensor([0.1]))
        other_x, _ = o.condition(prefix, x_a + 1, torch.tensor([0.5]))
        other_text, _ = o.condition(o.encode_prefix(replace(x, text_ids=x.text_ids.flip(1))), x_a, torch.tensor([0.5]))
    for other in (other_t, other_x, other_text):
        assert (other - base).abs().max() > 1e-4


def test_gradients_reach_every_new_part():
    o, x = build(), inputs()
    prefix = o.encode_prefix(x)
    c_a, hidden = o.condition(prefix, torch.randn(1, 33, C_A), torch.tensor([0.3]))
    (c_a.pow(2).mean() + o.pointer(prefix, hidden).raw.sum()).backward()
    for name in ("ref_proj", "hist_proj", "cond_proj", "time_embedding", "ca_proj", "pap"):
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in getattr(o, name).parameters()), name
    assert o.lm.embed_tokens.weight.grad.abs().max() > 0


def record(x: OrchestratorInputs):
    """A one-row ChunkRecord around orchestrator inputs (collate pads records)."""
    from streamchar.streaming.record import ChunkRecord

    z = torch.zeros(1)
    return ChunkRecord(x, torch.zeros(1, 2, 4), None, None, None, z.bool(), z + 1, z.long())


@pytest.mark.parametrize("positions", POSITIONS)
def test_ragged_batch_equals_rows_alone(positions):
    """Rows of different reference-voice, transcript, prompt and history lengths, left-padded into one batch,
    give each row's c_a, hidden states, transcript states and pointer as the row alone (cached and full)."""
    o = build(positions)
    rows = [inputs(ref=24, text=30, hist=66, start=6, seed=1, lag=10), inputs(ref=0, text=12, hist=0, start=1, seed=2),
            inputs(ref=40, text=20, hist=33, start=9, seed=4, lag=4.6)]
    batch = collate([record(r) for r in rows]).orchestrator
    x_a, t = torch.randn(3, 33, C_A), torch.tensor([0.9, 0.4, 0.1])
    with torch.no_grad():
        prefix = o.encode_prefix(batch)
        assert prefix.mask is not None and prefix.transcript_mask is not None
        c_b, h_b = o.condition(prefix, x_a, t)
        p_b = o.pointer(prefix, h_b).endpoint
        c_f, h_f, tr_f, tm_f = o.forward_full(batch, x_a, t)
        for i, row in enumerate(rows):
            alone = o.encode_prefix(row)
            c, h = o.condition(alone, x_a[i:i + 1], t[i:i + 1])
            n = row.text_len[0] - row.transcript_start[0]
            assert (c_b[i] - c[0]).abs().max() < 1e-5 and (h_b[i] - h[0]).abs().max() < 1e-5
            assert (c_f[i] - c[0]).abs().max() < 1e-5
            assert (prefix.transcript[i, :n] - alone.transcript[0]).abs().max() < 1e-5
            assert (tr_f[i, :n] - alone.transcript[0]).abs().max() < 1e-5 and bool(tm_f[i, :n].all())
            assert (p_b[i] - o.pointer(alone, h).endpoint[0]).abs() < 1e-4


@pytest.mark.parametrize("positions", POSITIONS)
def test_tails_on_one_prefix_equal_separate_passes(positions):
    """forward_tails runs the prefix once for several E_cond tails (the pointer's clean pass in training):
    each tail equals its own full pass, with and without padding."""
    o = build(positions)
    rows = [inputs(ref=24, text=30, hist=66, seed=1, lag=8), inputs(ref=0, text=12, hist=0, start=1, seed=2)]
    batch = collate([record(r) for r in rows]).orchestrator
    x1, x2 = torch.randn(2, 33, C_A), torch.randn(2, 33, C_A)
    t1, t2 = torch.tensor([0.7, 0.2]), torch.zeros(2)
    for inp in (batch, rows[0]):
        b = inp.batch_size
        with torch.no_grad():
            cs, hs, tr, tm = o.forward_tails(inp, [(x1[:b], t1[:b]), (x2[:b], t2[:b])])
            for (x, t), c, h in zip(((x1[:b], t1[:b]), (x2[:b], t2[:b])), cs, hs):
                c_ref, h_ref, tr_ref, _ = o.forward_full(inp, x, t)
                assert (c - c_ref).abs().max() < 1e-5 and (h - h_ref).abs().max() < 1e-5
            assert (tr - tr_ref).abs().max() < 1e-5


def test_timeline_positions_place_audio_and_text_in_time():
    """History ends right before E_cond, each transcript token sits at its text position from E_cond's first
    frame (rounded), the prompt and the reference voice come before all of it, and left padding sits at 0;
    without text positions the tokens are planned from the token durations, the first at 0."""
    o = build("timeline")
    rows = [inputs(ref=5, text=10, hist=8, start=2, seed=1, lag=6.2), inputs(ref=0, text=4, hist=0, start=1, seed=2)]
    rows[1] = replace(rows[1], text_positions=None)
    with torch.no_grad():
        o.token_durations[rows[1].text_ids[0, 1:]] = torch.tensor([1.0, 2.5, 3.0])
    batch = collate([record(rows[0]), record(replace(rows[1], text_positions=torch.tensor([[0.0, 1.0, 3.5]])))])
    p = o.pack(batch.orchestrator)
    pos, c0 = p.positions[0], int(p.cond_start[0])  # row 0 is the longest: no padding
    words = pos[5 + 2:5 + 10] - c0
    assert words.tolist() == [round(k * 2.0 - 6.2) for k in range(8)]
    assert (pos[5 + 10:] - c0).tolist() == list(range(-8, 0))
    assert int(pos[:7].max()) < int(pos[7:].min()) and int(pos.min()) == 0
    pos1, pad = p.positions[1], p.embeds.shape[1] - 4
    assert pos1[:pad].eq(0).all() and (pos1[pad:] - int(p.cond_start[1])).tolist() == [-1, 0, 1, 4]
    planned = o.pack(rows[1])  # no positions: the plan of the durations, 1 + 2.5 -> 0, 1, 4 (3.5 rounds to 4)
    assert (planned.positions[0] - int(planned.cond_start[0])).tolist() == [-1, 0, 1, 4]


def test_text_positions_move_the_text_only_on_a_timeline():
    x, x_a, t = inputs(), torch.randn(1, 33, C_A), torch.tensor([0.5])
    with torch.no_grad():
        for positions in POSITIONS:
            o = build(positions)
            base = o.forward_full(x, x_a, t)[0]
            moved = o.forward_full(replace(x, text_positions=x.text_positions - 12), x_a, t)[0]
            assert ((moved - base).abs().max() > 1e-4) == (positions == "timeline"), positions


def test_frame_hint_gives_each_frame_its_planned_token():
    """With the hint, moving the plan moves what each E_cond frame is told (same text, same audio), and the
    hint's ids are those of `spoken_at`; without it the plan only moves RoPE positions of the transcript."""
    o, x = build(), inputs(hist=0, ref=0, text=10, start=2)
    ids = o.frame_hint(x, 33)[0]
    assert ids[:16].tolist() == sum(([int(t)] * 2 for t in x.text_ids[0, 2:]), [])  # 2 latents per token
    assert ids[16:].tolist() == [-1] * 17  # after the last token's end (2 x 7 + its mean duration 1.83)
    x_a, t = torch.randn(1, 33, C_A), torch.tensor([0.5])
    with torch.no_grad():
        base = o.cond_embeds(x_a, t, o.frame_hint(x, 33))
        plain = o.cond_embeds(x_a, t)
        moved = o.cond_embeds(x_a, t, o.frame_hint(replace(x, text_positions=x.text_positions + 8), 33))
    assert (base[0, 16:] - plain[0, 16:]).abs().max() == 0  # frames of no token get no hint
    assert (base[0, :16] - plain[0, :16]).abs().min() > 0
    assert (moved[0, :8] - plain[0, :8]).abs().max() == 0  # the hint moved 8 frames later with the plan
    assert ((moved - plain)[0, 8:24] - (base - plain)[0, :16]).abs().max() < 1e-5
    off = Orchestrator.from_config(CFG.override(["orchestrator.frame_hint=false"]))
    assert off.frame_hint(x, 33) is None


def test_frame_hint_needs_timeline_positions():
    from streamchar.errors import StreamCharError

    with pytest.raises(StreamCharError, match="frame_hint"):
        CFG.override(["orchestrator.positions=sequence"])
