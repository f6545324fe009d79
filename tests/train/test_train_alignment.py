"""Frame-token alignment (train/alignment.py): targets from word timings, the loss, and its place in pretraining."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamchar.codecs.tokenizer import build_tiny_tokenizer
from streamchar.config import tiny
from streamchar.data.latents import write_random_latents
from streamchar.pipeline import StreamChar
from streamchar.train.alignment import IGNORE, frame_token_loss, frame_tokens, token_spans
from streamchar.train.latent_data import collate
from streamchar.train.pretrain import PretrainConfig, build_trainable, make_val_fn
from streamchar.train.latent_data import LatentChunks

pytestmark = pytest.mark.usefixtures("one_thread")


def test_targets_follow_the_word_timings():
    """Each frame gets the token of the word spoken at its centre (a word's tokens share its span in order),
    silence gets IGNORE."""
    tok = build_tiny_tokenizer()
    text = "Hello there, zyxwv."
    words = [{"text": "Hello", "char_start": 0, "char_end": 5, "start": 0.5, "end": 1.0},
             {"text": "there", "char_start": 6, "char_end": 11, "start": 1.0, "end": 1.5},
             {"text": "zyxwv", "char_start": 13, "char_end": 18, "start": 2.0, "end": 3.0}]
    ids, spans = token_spans(text, words, tok)
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    frames = frame_tokens(ids, spans, n_frames=80, rate=24.0)
    centres = (np.arange(80) + 0.5) / 24
    silent = (centres < 0.5) | ((centres >= 1.5) & (centres < 2.0)) | (centres >= 3.0)
    assert (frames[torch.from_numpy(silent)] == IGNORE).all()
    assert (frames[torch.from_numpy(~silent)] != IGNORE).all()
    spoken = [tok.decode([i]) for i in frames.tolist() if i != IGNORE]
    # in order of speech, each token once as a run, and the words' tokens rebuild the words
    runs = [t for j, t in enumerate(spoken) if j == 0 or t != spoken[j - 1]]
    assert "".join(runs).replace(" ", "") == "Hellotherezyxwv"
    rare = [i for i, (a, _) in zip(ids, spans) if not np.isnan(a) and a >= 2.0]
    assert len(rare) > 1  # a rare word of several tokens: they split its second evenly
    per = [(frames == i).sum().item() for i in rare]
    assert max(per) - min(per) <= 1


def test_loss_is_the_cross_entropy_of_the_speaking_frames():
    g = torch.Generator().manual_seed(0)
    hidden, emb = torch.randn(2, 5, 8, generator=g), torch.randn(11, 8, generator=g)
    targets = torch.tensor([[3, IGNORE, 4, 4, IGNORE], [IGNORE] * 5])
    loss, acc = frame_token_loss(hidden, emb, targets)
    logits = hidden @ emb.t()
    keep = targets[0] != IGNORE  # the second sample is silent: it counts 0 in the mean over samples
    assert loss.item() == pytest.approx(F.cross_entropy(logits[0][keep], targets[0][keep]).item() / 2, rel=1e-6)
    assert acc.item() == pytest.approx((logits[0][keep].argmax(-1) == targets[0][keep]).float().mean().item() / 2)
    silent, _ = frame_token_loss(hidden, emb, torch.full((2, 5), IGNORE))
    assert silent.item() == 0.0  # no speech: no loss, not NaN


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return write_random_latents(tmp_path_factory.mktemp("lat") / "latents", tiny(), {"train": [3, 2], "val": [2, 2]})


def _dataset(latents, split="train"):
    ctx = torch.zeros(4, tiny().text.dim)

    def targets(meta, tensors, n):  # each clip's frames speak its tokens in turn, one in 4 frames silent
        ids = tensors["token_ids"].tolist()
        out = torch.tensor([ids[(f // 3) % len(ids)] for f in range(n)])
        out[::4] = IGNORE
        return out

    return LatentChunks(latents, split, prompt=lambda clip: ([1, 2, 0], ctx), null_prompt_ids=[0],
                        history_frames=50, frame_tokens=targets)


def test_pretraining_adds_the_alignment_loss_per_sample(latents):
    """Samples carry their chunk's frame targets; the loss adds align_weight x the alignment loss, and a
    batch gives the mean of its samples one by one."""
    ds = _dataset(latents)
    A = tiny().audio_latent_frames
    s = ds.sample(2, np.random.default_rng(0))
    clip = ds.clips[ds.items[2][0]]
    assert torch.equal(s["frame_tokens"], clip["frame_tokens"][s["chunk"] * A:(s["chunk"] + 1) * A])
    pipe = StreamChar.from_config(tiny(), seed=0)
    model = build_trainable(PretrainConfig(align_weight=0.5, data="x"), pipe)
    samples = [ds.sample(i, np.random.default_rng([3, i])) for i in range(len(ds))]
    with torch.no_grad():
        out = model(collate(samples))
        alone = [model(collate([x])) for x in samples]
    assert out["loss_align"].item() == pytest.approx(np.mean([o["loss_align"].item() for o in alone]), rel=1e-5)
    rest = out["loss_flow"] + model.pap_weight * out["loss_pap"]
    assert out["loss"].item() == pytest.approx((rest + 0.5 * out["loss_align"]).item(), rel=1e-6)
    model.align_weight = 0.0
    with torch.no_grad():
        assert "loss_align" not in model(collate(samples))


def test_validation_reports_the_text_gap(latents):
    """val/text_gap: the audio loss with the next sample's transcript minus with its own; an untrained model
    gives a small gap of either sign, a finite number."""
    ds = _dataset(latents, "val")
    pipe = StreamChar.from_config(tiny(), seed=0)
    model = build_trainable(PretrainConfig(data="x"), pipe).eval()
    with torch.no_grad():
        out = make_val_fn(ds, 4, stage=2, batch_size=4)(model, 0)
    assert np.isfinite(out["text_gap"]) and out["text_gap"] != 0.0


def test_alignment_reads_the_noisy_tail(latents, monkeypatch):
    """The aid is computed on the LM's states at the noisy audio (what c_a is made from at inference), not at
    the clean audio the pointer reads: the states it gets equal the noisy tail's, and differ with t."""
    import streamchar.train.pretrain as pretrain_module
    from streamchar.diffusion import flow

    ds = _dataset(latents)
    pipe = StreamChar.from_config(tiny(), seed=0)
    model = build_trainable(PretrainConfig(align_weight=0.5, data="x"), pipe).eval()
    batch = collate([ds.sample(i, np.random.default_rng(i)) for i in range(2)])
    seen = []
    real = pretrain_module.frame_token_loss
    monkeypatch.setattr(pretrain_module, "frame_token_loss", lambda h, e, y: (seen.append(h), real(h, e, y))[1])
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0.9, 0.9])
    eps_v, eps_a = torch.randn(batch["video"].shape, generator=g), torch.randn(batch["audio"].shape, generator=g)
    with torch.no_grad():
        model(batch, t, eps_v, eps_a)
        model(batch, torch.tensor([0.2, 0.2]), eps_v, eps_a)
        _, noisy, _, _ = pipe.orchestrator.forward_full(batch["record"].orchestrator, flow.noisy(batch["audio"], eps_a, t), t)
    assert seen[0].shape[-1] == pipe.cfg.orchestrator.hidden_size
    torch.testing.assert_close(seen[0], noisy, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(seen[0], seen[1], atol=1e-3)  # another noise level, other states
