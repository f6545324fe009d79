import torch

from streamchar.config import tiny
from streamchar.models.rope import ModalityRoPE, apply_rope, condition_layout, rope_split


def test_split_matches_wan():
    assert rope_split(128) == (44, 42, 42)
    assert sum(rope_split(32)) == 32


def test_audio_and_video_tokens_of_one_instant_share_the_phase():
    cfg = tiny()
    rope = ModalityRoPE(32, audio_scale=cfg.audio_rope_scale)
    video = rope.angles(rope.video_positions(torch.arange(9), 1, 1))  # (9, 16)
    audio = rope.angles(rope.audio_positions(33))  # (33, 16)
    t = rope.split[0] // 2
    for k in range(9):  # video latent k (k/6 s) and audio latent 4k (4k/24 s) are the same instant
        assert torch.equal(video[k, :t], audio[4 * k, :t])
    assert not torch.allclose(video[1, :t], audio[1, :t])  # and a different instant has another phase
    # spatial parts of audio tokens do not rotate (h = w = 0)
    assert torch.count_nonzero(audio[:, t:]) == 0


def test_condition_positions():
    k, gap = 9, 4
    lay = condition_layout(k, gap)
    motion = torch.arange(k) + lay["motion"]
    assert motion.tolist() == list(range(-9, 0))  # motion frames at -K..-1, new chunk starts at 0
    sink = torch.arange(k) + lay["sink"]
    assert sink.max() < motion.min() - gap + 1 and lay["reference"] < sink.min()


def test_rope_is_a_rotation_and_relative():
    rope = ModalityRoPE(32)
    x = torch.randn(1, 5, 2, 32)
    pos = rope.video_positions(torch.arange(5), 1, 1)
    y = apply_rope(x, rope(pos))
    assert torch.allclose(x.norm(dim=-1), y.norm(dim=-1), atol=1e-5)
    # q.k depends only on the position difference: shift every position by -7
    q, k = torch.randn(1, 5, 1, 32), torch.randn(1, 5, 1, 32)
    a = apply_rope(q, rope(pos))[:, :, 0] @ apply_rope(k, rope(pos))[:, :, 0].transpose(-1, -2)
    pos2 = rope.video_positions(torch.arange(5) - 7, 1, 1)
    b = apply_rope(q, rope(pos2))[:, :, 0] @ apply_rope(k, rope(pos2))[:, :, 0].transpose(-1, -2)
    assert torch.allclose(a, b, atol=1e-4)
