"""`streamchar convert`: upstream-format folders (tiny random, saved in their real formats) -> a pipeline folder."""

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from transformers import Qwen2Config, Qwen2ForCausalLM

from streamchar.cli import main
from streamchar.codecs import OobleckAudioCodec, T5PromptEncoder, WanVideoCodec, build_tiny_tokenizer
from streamchar.errors import StreamCharError
from streamchar.pipeline import StreamChar
from streamchar.streaming.session import StreamSession


def wan(in_channels=16, text_dim=64):
    torch.manual_seed(1)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32,
                              in_channels=in_channels, out_channels=in_channels, text_dim=text_dim, freq_dim=256,
                              ffn_dim=256, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                              eps=1e-6, rope_max_seq_len=1024)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    return m


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream")
    tok = build_tiny_tokenizer(1024)
    wan().save_pretrained(root / "wan")
    torch.manual_seed(2)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=1024, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
                     ).save_pretrained(root / "qwen")
    tok.save_pretrained(root / "qwen")
    T5PromptEncoder.tiny(tok, dim=64, max_length=32).save_pretrained(root / "t5")
    WanVideoCodec.tiny().save_pretrained(root / "vae")
    OobleckAudioCodec.tiny().save_pretrained(root / "audio")
    return root


def test_convert_assembles_a_working_pipeline(folders, tmp_path, capsys):
    r = folders
    code = main(["convert", "--preset", "tiny", "--out", str(tmp_path / "ckpt"), "--dtype", "fp32",
                 "--wan", str(r / "wan"), "--qwen", str(r / "qwen"), "--text-encoder", str(r / "t5"),
                 "--video-vae", str(r / "vae"), "--audio-vae", str(r / "audio")])
    assert code == 0
    again = ["convert", "--preset", "tiny", "--out", str(tmp_path / "ckpt"), "--audio-vae", str(r / "audio")]
    assert main(again) == 2  # never replaced silently
    assert "already holds data; pass --overwrite" in capsys.readouterr().err
    model = StreamChar.from_pretrained(tmp_path / "ckpt")
    cfg = model.cfg
    assert (cfg.dit.dim, cfg.dit.num_layers, cfg.dit.ffn_dim) == (128, 2, 256)
    assert (cfg.orchestrator.hidden_size, cfg.orchestrator.num_kv_heads) == (96, 2)
    assert cfg.dit.path is None and cfg.orchestrator.path is None  # the folder is self-contained
    w = WanTransformer3DModel.from_pretrained(r / "wan")
    blk = model.dit.blocks[1]
    assert torch.equal(blk.ffn[0].weight, w.blocks[1].ffn.net[0].proj.weight)
    assert torch.equal(blk.audio_ffn[0].weight, blk.ffn[0].weight)  # audio expert = replica of the FFN
    assert torch.equal(blk.norm3.weight, w.blocks[1].norm2.weight)  # diffusers' norm2 is Wan's norm3
    q = Qwen2ForCausalLM.from_pretrained(r / "qwen")
    assert torch.equal(model.orchestrator.lm.layers[1].mlp.up_proj.weight, q.model.layers[1].mlp.up_proj.weight)
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    chunk = StreamSession(model, text="converted model", ref_image=img, max_seconds=1).step()
    assert chunk.frames.shape == (33, 64, 64, 3)


def test_convert_rejects_folders_that_disagree(folders, tmp_path):
    wan(in_channels=48).save_pretrained(tmp_path / "wan48")
    with pytest.raises(StreamCharError, match="48 latent channels"):
        main_raising(["convert", "--preset", "tiny", "--out", str(tmp_path / "x"), "--wan", str(tmp_path / "wan48"),
                      "--video-vae", str(folders / "vae")])
    assert not (tmp_path / "x").exists()


def main_raising(argv):
    from streamchar.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def test_convert_bad_arguments(tmp_path, capsys):
    assert main(["convert", "--out", str(tmp_path / "x")]) == 2
    assert "nothing to convert" in capsys.readouterr().err
    assert main(["convert", "--out", str(tmp_path / "x"), "--wan", str(tmp_path / "missing")]) == 2
    assert "--wan folder not found" in capsys.readouterr().err
