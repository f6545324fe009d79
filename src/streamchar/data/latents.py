"""Latent caching: SynthTalk shards -> latent shards, so training reads latents, not pixels.

A clip of T frames holds n = T // 33 whole chunks (the tail is dropped). Per clip:

    video_latents     (n, C, 9, h, w)   each 33-frame chunk encoded on its own (first frame alone), as
                                        the streaming decoder produces them
    reference_latent  (C, 1, h, w)      the clip's first frame
    audio_latents     (n * 33, C_a)     each 1.375 s of audio encoded on its own, then joined in time
    token_ids         (N,)              the transcript through the orchestrator's tokenizer
    token_spans       (N, 2)            when each token is spoken (s; NaN for tokens of no word), for the
                                        alignment aid (train/alignment.py)

and in the JSON: `pap_end[k]`, the number of transcript tokens spoken by the end of chunk k (the
progress-aware pointer's target), from the word timings: a token is spoken once every word it overlaps
has ended. Shards are tars (`latents-{split}-{n:05d}.tar`) of `{key}.safetensors` + `{key}.json`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from streamchar.data.shards import add_member, read_samples
from streamchar.train.alignment import token_spans
from streamchar.errors import StreamCharError


def decode_mp4(data: bytes, sample_rate: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """MP4 bytes -> frames (T, H, W, 3) uint8 and audio (channels, S) float32 at `sample_rate`."""
    import av

    with av.open(io.BytesIO(data)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, decode_audio(data, sample_rate, channels)


def decode_audio(data: bytes, sample_rate: int, channels: int) -> np.ndarray:
    """MP4 bytes -> its audio (channels, S) float32 at `sample_rate` (the video is not decoded)."""
    import av

    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
    parts = []
    with av.open(io.BytesIO(data)) as c:
        for frame in c.decode(audio=0):
            parts += [f.to_ndarray() for f in resampler.resample(frame)]
        parts += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def pap_targets(text: str, words: list[dict], tokenizer, chunk_seconds: float, n_chunks: int):
    """Token ids of `text` and, per chunk, how many of them are spoken by the chunk's end."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    ends = []  # per token: when the last word it overlaps ends (tokens of spaces/punctuation: the word before)
    for a, b in offsets:
        overlapping = [w["end"] for w in words if w["char_start"] < b and a < w["char_end"]]
        ends.append(max(overlapping) if overlapping else (ends[-1] if ends else 0.0))
    ends = np.maximum.accumulate(np.asarray(ends, dtype=np.float64))  # spoken in order
    targets = [int(np.searchsorted(ends, (k + 1) * chunk_seconds, side="right")) for k in range(n_chunks)]
    return ids, targets


@torch.no_grad()
def encode_clip(mp4: bytes, meta: dict, model, device="cpu") -> tuple[dict, dict]:
    """One SynthTalk clip -> (tensors, metadata) of latents (see the module docstring)."""
    cfg = model.cfg
    frames, audio = decode_mp4(mp4, cfg.audio.sample_rate, cfg.audio.channels)
    if frames.shape[1:3] != (cfg.video.height, cfg.video.width):
        raise StreamCharError(f"clip {meta['key']} is {frames.shape[2]}x{frames.shape[1]}, the model expects "
                              f"{cfg.video.width}x{cfg.video.height} (generate SynthTalk with --size "
                              f"{cfg.video.width})")
    F = cfg.stream.frames_per_chunk
    n = len(frames) // F
    if n < 1:
        raise StreamCharError(f"clip {meta['key']} has {len(frames)} frames, fewer than one chunk ({F})")
    dtype = model.dtype
    video = torch.from_numpy(frames[: n * F]).to(device).permute(3, 0, 1, 2)  # (3, n*F, H, W)
    video = video.unflatten(1, (n, F)).transpose(0, 1).to(dtype) / 127.5 - 1.0  # (n, 3, F, H, W)
    video_latents = torch.cat([model.video_codec.encode(video[i: i + 1]) for i in range(n)])
    reference = model.video_codec.encode(video[:1, :, :1])[0]  # (C, 1, h, w)
    S = cfg.samples_per_chunk
    wave = np.zeros((audio.shape[0], n * S), dtype=np.float32)
    wave[:, : min(n * S, audio.shape[1])] = audio[:, : n * S]
    wave = torch.from_numpy(wave).to(device, dtype).unflatten(1, (n, S)).transpose(0, 1)  # (n, ch, S)
    audio_latents = model.audio_codec.encode(wave).flatten(0, 1)  # (n * 33, C_a)
    ids, targets = pap_targets(meta["text"], meta["words"], model.tokenizer, cfg.chunk_seconds, n)
    _, spans = token_spans(meta["text"], meta["words"], model.tokenizer, meta.get("phonemes"))
    tensors = {"video_latents": video_latents.float().cpu(), "reference_latent": reference.float().cpu(),
               "audio_latents": audio_latents.float().cpu(), "token_ids": torch.tensor(ids, dtype=torch.int64),
               "token_spans": torch.from_numpy(spans).float().reshape(len(ids), 2)}
    out = {k: meta[k] for k in ("key", "split", "text", "identity", "voice", "words")}
    out.update({k: meta[k] for k in ("caption",) if k in meta})  # a clip's own prompt, when its data has one
    out.update(chunks=n, chunk_seconds=cfg.chunk_seconds, pap_end=targets)
    return tensors, out


def codec_fingerprint(model) -> str:
    """sha256 of the video and audio codecs' weights and buffers (latent statistics included): latents are
    only meaningful to a model whose codecs have this fingerprint."""
    h = hashlib.sha256()
    for name in ("video_codec", "audio_codec"):
        for key, tensor in sorted(getattr(model, name).state_dict().items()):
            h.update(f"{name}.{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def encode_shards(src: str | Path, out: str | Path, model, device="cpu", source: str = "",
                  progress: bool = True, workers: int = 1) -> dict:
    """Every shard listed in `src`/index.json -> a latent shard in `out` (atomically, one shard at a time).
    workers > 1: shards are encoded by that many processes (CPU; each with one thread and a copy of `model`)."""
    import tqdm

    src, out = Path(src), Path(out)
    index_file = src / "index.json"
    if not index_file.is_file():
        raise StreamCharError(f"{src} is not a SynthTalk folder (no index.json)")
    if workers < 1:
        raise StreamCharError(f"--workers must be >= 1, got {workers}")
    index = json.loads(index_file.read_text())
    if not out.parent.is_dir():
        raise StreamCharError(f"--out: folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    jobs = [(src / name, out / name.replace("synthtalk-", "latents-"), str(device))
            for names in index["shards"].values() for name in names]
    total = sum(index["clips"].values())
    with tqdm.tqdm(total=total, unit="clip", disable=not progress, desc="encode") as bar:
        if workers == 1:
            for job in jobs:
                bar.update(_encode_shard(*job, model=model))
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(model,)) as pool:
                for n in pool.imap_unordered(_encode_shard_job, jobs):
                    bar.update(n)
    shards = {split: [name.replace("synthtalk-", "latents-") for name in names]
              for split, names in index["shards"].items()}
    cfg = model.cfg
    summary = {"clips": total, "shards": shards, "source": str(src), "codecs": source,
               "codec_sha256": codec_fingerprint(model), "preset": cfg.preset,
               "video_latent_shape": [cfg.video.latent_channels, cfg.video_latent_frames, *cfg.latent_size],
               "audio_latent_channels": cfg.audio.latent_channels}
    tmp = out / ".index.json.partial"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "index.json")
    return summary


def _encode_shard(src: Path, final: Path, device: str, model) -> int:
    """One SynthTalk shard -> its latent shard (written to a temporary name, then renamed). -> clips encoded."""
    from streamchar.data.synthtalk import read_shard

    tmp, clips = final.with_name(f".{final.name}.partial"), 0
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, mp4, meta in read_shard(src):
                tensors, info = encode_clip(mp4, meta, model, device)
                add_member(tar, f"{key}.safetensors", save_safetensors(tensors))
                add_member(tar, f"{key}.json", json.dumps(info, sort_keys=True).encode())
                clips += 1
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return clips


_WORKER_MODEL = None  # a pool worker's copy of the model


def _worker_init(model) -> None:
    global _WORKER_MODEL
    torch.set_num_threads(1)
    _WORKER_MODEL = model


def _encode_shard_job(job) -> int:
    return _encode_shard(*job, model=_WORKER_MODEL)


def read_latent_shard(path: str | Path):
    """Yield (key, tensors, metadata) from one latent shard; a corrupt shard is an error naming it."""
    for key, files in read_samples(path, ("safetensors", "json"), "latent shard"):
        try:
            yield key, load_safetensors(files["safetensors"]), json.loads(files["json"])
        except (json.JSONDecodeError, ValueError, RuntimeError) as e:
            raise StreamCharError(f"corrupt latent shard {path}: {key}: {e}") from None


def write_random_latents(folder: str | Path, cfg, chunks: dict[str, list[int]], seed: int = 0,
                         tokens_per_chunk: int = 6) -> Path:
    """A latent folder in `encode_shards`' format with random latents at `cfg`'s shapes, for tests and
    benchmarks (no SynthTalk, no codecs). `chunks[split]` lists the chunks of each clip. The latents are a
    fixed pattern + noise (so a model can learn something that carries over to other splits); each chunk
    speaks `tokens_per_chunk` random token ids, evenly in time. The index records no codec fingerprint."""
    folder, g = Path(folder), torch.Generator().manual_seed(seed)
    C, (h, w), Ca, T = cfg.video.latent_channels, cfg.latent_size, cfg.audio.latent_channels, cfg.video_latent_frames
    A = cfg.audio_latent_frames
    folder.mkdir(parents=True)
    mu_v, mu_a = torch.randn(1, C, 1, h, w, generator=g), torch.randn(1, Ca, generator=g)
    shards = {}
    for split, clips in chunks.items():
        name = f"latents-{split}-00000.tar"
        with tarfile.open(folder / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for j, n in enumerate(clips):
                key, N = f"{split}{j:03d}", tokens_per_chunk * n
                tensors = {"video_latents": mu_v + 0.3 * torch.randn(n, C, T, h, w, generator=g),
                           "reference_latent": mu_v[0] + 0.3 * torch.randn(C, 1, h, w, generator=g),
                           "audio_latents": mu_a + 0.3 * torch.randn(n * A, Ca, generator=g),
                           "token_ids": torch.randint(10, 500, (N,), generator=g),
                           # token i spoken in [i, i + 1) x chunk_seconds / tokens_per_chunk
                           "token_spans": (torch.arange(N)[:, None] + torch.tensor([0.0, 1.0]))
                           * (cfg.chunk_seconds / tokens_per_chunk)}
                pap_end = [tokens_per_chunk * (k + 1) - 1 for k in range(n - 1)] + [N]  # monotone
                meta = {"key": key, "split": split, "chunks": n, "chunk_seconds": cfg.chunk_seconds,
                        "pap_end": pap_end, "text": "hello there", "identity": 0, "voice": "random",
                        "words": []}
                add_member(tar, f"{key}.safetensors", save_safetensors(tensors))
                add_member(tar, f"{key}.json", json.dumps(meta).encode())
        shards[split] = [name]
    index = {"clips": sum(map(len, chunks.values())), "shards": shards, "codecs": "random latents",
             "preset": cfg.preset}
    (folder / "index.json").write_text(json.dumps(index, indent=2))
    return folder

