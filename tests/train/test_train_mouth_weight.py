"""The mouth-region weight on the video flow loss (train/mouth_weight.py, diffusion/flow.py, pretrain)."""

import numpy as np
import pytest
import torch

from streamchar.config import tiny
from streamchar.configs import resolve_config
from streamchar.data.latents import write_random_latents
from streamchar.data.render import mouth_box
from streamchar.diffusion.flow import flow_loss, velocity_target
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.train.latent_data import collate
from streamchar.train.mouth_weight import masked_mse, mouth_mask, weight_map
from streamchar.train.pretrain import PretrainConfig, build_datasets, build_trainable, make_val_fn, other_speech

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_the_mask_marks_every_latent_cell_the_box_overlaps():
    mask = mouth_mask(8, 8, (0.435, 0.505, 0.565, 0.605))  # x 3.48..4.52, y 4.04..4.84 in cells
    assert mask.shape == (8, 8) and mask.sum() == 2 and mask[4, 3] == 1 and mask[4, 4] == 1
    edge = mouth_mask(8, 8, (0.25, 0.25, 0.5, 0.5))  # on cell boundaries: cells 2 and 3 only
    assert edge.sum() == 4 and edge[2:4, 2:4].all()
    for bad in [(0.5, 0.1, 0.4, 0.2), (0.1, 0.1, 1.2, 0.2), (0.1, 0.2, 0.3)]:
        with pytest.raises(StreamCharError, match="mouth_box"):
            mouth_mask(8, 8, bad)


def test_the_tiny_recipe_box_covers_synthtalks_mouth():
    """Every pixel of SynthTalk's mouth box (data/render.py) lies in a latent cell the recipe's box marks."""
    cfg = PretrainConfig.from_yaml(resolve_config("pretrain_tiny"))
    mc = tiny()
    h, w = mc.latent_size
    f = mc.video.spatial_factor
    mask = mouth_mask(h, w, cfg.mouth_box)
    x0, y0, x1, y1 = mouth_box(None, mc.video.height)
    pixels = mask.repeat_interleave(f, 0).repeat_interleave(f, 1)  # (H, W)
    assert pixels[y0:y1, x0:x1].all()
    assert mask.sum() <= 0.1 * h * w  # the mouth, not the face
    assert cfg.mouth_weight > 0


def test_weighted_flow_loss_is_the_weighted_mean_and_weight_zero_is_eq2():
    g = torch.Generator().manual_seed(0)
    v_v, z_v, e_v = (torch.randn(2, 4, 3, 8, 8, generator=g) for _ in range(3))
    v_a, z_a, e_a = (torch.randn(2, 33, 5, generator=g) for _ in range(3))
    mask = mouth_mask(8, 8, (0.435, 0.505, 0.565, 0.605))
    plain = flow_loss(v_v, v_a, z_v, z_a, e_v, e_a)
    zero = flow_loss(v_v, v_a, z_v, z_a, e_v, e_a, video_weight=weight_map(mask, 0.0))
    assert torch.allclose(plain[1], zero[1]) and torch.allclose(plain[0], zero[0])
    wm = weight_map(mask, 10.0)
    assert wm.mean().item() == pytest.approx(1.0) and wm[4, 3] / wm[0, 0] == pytest.approx(11.0)
    sq = (v_v - velocity_target(z_v, e_v)).pow(2)
    expected = (sq * wm).mean()
    weighted = flow_loss(v_v, v_a, z_v, z_a, e_v, e_a, video_weight=wm)
    assert weighted[1].item() == pytest.approx(expected.item(), rel=1e-6)
    assert weighted[2].item() == pytest.approx(plain[2].item())  # audio untouched
    mouth_only = sq[..., 4, 3:5].mean()
    assert masked_mse(v_v, velocity_target(z_v, e_v), mask).item() == pytest.approx(mouth_only.item(), rel=1e-6)
    with pytest.raises(StreamCharError, match="mouth_weight"):
        weight_map(mask, -1.0)


def test_the_config_names_a_weight_without_a_box_and_a_bad_box(tmp_path):
    with pytest.raises(StreamCharError, match="mouth_weight.*mouth_box"):
        PretrainConfig.from_dict({"data": str(tmp_path), "mouth_weight": 5.0}).validate()
    with pytest.raises(StreamCharError, match="mouth_box"):
        PretrainConfig.from_dict({"data": str(tmp_path), "mouth_box": [0.6, 0.5, 0.4, 0.7]}).validate()


def test_training_weighs_the_mouth_and_logs_the_plain_video_loss(tmp_path):
    """Same batch, same draws: with a weight the optimised video term is the weighted mean, the logged
    loss_video stays Eq. 2's, and loss_video_mouth is the MSE on the mouth's cells."""
    latents = write_random_latents(tmp_path / "latents", tiny(), {"train": [3]})
    box = (0.435, 0.505, 0.565, 0.605)
    outs = {}
    for weight in (0.0, 10.0):
        cfg = PretrainConfig.from_dict({"data": str(latents), "mouth_box": list(box), "mouth_weight": weight,
                                        "train": {"precision": "fp32", "out_dir": str(tmp_path / "out")}})
        pipe = StreamChar.from_config(tiny(), seed=0)
        model = build_trainable(cfg, pipe)
        ds = build_datasets(cfg, pipe, "train", train=True)
        batch = collate([ds.sample(i, np.random.default_rng([5, i])) for i in range(2)])
        t, eps_v, eps_a = model.draw_noise(batch)
        outs[weight] = model(batch, t[0], eps_v[0], eps_a[0])
    a, b = outs[0.0], outs[10.0]
    assert a["loss_video"].item() == pytest.approx(b["loss_video"].item(), rel=1e-6)
    assert a["loss_video_mouth"].item() == pytest.approx(b["loss_video_mouth"].item(), rel=1e-6)
    mask = mouth_mask(*tiny().latent_size, box)
    share = mask.sum() / mask.numel()
    # the weighted mean rebuilt from the logged plain and mouth terms
    wm = weight_map(mask, 10.0)
    rest = (a["loss_video"] - share * a["loss_video_mouth"]) / (1 - share)
    expected = (wm[mask == 1][0] * share * a["loss_video_mouth"] + wm[mask == 0][0] * (1 - share) * rest)
    assert (b["loss_flow"] - b["loss_audio"]).item() == pytest.approx(expected.item(), rel=1e-4)
    assert (a["loss_flow"] - a["loss_audio"]).item() == pytest.approx(a["loss_video"].item(), rel=1e-5)


def test_validation_measures_how_much_the_mouth_follows_the_speech(tmp_path):
    """`other_speech` gives each row the next row's speech side and keeps its video side; validation reports
    the mouth cells' loss with it minus with the row's own speech."""
    latents = write_random_latents(tmp_path / "latents", tiny(), {"train": [2, 2]})
    cfg = PretrainConfig.from_dict({"data": str(latents), "mouth_box": [0.435, 0.505, 0.565, 0.605],
                                    "train": {"precision": "fp32", "out_dir": str(tmp_path / "out")}})
    pipe = StreamChar.from_config(tiny(), seed=0)
    model = build_trainable(cfg, pipe).eval()
    ds = build_datasets(cfg, pipe, "train", train=False)
    batch = collate([ds.sample(i, np.random.default_rng([1, i])) for i in range(3)])
    other = other_speech(batch)
    assert torch.equal(other["audio"][1], batch["audio"][0]) and torch.equal(other["video"], batch["video"])
    o, b = other["record"].orchestrator, batch["record"].orchestrator
    assert torch.equal(o.text_ids[2], b.text_ids[1]) and torch.equal(o.history[0], b.history[2])
    assert torch.equal(other["record"].context, batch["record"].context)  # the prompt is the video's
    with torch.no_grad():
        torch.nn.init.normal_(pipe.dit.audio_to_video.proj.weight, std=0.05)  # the video listens to c_a
        out = make_val_fn(ds, 4, stage=2)(model, 0)
    assert "mouth_speech_gap" in out and out["mouth_speech_gap"] != 0.0
