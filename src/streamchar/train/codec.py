"""Training the tiny video / audio codecs (Wan VAE, Oobleck VAE) on SynthTalk with the shared Trainer.

Video (`kind: video`): items are `frames`-frame runs (33 = one streaming chunk, 1 + 4k) of training clips at
their stored size (64x64). The VAE encodes, samples the posterior, decodes; the loss is

    l1_weight * |x - x'|  +  mse_weight * (x - x')^2     (means over pixels, frames in [-1, 1])
    + kl_weight * KL(q(z|x) || N(0, I)) / pixels           (KL summed over latent elements per clip)

Dividing the summed KL by the number of pixel values gives LDM's balance (sum-reconstruction vs sum-KL with
weight 1e-6) while the reconstruction terms stay per-pixel means.

Audio (`kind: audio`): items are `crop_seconds` crops (rounded to whole hops, <= 1.375 s = one chunk) of the
training clips' audio at the codec rate (24,576 Hz for the tiny codec). Loss:

    l1_weight * |w - w'|  +  stft_weight * MRSTFT(w, w')  +  mel_weight * |log mel(w) - log mel(w')|
    + kl_weight * KL / samples

with MRSTFT the mean over `stft_sizes` (hop n/4, Hann window, torch.stft) of the L1 distance of magnitudes
plus the L1 distance of log magnitudes (floored at 1e-5, as DAC's mel loss). Spectral convergence
(||S' - S|| / ||S||) is left out: it explodes on the silent crops speech is full of. The log-mel term (80 mels,
n_fft 1024, hop 256, floored at 1e-5: Vocos's mel loss) weighs the bands speech is heard in, where the linear
STFT terms spend most of their weight on the many quiet high-frequency bins.

After training, per-channel latent mean / std of the posterior mode over training clips (up to `stats_clips`)
are stored with the codec so its `encode` gives ~zero-mean, unit-std latents: for video in the diffusers config
(`latents_mean` / `latents_std`, like Wan's releases), for audio in `latents_stats.json`. The codec is saved
with `save_pretrained` to `<train.out_dir>/codec`, and a report (also `<train.out_dir>/report.json`) gives
    video: PSNR (dB, uint8 frames, pooled over chunks) on held-out clips before and after training
    audio: pocketsphinx WER on held-out speech: original, codec round trip before and after training

    streamchar train codec-video --config codec_video_tiny [--data DIR] [--out-dir DIR] [--steps N]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from streamchar.config import YamlConfig
from streamchar.errors import StreamCharError
from streamchar.train.clips import AudioCrops, Clip, EpochLoader, VideoChunks, load_clips
from streamchar.train.config import TrainConfig

KINDS = ("video", "audio")
VIDEO_ARCHS = ("tiny", "wan")
AUDIO_ARCHS = ("tiny", "oobleck")
MAX_AUDIO_SECONDS = 1.375  # one streaming chunk: 33 frames at 24 fps


@dataclass
class CodecTrainConfig(YamlConfig):
    kind: str = "video"  # 'video' (Wan VAE) | 'audio' (Oobleck VAE)
    data: str = "data/synthtalk"  # a SynthTalk folder (index.json + shards)
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    eval_splits: list[str] = field(default_factory=lambda: ["val", "test"])  # held out for the report
    max_clips: int = 64  # training clips decoded into memory (64x64: ~2-8 MB each, see train/clips.py)
    items_per_clip: int = 8  # random crops per clip per epoch
    batch_size: int = 1
    init: str | None = None  # start from this codec folder instead of a random tiny codec
    # video
    frames: int = 33  # frames per item, 1 + 4k
    video_arch: str = "tiny"  # 'tiny' (codecs/tiny_video.py, 2D over 4-frame groups) | 'wan' (diffusers Wan VAE)
    latent_channels: int = 16  # a random codec's latent channels
    base_dim: int = 8  # a random tiny Wan VAE's width
    channels: list[int] = field(default_factory=lambda: [32, 64, 96, 128])  # the tiny video VAE's widths
    characters: int = 0  # video: re-render items as this many more SynthTalk-style characters (0: off)
    rerender: float = 0.5  # the share of items re-rendered (train/clips.VideoChunks)
    audio_arch: str = "tiny"  # 'tiny' (codecs/tiny_audio.py, mel encoder + iSTFT decoder) | 'oobleck'
    audio_latent_channels: int = 32  # a random tiny audio codec's latent channels
    audio_dim: int = 256  # its width
    judge: str | None = None  # speech judge folder for the WER report (None: the bundled one, else pocketsphinx)
    mse_weight: float = 1.0
    # audio
    crop_seconds: float = MAX_AUDIO_SECONDS  # rounded down to whole hops (at least one)
    stft_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024])
    stft_weight: float = 1.0
    mel_weight: float = 0.0  # log-mel L1 (Vocos); 0 = off
    # both
    l1_weight: float = 1.0
    kl_weight: float = 1e-6
    stats_clips: int = 16  # training clips the latent mean / std are measured on
    eval_clips: int = 4  # held-out clips in the report (0 = no report)
    eval_chunks: int = 4  # video: whole chunks of `frames` per held-out clip
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="out/codec"))

    def validate(self) -> "CodecTrainConfig":
        def bad(name: str, why: str):
            raise StreamCharError(f"config field {name}: {why}")

        if self.kind not in KINDS:
            bad("kind", f"unknown value {self.kind!r}; choose from {list(KINDS)}")
        if self.audio_arch not in AUDIO_ARCHS:
            bad("audio_arch", f"unknown value {self.audio_arch!r}; choose from {list(AUDIO_ARCHS)}")
        if self.video_arch not in VIDEO_ARCHS:
            bad("video_arch", f"unknown value {self.video_arch!r}; choose from {list(VIDEO_ARCHS)}")
        for name in ("max_clips", "items_per_clip", "batch_size", "frames", "latent_channels", "base_dim",
                     "stats_clips", "eval_chunks"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.rerender <= 1.0:
            bad("rerender", f"must be in [0, 1], got {self.rerender}")
        for name in ("characters", "eval_clips", "mse_weight", "stft_weight", "mel_weight", "l1_weight", "kl_weight"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if (self.frames - 1) % 4:
            bad("frames", f"must be 1 + 4k (the Wan VAE's temporal layout), got {self.frames}")
        if not 0 < self.crop_seconds <= MAX_AUDIO_SECONDS:
            bad("crop_seconds", f"must be in (0, {MAX_AUDIO_SECONDS}], got {self.crop_seconds}")
        if not self.stft_sizes or min(self.stft_sizes) < 16:
            bad("stft_sizes", f"need one or more FFT sizes >= 16, got {self.stft_sizes}")
        if not self.train_splits:
            bad("train_splits", "must name at least one split")
        self.train.validate("train")
        return self


# ---- models and losses ------------------------------------------------------------------------------
class VAEForTraining(nn.Module):
    """forward(x) -> (reconstruction cropped/padded to x's length, posterior mean, posterior log-variance)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor):
        posterior = self.vae.encode(x).latent_dist
        y = self.vae.decode(posterior.sample()).sample
        if y.shape[-1] != x.shape[-1] and x.dim() == 3:  # waveforms: odd-stride Oobleck decoders come out short
            y = F.pad(y[..., : x.shape[-1]], (0, max(0, x.shape[-1] - y.shape[-1])))
        return y, posterior.mean, posterior.logvar


class TinyCodecForTraining(nn.Module):
    """The tiny codecs (codecs/tiny_video.py, codecs/tiny_audio.py): forward(x) -> (reconstruction, posterior
    mean, posterior log-variance)."""

    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, x: torch.Tensor):
        from streamchar.codecs.tiny_video import TinyVideoCodec, from_groups

        posterior = self.codec.posterior(x)
        y = self.codec.vae.decode(posterior.sample())
        if isinstance(self.codec, TinyVideoCodec):  # (B * T', 12, H, W) groups -> (B, 3, T, H, W)
            y = from_groups(y.view(x.shape[0], -1, *y.shape[1:]))
        else:  # (B, 1, T_a * hop) -> x's length
            y = y[..., : x.shape[-1]]
        return y, posterior.mean, posterior.logvar


def training_module(cfg: "CodecTrainConfig", codec) -> nn.Module:
    """What the Trainer trains: forward(x) -> (reconstruction, posterior mean, posterior log-variance)."""
    if (cfg.kind == "video" and cfg.video_arch == "tiny") or (cfg.kind == "audio" and cfg.audio_arch == "tiny"):
        return TinyCodecForTraining(codec)
    return VAEForTraining(codec.vae)


def kl_per_value(mean: torch.Tensor, logvar: torch.Tensor, values: int) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over each item's latents, batch mean, / `values` (per input value)."""
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)  # (B, ...)
    return kl.flatten(1).sum(1).mean() / values


def stft_loss(y: torch.Tensor, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Multi-resolution STFT loss of waveforms (B, ch, S): mean over FFT sizes of magnitude L1 + log-magnitude L1."""
    y, x = y.flatten(0, 1).float(), x.flatten(0, 1).float()  # (B*ch, S)
    total = y.new_zeros(())
    for n in sizes:
        window = torch.hann_window(n, device=x.device)

        def mag(w):
            s = torch.stft(w, n, hop_length=n // 4, window=window, return_complex=True)  # (B*ch, n/2+1, frames)
            return (s.real.square() + s.imag.square()).clamp_min(1e-10).sqrt()  # no NaN gradient at 0

        my, mx = mag(y), mag(x)
        linear = (my - mx).abs().mean()
        log_mag = (my.clamp_min(1e-5).log() - mx.clamp_min(1e-5).log()).abs().mean()
        total = total + linear + log_mag
    return total / len(sizes)


class LogMelLoss(nn.Module):
    """L1 distance of log-mel spectrograms of waveforms (B, ch, S) at `sample_rate` (Vocos's mel loss)."""

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                             max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney",
                             mel_scale="slaney")
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("fb", torch.tensor(fb.T, dtype=torch.float32), persistent=False)  # (mels, bins)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, w: torch.Tensor) -> torch.Tensor:
        s = torch.stft(w, self.n_fft, self.hop, window=self.window.to(w.device), return_complex=True)
        return (self.fb.to(w.device) @ (s.real.square() + s.imag.square())).clamp_min(1e-10).sqrt().clamp_min(
            1e-5).log()  # (B*ch, mels, frames)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y, x = y.flatten(0, 1).float(), x.flatten(0, 1).float()
        return (self.log_mel(y) - self.log_mel(x)).abs().mean()


def make_loss_fn(cfg: CodecTrainConfig, sample_rate: int | None = None):
    def video_loss(model, x, step):
        y, mean, logvar = model(x)  # x, y: (B, 3, F, H, W)
        l1, mse = (y - x).abs().mean(), (y - x).square().mean()
        kl = kl_per_value(mean, logvar, x[0].numel())
        loss = cfg.l1_weight * l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
        return loss, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}

    mel = None
    if cfg.kind == "audio" and cfg.mel_weight > 0:
        if sample_rate is None:
            raise StreamCharError("mel_weight > 0 needs the codec's sample rate")
        mel = LogMelLoss(sample_rate)

    def audio_loss(model, x, step):
        y, mean, logvar = model(x)  # x, y: (B, ch, S)
        l1 = (y - x).abs().mean()
        spec = stft_loss(y, x, cfg.stft_sizes)
        kl = kl_per_value(mean, logvar, x[0].numel())
        loss = cfg.l1_weight * l1 + cfg.stft_weight * spec + cfg.kl_weight * kl
        logs = {"l1": l1.item(), "stft": spec.item(), "kl": kl.item()}
        if mel is not None:
            m = mel(y, x)
            loss, logs["mel"] = loss + cfg.mel_weight * m, m.item()
        return loss, logs

    return video_loss if cfg.kind == "video" else audio_loss


def build_codec(cfg: CodecTrainConfig):
    """The codec to train: `cfg.init` loaded, or a random tiny one (seeded by train.seed)."""
    from streamchar.codecs.oobleck_audio import OobleckAudioCodec
    from streamchar.codecs.tiny_video import TinyVideoCodec
    from streamchar.codecs.wan_video import WanVideoCodec

    torch.manual_seed(cfg.train.seed)
    if cfg.kind == "video" and cfg.video_arch == "tiny":
        if cfg.init:
            return TinyVideoCodec.from_pretrained(cfg.init)
        return TinyVideoCodec.tiny(latent_channels=cfg.latent_channels, channels=cfg.channels)
    if cfg.kind == "video":
        if cfg.init:
            return WanVideoCodec.from_pretrained(cfg.init)
        return WanVideoCodec.tiny(latent_channels=cfg.latent_channels, base_dim=cfg.base_dim)
    if cfg.audio_arch == "tiny":
        from streamchar.codecs.tiny_audio import TinyAudioCodec

        if cfg.init:
            return TinyAudioCodec.from_pretrained(cfg.init)
        return TinyAudioCodec.tiny(latent_channels=cfg.audio_latent_channels, dim=cfg.audio_dim)
    return OobleckAudioCodec.from_pretrained(cfg.init) if cfg.init else OobleckAudioCodec.tiny()


def audio_crop_samples(cfg: CodecTrainConfig, codec) -> int:
    hops = max(1, int(cfg.crop_seconds * codec.sample_rate) // codec.hop_length)
    return hops * codec.hop_length


# ---- latent statistics --------------------------------------------------------------------------------
def _video_chunks(clip: Clip, frames: int, max_chunks: int) -> list[np.ndarray]:
    n = min(len(clip.frames) // frames, max_chunks)
    return [clip.frames[k * frames: (k + 1) * frames] for k in range(n)]  # each (F, H, W, 3) uint8


def _to_video(chunk: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(chunk).to(device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # (1, 3, F, H, W)


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    # (1, 3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8
    return ((video[0].permute(1, 2, 3, 0) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def latent_stats(codec, clips: list[Clip], kind: str, frames: int = 33, max_chunks: int = 4):
    """Per-channel mean and std of `codec.encode` latents over `clips` (use a codec with mean 0 / std 1)."""
    device = codec.latents_mean.device
    parts = []
    for clip in clips:
        if kind == "video":
            for chunk in _video_chunks(clip, frames, max_chunks):
                z = codec.encode(_to_video(chunk, device))  # (1, C, T', h, w)
                parts.append(z.transpose(0, 1).flatten(1))  # (C, N)
        else:
            z = codec.encode(torch.from_numpy(clip.audio).to(device)[None])  # (1, T_a, C)
            parts.append(z[0].T)  # (C, T_a)
    if not parts:
        raise StreamCharError("no latents to measure: the clips are shorter than one chunk")
    z = torch.cat(parts, dim=1).double()  # (C, N)
    return z.mean(1).tolist(), z.std(1).clamp_min(1e-6).tolist()


def with_latent_stats(codec, mean: list[float], std: list[float]):
    """A codec over the same VAE that normalises latents with `mean` / `std`."""
    from streamchar.codecs.oobleck_audio import OobleckAudioCodec
    from streamchar.codecs.tiny_audio import TinyAudioCodec
    from streamchar.codecs.tiny_video import TinyVideoCodec
    from streamchar.codecs.wan_video import WanVideoCodec

    if isinstance(codec, TinyVideoCodec):
        codec.vae.register_to_config(latents_mean=mean, latents_std=std)
        return TinyVideoCodec(codec.vae, fps=codec.fps).to(codec.latents_mean.device)
    if isinstance(codec, TinyAudioCodec):
        codec.vae.register_to_config(latents_mean=mean, latents_std=std)
        return TinyAudioCodec(codec.vae).to(codec.latents_mean.device)
    if isinstance(codec, WanVideoCodec):
        codec.vae.register_to_config(latents_mean=mean, latents_std=std)  # saved in the diffusers config.json
        return WanVideoCodec(codec.vae, fps=codec.fps).to(codec.latents_mean.device)
    return OobleckAudioCodec(codec.vae, latents_mean=mean, latents_std=std).to(codec.latents_mean.device)


# ---- held-out evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def video_quality(codec, clips: list[Clip], frames: int, max_chunks: int) -> dict:
    """PSNR (dB, uint8 frames, pooled over chunks) and mean SSIM (per frame) of each whole chunk's
    encode/decode round trip."""
    from streamchar.eval.identity import ssim
    from streamchar.eval.psnr import psnr

    codec.eval()
    device = codec.latents_mean.device
    originals, decoded = [], []
    for clip in clips:
        for chunk in _video_chunks(clip, frames, max_chunks):
            originals.append(chunk)
            decoded.append(_to_uint8(codec.decode(codec.encode(_to_video(chunk, device)))))
    if not originals:
        raise StreamCharError(f"no held-out clip has {frames} frames")
    a, b = np.concatenate(originals), np.concatenate(decoded)
    return {"psnr": psnr(a, b), "ssim": float(np.mean([ssim(x, y) for x, y in zip(a, b)]))}


def video_psnr(codec, clips: list[Clip], frames: int, max_chunks: int) -> float:
    return video_quality(codec, clips, frames, max_chunks)["psnr"]


@torch.no_grad()
def round_trip_audio(codec, audio: np.ndarray) -> np.ndarray:
    """(ch, S) float32 -> the codec's encode/decode of it, same shape."""
    codec.eval()
    device = codec.latents_mean.device
    wave = codec.decode(codec.encode(torch.from_numpy(audio).to(device)[None]))  # (1, ch, T_a * hop)
    return wave[0, :, : audio.shape[1]].float().cpu().numpy()


def audio_wer(codec, clips: list[Clip], judge: str | None = None) -> dict:
    """WER on held-out clips, original audio and its codec round trip: by the speech judge at `judge` (or the
    bundled one), else by pocketsphinx where no judge is bundled yet. "wer_backend" names which."""
    from streamchar.eval.asr import transcribe, wer
    from streamchar.eval.judge import BUNDLED, load_judge

    backend, read = "pocketsphinx", transcribe
    if judge or (BUNDLED / "model.safetensors").is_file():
        j = load_judge(judge)
        backend, read = f"judge:{judge or 'bundled'}", j.transcribe
    refs = [c.text for c in clips]
    original = [read(c.audio, codec.sample_rate) for c in clips]
    coded = [read(round_trip_audio(codec, c.audio), codec.sample_rate) for c in clips]
    return {"wer_backend": backend, "wer_original": wer(refs, original), "wer_roundtrip": wer(refs, coded),
            "transcripts": [{"key": c.key, "ref": c.text, "original": o, "roundtrip": r}
                            for c, o, r in zip(clips, original, coded)]}


# ---- the run ---------------------------------------------------------------------------------------------
def run_codec_training(cfg: CodecTrainConfig) -> dict:
    """Train, measure latent statistics, save `<train.out_dir>/codec`, report. Returns the report plus
    "codec" (the trained codec, with its latent statistics) and "losses" (per step)."""
    from streamchar.train.engine import Trainer

    cfg.validate()
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(out / "codec_config.yaml")
    codec = build_codec(cfg)
    is_video = cfg.kind == "video"
    keep = "video" if is_video else "audio"
    sample_rate = 24000 if is_video else codec.sample_rate  # video: the audio is decoded but dropped
    channels = 1 if is_video else codec.channels
    clips = load_clips(cfg.data, cfg.train_splits, sample_rate, channels, cfg.max_clips, keep)
    held_out = load_clips(cfg.data, cfg.eval_splits, sample_rate, channels, cfg.eval_clips, keep) \
        if cfg.eval_clips and cfg.eval_splits else []
    if is_video:
        from streamchar.data.identity import codec_identities

        characters = codec_identities(cfg.characters) if cfg.characters else None
        dataset = VideoChunks(clips, cfg.frames, cfg.items_per_clip, seed=cfg.train.seed, characters=characters,
                              rerender=cfg.rerender)
    else:
        dataset = AudioCrops(clips, audio_crop_samples(cfg, codec), cfg.items_per_clip, seed=cfg.train.seed)
    loader = EpochLoader(dataset, cfg.batch_size, seed=cfg.train.seed)

    report: dict = {"kind": cfg.kind, "train_clips": len(clips), "held_out_clips": len(held_out)}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if held_out:  # before training (random init, or cfg.init)
        codec.to(device)
        if is_video:
            report["psnr_before"] = video_psnr(codec, held_out, 33, cfg.eval_chunks)
        else:
            report["wer_roundtrip_before"] = audio_wer(codec, held_out, cfg.judge)["wer_roundtrip"]

    model = training_module(cfg, codec)
    trainer = Trainer(model, make_loss_fn(cfg, sample_rate), loader, cfg.train)
    trainer.resume()
    start = time.perf_counter()
    losses = trainer.fit()
    report.update(steps=trainer.step, train_seconds=time.perf_counter() - start,
                  loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None)

    codec.vae.eval()
    codec.to(device)
    codec = with_latent_stats(codec, [0.0] * codec.latent_channels, [1.0] * codec.latent_channels)  # raw latents
    mean, std = latent_stats(codec, clips[: cfg.stats_clips], cfg.kind, cfg.frames, cfg.eval_chunks)
    codec = with_latent_stats(codec, mean, std)
    codec.save_pretrained(out / "codec")
    report["latents_mean"], report["latents_std"] = mean, std
    if held_out:
        if is_video:
            q = video_quality(codec, held_out, 33, cfg.eval_chunks)  # whole streaming chunks
            report["psnr_after"], report["ssim_after"] = q["psnr"], q["ssim"]
        else:
            report.update(audio_wer(codec, held_out, cfg.judge))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return {**report, "codec": codec, "losses": losses}
