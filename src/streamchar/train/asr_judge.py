"""Training the SynthTalk speech judge (`eval/judge.py`) on true SynthTalk speech, with the shared Trainer.

    streamchar train asr-judge --config asr_judge_tiny [--data DIR] [--out-dir DIR] [--steps N]

Data: every clip of `train_splits` (all voices), audio only, at 16 kHz. Targets come from the clip's own
metadata: each word's espeak-ng phonemes (`data/pronounce.word_phonemes`), words joined by the separator.
An item is a run of consecutive words of at most `crop_seconds`, cut at the words' edges (plus up to
`margin` s of the silence around them), with a random gain and, half the time, a faint noise floor; items
are padded into batches (CTC input lengths mask the padding). Nothing generated is ever trained on.

The lexicon is the corpus lexicon (`data/corpus.lexicon().words`, every split) plus the numbers 1-99,
pronounced by espeak-ng in every SynthTalk accent (~7 minutes, cached in `<out_dir>/pronunciations.json.gz`),
plus the forms words take in the training clips' connected speech (weak forms such as "to" as /t@/, and the
phonemes a word boundary hands to a neighbour), each seen at least `min_observed` times. Words seen more often
in training come first, then by everyday frequency: an exact homophone (know / no) resolves to the earlier.
With citation forms only, the true phonemes of the test clips read back at WER 0.077; with the observed forms,
0.036.

After training, the judge is saved to `<out_dir>/judge` (with a card: data seed, clips, steps, wall time,
sha256 of the weights, the report) and measured on `eval_splits` (`report.json`):
    wer, wer_exact          WER with the lexicon's nearest-word repair, and with exact pronunciations only
    per                     phoneme error rate of the recognised phonemes (no lexicon at all)
    wer_by_voice            per voice
    unseen_word_error       share of the words never seen in training (`unseen_words` of them) misread
    reject                  WER on time-reversed speech, white noise, random-codec output and mismatched
                            transcripts (each clip scored against another clip's transcript): should be ~1
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamchar.config import YamlConfig
from streamchar.errors import StreamCharError
from streamchar.eval.judge import SAMPLE_RATE, SEP, JudgeConfig, JudgeNet, SpeechJudge, WordLexicon
from streamchar.train.clips import Clip, EpochLoader, load_clips
from streamchar.train.config import TrainConfig


@dataclass
class JudgeTrainConfig(YamlConfig):
    data: str = "data/synthtalk"
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    eval_splits: list[str] = field(default_factory=lambda: ["test"])
    max_clips: int = 100000  # training clips held in memory (16 kHz float32: 64 KB per second)
    eval_clips: int = 200
    items_per_clip: int = 4
    batch_size: int = 16
    crop_seconds: float = 8.0
    margin: float = 0.15
    noise_std: float = 0.003  # the noise floor's largest sigma (full scale 1.0)
    channels: int = 256
    blocks: int = 8
    kernel: int = 9
    dropout: float = 0.1
    min_observed: int = 2  # a connected-speech form joins the lexicon when seen this often in training (0: none)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="out/asr_judge"))

    def validate(self) -> "JudgeTrainConfig":
        def bad(name, why):
            raise StreamCharError(f"config field {name}: {why}")

        for name in ("max_clips", "items_per_clip", "batch_size", "channels", "blocks", "kernel"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("eval_clips", "min_observed"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0.5 <= self.crop_seconds <= 30:
            bad("crop_seconds", f"must be in [0.5, 30], got {self.crop_seconds}")
        if not 0 <= self.margin <= 1 or not 0 <= self.noise_std <= 0.1 or not 0 <= self.dropout < 1:
            bad("margin/noise_std/dropout", "out of range (margin 0-1 s, noise_std 0-0.1, dropout 0-1)")
        if not self.train_splits:
            bad("train_splits", "must name at least one split")
        self.train.validate("train")
        return self


# ---- targets --------------------------------------------------------------------------------------------
def clip_words(meta: dict) -> list[tuple[float, float, tuple[str, ...]]]:
    """A clip's spoken words as (start, end, phonemes), words without phonemes dropped."""
    from streamchar.data.pronounce import word_phonemes

    pairs = word_phonemes(meta["words"], meta["phonemes"])
    return [(w["start"], w["end"], phs) for w, (_, phs) in zip(meta["words"], pairs) if phs]


class WordRuns:
    """Item i: (wave (S,) float32, target ids) for a random run of words of clip i % len(clips)."""

    def __init__(self, clips: list[Clip], phonemes: list[str], cfg: JudgeTrainConfig, seed: int = 0):
        if not clips:
            raise StreamCharError("no clips to train the judge on (is the split empty?)")
        self.ids = {p: i + 2 for i, p in enumerate(phonemes)}
        self.clips = [(c.audio[0], clip_words(c.meta)) for c in clips]
        self.cfg, self.seed, self.epoch = cfg, seed, 0

    def __len__(self) -> int:
        return len(self.clips) * self.cfg.items_per_clip

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        audio, words = self.clips[i % len(self.clips)]
        j = int(rng.integers(len(words)))
        k = j
        while k + 1 < len(words) and words[k + 1][1] - words[j][0] <= self.cfg.crop_seconds:
            k += 1
        before = words[j][0] - (words[j - 1][1] if j else 0.0)
        after = (words[k + 1][0] if k + 1 < len(words) else len(audio) / SAMPLE_RATE) - words[k][1]
        a = words[j][0] - min(self.cfg.margin, max(before, 0.0)) * rng.random()
        b = words[k][1] + min(self.cfg.margin, max(after, 0.0)) * rng.random()
        wave = audio[int(a * SAMPLE_RATE): int(np.ceil(b * SAMPLE_RATE))] * rng.uniform(0.5, 1.5)
        if rng.random() < 0.5:
            wave = wave + rng.normal(0, rng.uniform(0, self.cfg.noise_std), len(wave)).astype(np.float32)
        target = []
        for _, _, phs in words[j: k + 1]:
            target += ([SEP] if target else []) + [self.ids[p] for p in phs if p in self.ids]
        return np.clip(wave, -1, 1).astype(np.float32), target


def collate(items):
    waves, targets = zip(*items)
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    return {"wave": batch, "lengths": lengths, "targets": torch.tensor([t for tt in targets for t in tt]),
            "target_lengths": torch.tensor([len(t) for t in targets])}


def loss_fn(model, batch, step):
    logp, out_len = model(batch["wave"], batch["lengths"])  # (B, T', V)
    loss = torch.nn.functional.ctc_loss(logp.transpose(0, 1), batch["targets"], out_len, batch["target_lengths"],
                                        blank=0, reduction="mean", zero_infinity=True)
    return loss, {"ctc": loss.item()}


# ---- the lexicon ----------------------------------------------------------------------------------------
def observed_forms(clips: list[Clip]) -> tuple[dict[str, Counter], Counter]:
    """How the clips' words were spoken: ({word: Counter(phonemes)}, Counter(word)) from their metadata."""
    from streamchar.data.pronounce import word_phonemes

    forms: dict[str, Counter] = {}
    counts: Counter = Counter()
    for c in clips:
        for text, phs in word_phonemes(c.meta["words"], c.meta["phonemes"]):
            word = spoken_word(text)
            counts[word] += 1
            if phs:
                forms.setdefault(word, Counter())[phs] += 1
    return forms, counts


def spoken_word(text: str) -> str:
    """A word as the lexicon and WER see it: lower case, letters, digits and inner apostrophes."""
    return re.sub(r"[^\w']", "", text.lower()).strip("'")


def judge_lexicon(cache: Path, progress: bool = True, clips: list[Clip] | None = None,
                  min_observed: int = 2) -> dict[str, list[list[str]]]:
    """word -> pronunciations for the corpus lexicon plus 1-99 (espeak's forms cached in `cache`), with the
    forms seen at least `min_observed` times in `clips`' speech first; words seen more often in `clips` first,
    then the more frequent in everyday English."""
    from wordfreq import zipf_frequency

    from streamchar.data.corpus import lexicon
    from streamchar.data.pronounce import lexicon_pronunciations

    if cache.is_file():
        data = json.loads(gzip.decompress(cache.read_bytes()))
        if set(data) == {"accents", "words"}:  # {"accents": [...], "words": {word: pronunciations}}
            data = data["words"]
    else:
        words = sorted(lexicon().words) + [str(n) for n in range(1, 100)]
        data = {w: [list(p) for p in ps] for w, ps in lexicon_pronunciations(words, progress).items()}
        tmp = cache.with_name(f".{cache.name}.partial")
        tmp.write_bytes(gzip.compress(json.dumps(data, ensure_ascii=False).encode(), mtime=0))
        os.replace(tmp, cache)
    numbers = {str(n) for n in range(1, 100)}
    missing = numbers - set(data)
    if missing:  # an older cache of words only
        from streamchar.data.pronounce import accents, pronounce

        for accent in accents():
            for w, p in pronounce(sorted(missing), accent).items():
                data.setdefault(w, [])
                if list(p) not in data[w]:
                    data[w].append(list(p))
        tmp = cache.with_name(f".{cache.name}.partial")
        tmp.write_bytes(gzip.compress(json.dumps(data, ensure_ascii=False).encode(), mtime=0))
        os.replace(tmp, cache)

    forms, counts = observed_forms(clips) if clips and min_observed > 0 else ({}, Counter())
    for word, seen in forms.items():
        common = [list(p) for p, n in seen.most_common() if n >= min_observed]
        data[word] = common + [p for p in data.get(word, []) if p not in common]

    def freq(w):
        return zipf_frequency(w, "en") if not w.isdigit() else 5.0

    return {w: data[w] for w in sorted(data, key=lambda w: (-counts[w], -freq(w), w)) if data[w]}


# ---- measuring ------------------------------------------------------------------------------------------
def phoneme_error_rate(judge: SpeechJudge, clips: list[Clip]) -> float:
    import jiwer

    refs, hyps = [], []
    code = {}
    for c in clips:
        ref = [p for _, _, phs in clip_words(c.meta) for p in phs]
        hyp = [p for g in judge.phoneme_groups(c.audio, SAMPLE_RATE) for p in g]
        enc = [" ".join(code.setdefault(p, f"p{len(code)}") for p in seq) for seq in (ref, hyp)]
        refs.append(enc[0])
        hyps.append(enc[1] or "<none>")
    return float(jiwer.process_words(refs, hyps).wer)


def evaluate_judge(judge: SpeechJudge, clips: list[Clip], unseen: set[str], seed: int = 0) -> dict:
    """The report's numbers on held-out clips (see the module docstring)."""
    from streamchar.eval.asr import wer
    from streamchar.eval.judge import unseen_word_error

    if not clips:
        raise StreamCharError("no held-out clips to measure the judge on")
    refs = [c.text for c in clips]
    hyps = [judge.transcribe(c.audio, SAMPLE_RATE) for c in clips]
    exact = [judge.transcribe(c.audio, SAMPLE_RATE, repair=False) for c in clips]
    by_voice: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        v = c.meta["voice"]
        by_voice.setdefault(f"{v['index']}:{v['name']}+{v.get('variant')}", []).append(i)
    unseen_err, n_unseen = unseen_word_error(refs, hyps, unseen)
    rng = np.random.default_rng(seed)
    rev = [judge.transcribe(c.audio[:, ::-1].copy(), SAMPLE_RATE) for c in clips]
    noise = [judge.transcribe(rng.normal(0, 0.1, c.audio.shape[1]).astype(np.float32), SAMPLE_RATE)
             for c in clips]
    shifted = hyps[1:] + hyps[:1]  # clip i+1's reading scored against clip i's transcript
    report = {
        "clips": len(clips), "wer": wer(refs, hyps), "wer_exact": wer(refs, exact),
        "per": phoneme_error_rate(judge, clips),
        "wer_by_voice": {v: wer([refs[i] for i in ix], [hyps[i] for i in ix]) for v, ix in sorted(by_voice.items())},
        "unseen_word_error": unseen_err, "unseen_words": n_unseen,
        "reject": {"reversed": wer(refs, rev), "noise": wer(refs, noise),
                   "mismatched": wer(refs, shifted) if len(clips) > 1 else None,
                   "random_codec": wer(refs, [judge.transcribe(_random_codec_audio(c.audio.shape[1], i), SAMPLE_RATE)
                                              for i, c in enumerate(clips)])},
        "examples": [{"key": c.key, "ref": r, "hyp": h} for c, r, h in list(zip(clips, refs, hyps))[:5]],
    }
    return report


_RANDOM_CODEC = None


@torch.no_grad()
def _random_codec_audio(samples_16k: int, seed: int) -> np.ndarray:
    """What a random-weight model says: random latents through a random tiny audio codec, at 16 kHz."""
    global _RANDOM_CODEC
    from streamchar.codecs.oobleck_audio import OobleckAudioCodec
    from streamchar.data.speech import resample

    if _RANDOM_CODEC is None:
        torch.manual_seed(0)
        _RANDOM_CODEC = OobleckAudioCodec.tiny()
    codec = _RANDOM_CODEC
    seconds = samples_16k / SAMPLE_RATE
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, max(1, int(seconds * codec.latent_rate)), codec.latent_channels, generator=g)
    wave = codec.decode(z)[0].mean(0).numpy()
    return resample(wave, codec.sample_rate, SAMPLE_RATE)


# ---- the run ----------------------------------------------------------------------------------------------
def run_judge_training(cfg: JudgeTrainConfig, progress: bool = True) -> dict:
    from safetensors.torch import save_file

    from streamchar.data.corpus import words_of
    from streamchar.train.engine import Trainer

    cfg.validate()
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(out / "judge_config.yaml")
    t0 = time.perf_counter()
    clips = load_clips(cfg.data, cfg.train_splits, SAMPLE_RATE, 1, cfg.max_clips, keep="audio")
    held_out = load_clips(cfg.data, cfg.eval_splits, SAMPLE_RATE, 1, cfg.eval_clips, keep="audio") \
        if cfg.eval_clips and cfg.eval_splits else []
    phonemes = sorted({p for c in clips for ph in c.meta["phonemes"] for p in [ph["ipa"]]})
    lex = judge_lexicon(out / "pronunciations.json.gz", progress, clips, cfg.min_observed)
    phonemes = sorted(set(phonemes) | {p for prons in lex.values() for pr in prons for p in pr})
    load_seconds = time.perf_counter() - t0

    torch.manual_seed(cfg.train.seed)
    net = JudgeNet(JudgeConfig(phonemes=phonemes, channels=cfg.channels, blocks=cfg.blocks, kernel=cfg.kernel,
                               dropout=cfg.dropout))
    loader = EpochLoader(WordRuns(clips, phonemes, cfg, seed=cfg.train.seed), cfg.batch_size,
                         seed=cfg.train.seed, collate_fn=collate)
    trainer = Trainer(net, loss_fn, loader, cfg.train)
    trainer.resume()
    start = time.perf_counter()
    losses = trainer.fit()
    train_seconds = time.perf_counter() - start

    judge = SpeechJudge(net.eval(), WordLexicon(lex))
    seen = {w for c in clips for w in words_of(c.text)}
    report = {"train_clips": len(clips), "train_hours": sum(c.audio.shape[1] for c in clips) / SAMPLE_RATE / 3600,
              "steps": trainer.step, "load_seconds": load_seconds, "train_seconds": train_seconds,
              "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
              "params": sum(p.numel() for p in net.parameters()), "lexicon_words": len(lex)}
    if held_out:
        unseen = {w for c in held_out for w in words_of(c.text)} - seen
        report["eval"] = evaluate_judge(judge, held_out, unseen, cfg.train.seed)
    tmp = out / ".weights.safetensors"
    save_file({k: v.detach().float().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.unlink()
    index = json.loads((Path(cfg.data) / "index.json").read_text())
    card = {"what": "SynthTalk speech judge: conv phoneme CTC + pronunciation lexicon (streamchar.eval.judge)",
            "trained_by": "streamchar train asr-judge", "config": cfg.to_dict(),
            "data": {"folder": str(cfg.data), "synthtalk_seed": index.get("seed"), "clips": index.get("clips"),
                     "train_splits": cfg.train_splits},
            "weights_sha256": sha, "report": report}
    judge.save_pretrained(out / "judge", card)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return {**report, "judge": judge, "losses": losses}
