"""Flow-matching pretraining (paper §5.1): stage 1 = orchestrator + the DiT's audio path on speech,
stage 2 = orchestrator + the whole DiT on audio-video. Both on latent shards (train/latent_data.py).

Per sample (one chunk k of a clip, its record built as streaming builds it: train/latent_data.py):
    t ~ logit-normal + shift, eps ~ N(0, I);  x_t = (1 - t) z + t eps           (Eq. 1, both modalities)
    orchestrator [e_ref | E_txt | e_hist | E_cond(x_t^a, t)]  -> c_a           (Eq. 3; 0 where c_a is dropped)
    DiT [z_ref, z_sink, z_mot | x_t^v | x_t^a] + prompt + c_a -> v^v, v^a      (Eq. 4)
    loss = |v^v - (eps_v - z_v)|^2 + audio_weight |v^a - (eps_a - z_a)|^2     (Eq. 2)
         + pap_weight * smooth-L1(PAP(E_cond(z_a, t=0)), pap_end[k] - offset)  (§4.2, as inference reads it)
         + align_weight * CE(frame token head(h_cond), token spoken at each audio frame)  (ours, off in `paper`)
    with mouth_weight > 0 the video term weighs the mouth's latent cells more (ours, off in `paper`)

The alignment aid (train/alignment.py) is ours, not the paper's: a linear head on the orchestrator's hidden
states at the clean condition frames predicts which transcript token is spoken there, so the orchestrator
must find its place in E_txt. At `tiny` scale the flow loss alone did not teach it (the audio loss barely
depended on the transcript); `paper` keeps align_weight = 0. So is the mouth-region weight
(train/mouth_weight.py): the video term's per-cell weights, mean 1, favour the cells of a fixed mouth box,
where all of the lip sync lives in a few percent of the frame; `paper` keeps mouth_weight = 0.

Eq. 2 sums the squared errors of the two modalities with equal weight. Ours takes each modality's mean over
its elements, so with audio_weight = 1 each modality counts the same whatever its size; Eq. 2's plain sum
would weigh video 17x audio at `tiny` (32 x 9 x 8 x 8 = 18,432 video elements vs 33 x 32 = 1,056 audio) and
209x at `paper` (48 x 9 x 32 x 32 vs 33 x 64). The paper does not say which it means; per-element means are
what Wan and audio diffusion models use per modality. `audio_weight` moves the balance.

A micro-batch holds B samples with ragged prefixes (the orchestrator left-pads them with a mask) and rows
with or without sink and motion (the DiT masks absent condition tokens); each sample's noise comes from its
own seed, so a batch's loss is the mean of its samples' losses one by one. The orchestrator runs the whole
sequence without a KV cache (a cache would be updated twice under activation checkpointing), with two tails
on one prefix (`forward_tails`): the noisy audio for c_a and the clean audio at t = 0 for the pointer.

Stage 1 (speech, no video): the DiT sees no video and no visual conditions; trainable are the
orchestrator and the DiT's audio path (`AUDIO_PATH`: audio_embedding, audio_encoder, blocks.*.audio_ffn,
audio_decoder, audio_head). Everything else in the DiT (patch_embedding, text/time embeddings, the
blocks' shared attention, norms, modulation and video FFN, head) is frozen, so the video model is kept.

    cfg = PretrainConfig.from_yaml(resolve_config("pretrain_tiny"))   # streamchar.configs: installed configs
    summary = run_pretrain(cfg)          # resumes from cfg.train.out_dir; writes <out_dir>/final
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from streamchar.config import YamlConfig
from streamchar.diffusion import flow
from streamchar.errors import StreamCharError
from streamchar.models.pap import pointer_loss
from streamchar.train.alignment import frame_token_loss
from streamchar.train import distributed
from streamchar.train.config import TrainConfig
from streamchar.train.latent_data import LatentChunks, LatentLoader, collate
from streamchar.train.mouth_weight import check_box, masked_mse, mouth_mask, weight_map

logger = logging.getLogger("streamchar")

AUDIO_PATH = ("audio_embedding.", "audio_encoder.", "audio_decoder.", "audio_head.")  # + blocks.*.audio_ffn.


@dataclass
class PretrainConfig(YamlConfig):
    stage: int = 2  # 1: orchestrator + DiT audio path on audio alone; 2: everything on audio-video
    # what of the DiT stage 1 trains: "audio_path" (the paper: Wan's shared attention and modulation stay as
    # pretrained) or "all" (a DiT from random weights, as at tiny: frozen random attention only hinders speech)
    stage1_dit: str = "audio_path"
    preset: str = "tiny"  # model preset for a fresh model ('tiny' | 'paper'); ignored when `init` is set
    init: str | None = None  # a pipeline folder to start from (e.g. stage 1's <out_dir>/final)
    model_seed: int = 0  # seed of a fresh model's weights
    # true: an `init` DiT without the audio injection (models/audio_to_video.py) gains it, zero-initialised
    add_audio_to_video: bool = False
    data: str = ""  # latent folder (streamchar data encode)
    train_split: str = "train"
    val_split: str = "val"
    captions: bool = True  # a clip's prompt is its caption: its metadata's "caption", SynthTalk: its character's
    prompt: str = "a person talking to the camera"  # the prompt of clips without one (or of all: captions false)
    batch_size: int = 8  # samples per micro-batch (per rank)
    group_by_length: bool = True  # micro-batches of similar prefix lengths (history + transcript): less padding
    uncond_prob: float = 0.1  # prompt, reference frame and audio condition dropped together (guidance)
    cond_dropout: float = 0.05  # each of them dropped alone
    ref_audio_prob: float = 0.5  # a reference voice (another clip of the same voice) in e_ref
    ref_audio_seconds: tuple[float, float] = (1.0, 15.0)  # its length, uniform (inference feeds <= 15 s)
    # E_txt's lookback per sample, uniform in [min, max] tokens, when the model's stream.text_lookback is set;
    # None: [0, 2 x stream.text_lookback] (it covers the pointer's error at inference). Unused by the window rule.
    text_lookback_range: tuple[int, int] | None = None
    # std (tokens) of noise on the spoken endpoint each training record is built from: the pointer's error at
    # inference, which sets E_txt's start and (timeline positions) where the LM expects the next word
    pointer_error: float = 0.0
    pap_weight: float = 0.1  # not given in the paper
    align_weight: float = 0.0  # frame-token alignment loss (ours, not the paper's: train/alignment.py); 0 = off
    # the mouth-region aid (ours: train/mouth_weight.py): the video loss weighs latent cells overlapping
    # mouth_box (x0, y0, x1, y1 frame fractions) 1 + mouth_weight, normalised to mean 1; 0 = Eq. 2. With a box,
    # validation also reports loss_video_mouth (the plain MSE on those cells)
    mouth_weight: float = 0.0
    mouth_box: tuple[float, float, float, float] | None = None
    # flow-matching draws (t, eps) per sample per step, sharing its orchestrator prefix and condition passes
    noise_draws: int = 1
    audio_weight: float = 1.0
    shift: float = 5.0  # timestep shift of the training t (Wan's, as stream.shift)
    val_samples: int = 4  # fixed val samples (fixed t and noise) for val/loss
    sample_every: int = 0  # > 0: at checkpoints whose step is a multiple, a sample MP4 in <out_dir>/samples/
    # > 0: at checkpoints whose step is a multiple, <out_dir>/latest: a pipeline folder of that step's (EMA)
    # weights, to check a run while it goes on (scripts/forced_wer.py, streamchar eval)
    export_every: int = 0
    sample_seconds: float = 5.5  # the sample's length at most (it ends with its transcript): 4 chunks
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "PretrainConfig":
        def bad(name: str, why: str):
            raise StreamCharError(f"config field {name}: {why}")

        if self.stage not in (1, 2):
            bad("stage", f"must be 1 or 2, got {self.stage}")
        if self.stage1_dit not in ("audio_path", "all"):
            bad("stage1_dit", f"must be 'audio_path' or 'all', got {self.stage1_dit!r}")
        if not self.data:
            bad("data", "must name a latent folder")
        for name in ("uncond_prob", "cond_dropout", "ref_audio_prob"):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, f"must be in [0, 1], got {getattr(self, name)}")
        for name in ("pointer_error", "pap_weight", "align_weight", "mouth_weight", "audio_weight", "val_samples", "sample_every", "export_every",
                     "model_seed"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if not self.shift > 0:
            bad("shift", f"must be > 0, got {self.shift}")
        if not self.sample_seconds > 0:
            bad("sample_seconds", f"must be > 0, got {self.sample_seconds}")
        if self.noise_draws < 1:
            bad("noise_draws", f"must be >= 1, got {self.noise_draws}")
        if self.batch_size < 1:
            bad("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.mouth_weight > 0 and self.mouth_box is None:
            bad("mouth_weight", "needs mouth_box (the mouth's region, frame fractions x0, y0, x1, y1)")
        if self.mouth_box is not None:
            try:
                check_box(self.mouth_box)
            except StreamCharError as e:
                bad("mouth_box", str(e))
        lo, hi = self.ref_audio_seconds
        if not 0 < lo <= hi:
            bad("ref_audio_seconds", f"need 0 < min <= max, got {self.ref_audio_seconds}")
        self.train.validate("train")
        return self


# ---- the trainable module ------------------------------------------------------------------------------

class BlockChain(nn.ModuleList):
    """Several ModuleLists seen as one (dit.blocks + orchestrator.lm.layers). Assigning an item writes it
    through to its owner list, so activation checkpointing's in-place wrapping reaches the real model."""

    def __init__(self, *owners: nn.ModuleList):
        super().__init__([m for owner in owners for m in owner])
        self.owners = list(owners)  # a plain list: not registered as submodules

    def __setitem__(self, i: int, module: nn.Module) -> None:
        super().__setitem__(i, module)
        for owner in self.owners:
            if i < len(owner):
                owner[i] = module
                return
            i -= len(owner)


def is_audio_path(name: str) -> bool:
    """DiT parameters trained in stage 1."""
    return name.startswith(AUDIO_PATH) or ".audio_ffn." in name


def is_video_only(name: str) -> bool:
    """DiT parameters only video tokens reach (no gradient without video): patch embedding, video head, the
    blocks' video FFN expert, the audio injection into the video tokens."""
    return (name.startswith(("patch_embedding.", "head.", "audio_to_video."))
            or (name.startswith("blocks.") and ".ffn." in name))


class StreamCharTrainable(nn.Module):
    """The trainable parts (DiT + orchestrator with its pointer) and the loss. The text encoder and the
    codecs stay outside, frozen: prompt contexts come precomputed in the records."""

    def __init__(self, dit, orchestrator, stage: int = 2, shift: float = 5.0, pap_weight: float = 0.1,
                 audio_weight: float = 1.0, align_weight: float = 0.0, noise_draws: int = 1,
                 stage1_dit: str = "audio_path", mouth_weight: float = 0.0, mouth_box=None):
        super().__init__()
        self.dit, self.orchestrator = dit, orchestrator
        self.stage, self.shift, self.pap_weight, self.audio_weight = stage, shift, pap_weight, audio_weight
        self.align_weight, self.noise_draws = align_weight, noise_draws
        self.mouth_weight, self.mouth_box = mouth_weight, None if mouth_box is None else check_box(mouth_box)
        for p in orchestrator.parameters():
            p.requires_grad_(True)
        for name, p in dit.named_parameters():
            p.requires_grad_(stage == 2 or is_audio_path(name) or (stage1_dit == "all" and not is_video_only(name)))

    @property
    def blocks(self) -> BlockChain:
        """Units of FSDP sharding and activation checkpointing."""
        return BlockChain(self.dit.blocks, self.orchestrator.lm.layers)

    def draw_noise(self, batch: dict):
        """Each sample's `noise_draws` draws of t, eps_video, eps_audio from its own seed, draw-major:
        (D, B), (D, B, ...) or None, (D, B, 33, C_a)."""
        z_a, z_v = batch["audio"], batch.get("video")
        ts, evs, eas = [], [], []
        for seed in batch["noise_seed"]:
            g = torch.Generator(device=z_a.device).manual_seed(seed)
            for _ in range(self.noise_draws):
                ts.append(flow.sample_t(1, self.shift, generator=g, device=z_a.device))
                eas.append(torch.randn(z_a.shape[1:], generator=g, device=z_a.device, dtype=z_a.dtype))
                if self.stage == 2:
                    evs.append(torch.randn(z_v.shape[1:], generator=g, device=z_v.device, dtype=z_v.dtype))
        B, D = len(batch["noise_seed"]), self.noise_draws

        def draw_major(xs):  # sample-major list of B * D -> (D, B, ...)
            return torch.stack(xs).unflatten(0, (B, D)).transpose(0, 1)

        return draw_major(ts)[..., 0], draw_major(evs) if evs else None, draw_major(eas)

    def forward(self, batch: dict, t=None, eps_video=None, eps_audio=None) -> dict[str, torch.Tensor]:
        """batch: a `collate`d micro-batch; t (B,), eps_*: fixed draws (validation), else each sample's own
        `noise_draws` draws. D draws of one sample share its orchestrator prefix pass and its condition pass:
        the prefix (reference voice, transcript, up to 15 s of history) is most of a sample's cost, the
        33-frame tail it conditions is little, so more draws give more flow-matching signal per second."""
        rec, z_a = batch["record"], batch["audio"]  # (B, 33, C_a)
        if t is None:
            t, eps_video, eps_audio = self.draw_noise(batch)  # (D, B), (D, B, ...), (D, B, 33, C_a)
        else:
            t, eps_audio = t[None], eps_audio[None]
            eps_video = None if eps_video is None else eps_video[None]
        D, B = t.shape
        x_a = flow.noisy(z_a.expand(D, *z_a.shape).flatten(0, 1), eps_audio.flatten(0, 1), t.flatten())  # (D*B, 33, C_a)

        # Orchestrator: c_a of each draw's noisy audio and, for the pointer, the clean audio at t = 0 (as
        # inference): D + 1 tails on one prefix pass.
        tails = [(x, tt) for x, tt in zip(x_a.unflatten(0, (D, B)), t)] + [(z_a, torch.zeros_like(t[0]))]
        c_as, hiddens, transcript, tmask = self.orchestrator.forward_tails(rec.orchestrator, tails)
        c_a = torch.cat(c_as[:D]) * rec.keep_audio_condition.to(c_as[0].dtype).repeat(D)[:, None, None]  # (D*B, 33, dim); 0 where dropped
        hidden_a, hidden0 = hiddens[0], hiddens[D]
        ptr = self.orchestrator.pap(hidden0, transcript, tmask)
        target = batch["pap_target"]  # (B,)
        loss_pap = pointer_loss(ptr, target)

        # DiT: prompt (zeroed where dropped), visual conditions (stage 2), one denoise step per draw; the
        # conditions' keys and values are computed once and shared by the draws.
        if self.stage == 1:
            x_v, conditions = None, []
        else:
            z_v = batch["video"]  # (B, C, 9, h, w)
            x_v = flow.noisy(z_v.expand(D, *z_v.shape).flatten(0, 1), eps_video.flatten(0, 1), t.flatten())
            conditions = rec.conditions(self.dit)
        cache = repeat_cache(self.dit.encode_conditions(conditions, rec.context), D)
        v_v, v_a = self.dit(x_v, x_a, c_a, t.flatten(), cache)

        out = {}
        z_a = z_a.expand(D, *z_a.shape).flatten(0, 1)
        if self.stage == 1:
            out["loss_audio"] = torch.nn.functional.mse_loss(
                v_a, flow.velocity_target(z_a, eps_audio.flatten(0, 1)).float())
            out["loss_flow"] = self.audio_weight * out["loss_audio"]
        else:
            z_v, eps_v = z_v.expand(D, *z_v.shape).flatten(0, 1), eps_video.flatten(0, 1)
            mouth = None if self.mouth_box is None else mouth_mask(*z_v.shape[-2:], self.mouth_box).to(z_v.device)
            cell_w = weight_map(mouth, self.mouth_weight) if mouth is not None and self.mouth_weight > 0 else None
            out["loss_flow"], out["loss_video"], out["loss_audio"] = flow.flow_loss(
                v_v, v_a, z_v, z_a, eps_v, eps_audio.flatten(0, 1), self.audio_weight, video_weight=cell_w)
            if mouth is not None:  # logged as Eq. 2's plain mean, whatever the weighting; and the mouth's own
                target_v = flow.velocity_target(z_v, eps_v)
                if cell_w is not None:
                    out["loss_video"] = torch.nn.functional.mse_loss(v_v.float(), target_v.float()).detach()
                out["loss_video_mouth"] = masked_mse(v_v, target_v, mouth).detach()
        out["loss_pap"] = loss_pap
        out["pap_abs_err"] = (ptr.endpoint - target).abs().mean().detach()
        out["loss"] = out["loss_flow"] + self.pap_weight * loss_pap
        if self.align_weight > 0 and "frame_tokens" in batch:  # frame-token alignment on the c_a states
            out["loss_align"], out["align_acc"] = frame_token_loss(
                hidden_a, self.orchestrator.lm.embed_tokens.weight, batch["frame_tokens"])
            out["loss"] = out["loss"] + self.align_weight * out["loss_align"]
        return out


def repeat_cache(cache, n: int):
    """A ConditionCache for n copies of its batch, copy-major (row j * B + i is row i): the draws of a sample
    share its conditions' keys and values."""
    import dataclasses

    if n == 1:
        return cache

    def rep(kv):
        return None if kv is None else tuple(torch.cat([x] * n) for x in kv)

    return dataclasses.replace(cache, self_kv=[rep(kv) for kv in cache.self_kv], text_kv=[rep(kv) for kv in cache.text_kv],
                               key_mask=None if cache.key_mask is None else torch.cat([cache.key_mask] * n))


def pretrain_loss(model, batch, step):
    """The Trainer's loss_fn."""
    out = model(batch)
    return out["loss"], {k: v.item() for k, v in out.items() if k != "loss"}


def other_transcripts(batch: dict) -> dict:
    """The batch with each row's transcript (and prompt) taken from the next row: how much the audio loss
    depends on the text is the difference (`val/text_gap`)."""
    import dataclasses

    rec = batch["record"]
    o = rec.orchestrator
    roll = lambda x: torch.roll(x, 1, 0)  # noqa: E731
    orch = dataclasses.replace(o, text_ids=roll(o.text_ids), text_len=roll(o.text_len),
                               transcript_start=roll(o.transcript_start),
                               text_positions=None if o.text_positions is None else roll(o.text_positions))
    return {**batch, "record": dataclasses.replace(rec, orchestrator=orch)}


def other_speech(batch: dict) -> dict:
    """The batch with each row's whole speech side taken from the next row: its audio latents, orchestrator
    inputs (reference voice, transcript, history) and c_a; the video side (video, reference frame, sink,
    motion, prompt) stays. How much the video's mouth follows the speech is the difference in its loss
    (`val/mouth_speech_gap`)."""
    import dataclasses

    rec, roll = batch["record"], (lambda x: torch.roll(x, 1, 0))  # noqa: E731
    o = rec.orchestrator
    orch = dataclasses.replace(o, **{f: roll(getattr(o, f)) for f in o.FIELDS if getattr(o, f) is not None})
    rec = dataclasses.replace(rec, orchestrator=orch, keep_audio_condition=roll(rec.keep_audio_condition))
    rolled = {k: roll(batch[k]) for k in ("audio", "pap_target", "frame_tokens") if k in batch}
    return {**batch, "record": rec, **rolled}


def make_val_fn(dataset: LatentChunks, n: int, stage: int, seed: int = 1234, batch_size: int = 8):
    """val_fn(model, step): mean losses over `n` fixed val samples with fixed t and noise, in batches, and
    `text_gap`: the audio loss with another sample's transcript minus the loss with its own (> 0 when the
    audio follows the text; ~0 when the model ignores it); with a mouth box, `mouth_speech_gap`: the mouth
    cells' loss with another sample's speech minus with its own (~0 when the lips ignore the speech)."""
    picks = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int)
    g = torch.Generator().manual_seed(seed)
    samples, ts, eps_vs, eps_as = [], [], [], []
    for j, i in enumerate(picks):
        s = dataset.sample(int(i), np.random.default_rng([seed, int(i)]))
        samples.append(s)
        ts.append((j + 0.5) / len(picks))  # spread over (0, 1)
        eps_as.append(torch.randn(s["audio"].shape, generator=g))
        eps_vs.append(torch.randn(s["video"].shape, generator=g) if stage == 2 else None)
    fixed = []
    for a in range(0, len(samples), batch_size):
        sl = slice(a, a + batch_size)
        fixed.append((collate(samples[sl]), torch.tensor(ts[sl]),
                      torch.stack(eps_vs[sl]) if stage == 2 else None, torch.stack(eps_as[sl])))

    def val_fn(model, step):
        from streamchar.train.engine import to_device

        dev = next(model.parameters()).device
        sums, counts = {}, {}
        for batch, t, eps_v, eps_a in fixed:
            batch = to_device(batch, dev)
            out = model(batch, t.to(dev), to_device(eps_v, dev), eps_a.to(dev))
            if len(t) > 1:
                other = model(other_transcripts(batch), t.to(dev), to_device(eps_v, dev), eps_a.to(dev))
                out["text_gap"] = other["loss_audio"] - out["loss_audio"]
                if "loss_video_mouth" in out:
                    other = model(other_speech(batch), t.to(dev), to_device(eps_v, dev), eps_a.to(dev))
                    out["mouth_speech_gap"] = other["loss_video_mouth"] - out["loss_video_mouth"]
            w = len(t)  # batch means -> a mean over samples
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v) * w
                counts[k] = counts.get(k, 0) + w
        return {k: v / counts[k] for k, v in sums.items()}

    return val_fn


# ---- the run -------------------------------------------------------------------------------------------

def build_pipeline(cfg: PretrainConfig):
    from streamchar.config import preset
    from streamchar.pipeline import StreamChar

    pipe = StreamChar.from_pretrained(cfg.init) if cfg.init else StreamChar.from_config(preset(cfg.preset),
                                                                                         seed=cfg.model_seed)
    if cfg.add_audio_to_video:
        pipe.dit.add_audio_to_video()
    pipe.dit.float()  # fp32 master weights (a converted init is often bf16); bf16 compute comes from autocast
    pipe.orchestrator.float()
    return pipe


def check_codecs(cfg: PretrainConfig, pipe) -> None:
    """The latents must come from this model's codecs: a model trained on them decodes with its own."""
    import json

    from streamchar.data.latents import codec_fingerprint

    index_file = Path(cfg.data) / "index.json"
    if not index_file.is_file():
        raise StreamCharError(f"config field data: {cfg.data} is not a latent folder (no index.json); "
                              "make one with `streamchar data encode`")
    index = json.loads(index_file.read_text())
    expected = index.get("codec_sha256")
    if expected is None:
        logger.warning("latent folder %s does not record its codecs' fingerprint: cannot check that they are "
                       "the model's", cfg.data)
    elif expected != codec_fingerprint(pipe):
        start = f"init {cfg.init}" if cfg.init else f"a fresh {cfg.preset!r} model (init: null)"
        raise StreamCharError(
            f"the latents in {cfg.data} were encoded by other codecs ({index.get('codecs', '?')}) than those of "
            f"{start}: set init to a pipeline folder with those codecs (e.g. `streamchar convert --video-vae "
            f"... --audio-vae ...`), or encode the data again with this model's codecs")


def clip_caption(clip: dict) -> str | None:
    """A clip's own caption: its metadata's "caption", or for SynthTalk its character's look; None if neither."""
    from streamchar.data.identity import IDENTITIES, caption

    if clip.get("caption"):
        return clip["caption"]
    identity = clip.get("identity")
    if isinstance(identity, int) and 0 <= identity < len(IDENTITIES):
        return caption(IDENTITIES[identity])
    return None


def clip_prompts(cfg: PretrainConfig, pipe):
    """A clip's prompt (orchestrator ids + separator, DiT context (L, dim)): its caption, or the fixed
    `prompt`; the frozen text encoder runs once per distinct prompt (the dataset caches them)."""
    from streamchar.streaming.session import prompt_context, prompt_ids

    def prompt(clip: dict):
        text = clip_caption(clip) if cfg.captions else None
        text = cfg.prompt if text is None else text
        return prompt_ids(pipe.tokenizer, text), prompt_context(pipe, text)[0].float()

    return prompt


def clip_frame_tokens(tokenizer, rate: float):
    """A LatentChunks `frame_tokens` function: a clip's frame-token targets from its tokens' timings (stored by
    `data encode`; latents encoded before that: from the words' timings through `tokenizer`)."""
    from streamchar.train.alignment import frame_tokens, token_spans

    def targets(meta: dict, tensors: dict, n_frames: int) -> torch.Tensor:
        token_ids = tensors["token_ids"].tolist()
        if "token_spans" in tensors:
            return frame_tokens(token_ids, tensors["token_spans"].double().numpy(), n_frames, rate)
        ids, spans = token_spans(meta.get("text", ""), meta.get("words", []), tokenizer, meta.get("phonemes"))
        if ids != token_ids:
            raise StreamCharError(f"clip {meta.get('key')}: its stored token ids are not this model's tokenizer's "
                                  "(encode the latents again with this model)")
        return frame_tokens(ids, spans, n_frames, rate)

    return targets


def build_datasets(cfg: PretrainConfig, pipe, split: str, train: bool) -> LatentChunks:
    from streamchar.streaming.session import prompt_ids

    mc = pipe.cfg
    align = clip_frame_tokens(pipe.tokenizer, mc.audio_latent_rate) if cfg.align_weight > 0 else None
    L = mc.stream.text_lookback
    lookback = None if L is None else (tuple(cfg.text_lookback_range) if cfg.text_lookback_range else (0, 2 * L))
    return LatentChunks(cfg.data, split, prompt=clip_prompts(cfg, pipe), null_prompt_ids=prompt_ids(pipe.tokenizer, ""),
                        history_frames=mc.history_frames, audio_frames=mc.audio_latent_frames,
                        audio_only=cfg.stage == 1, uncond_prob=cfg.uncond_prob, cond_dropout=cfg.cond_dropout,
                        ref_audio_prob=cfg.ref_audio_prob, ref_audio_seconds=tuple(cfg.ref_audio_seconds),
                        audio_rate=mc.audio_latent_rate, train=train, seed=cfg.train.seed, frame_tokens=align,
                        text_lookback=lookback if train else (None if L is None else (L, L)), sink=mc.stream.sink,
                        pointer_error=cfg.pointer_error, text_horizon=mc.text_horizon_frames)


def build_trainable(cfg: PretrainConfig, pipe) -> StreamCharTrainable:
    return StreamCharTrainable(pipe.dit, pipe.orchestrator, cfg.stage, cfg.shift, cfg.pap_weight, cfg.audio_weight,
                               cfg.align_weight, cfg.noise_draws, cfg.stage1_dit, cfg.mouth_weight, cfg.mouth_box)


def export_pipeline(trainer, pipe, path: Path, prefix: str = "", model_cfg=None) -> None:
    """Write the pipeline folder with the trained (EMA if on) weights; collective under DDP / FSDP.
    prefix: where the DiT and orchestrator sit in the trained module ("student." in distillation);
    model_cfg: the folder's config (default: the pipeline's)."""
    from accelerate import init_empty_weights
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from streamchar.models.dit import JointDiT
    from streamchar.models.orchestrator import Orchestrator
    from streamchar.pipeline import StreamChar

    sd = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.ema is not None:
        sd.update(trainer.ema.full_state_dict())
    if distributed.is_main():
        c = model_cfg or pipe.cfg
        with init_empty_weights(include_buffers=False):  # fresh CPU modules: the trained ones may be sharded
            dit, orch = JointDiT.from_config(c), Orchestrator.from_config(c)
        for name, module in ((f"{prefix}dit.", dit), (f"{prefix}orchestrator.", orch)):
            module.load_state_dict({k[len(name):]: v.float().clone() for k, v in sd.items()
                                    if k.startswith(name)}, assign=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        StreamChar(c, dit, orch, pipe.video_codec, pipe.audio_codec, pipe.text_encoder,
                   pipe.tokenizer).save_pretrained(path)
    distributed.barrier()


def sample_inputs(cfg: PretrainConfig, pipe, dataset: LatentChunks | None) -> tuple[np.ndarray, str, str]:
    """The validation sample's reference frame (H, W, 3) uint8, transcript and prompt: the first val clip's
    (its reference latent decoded by the model's own codec, its caption), or a gray frame and a fixed sentence."""
    H, W = pipe.cfg.video.height, pipe.cfg.video.width
    clip = next((c for c in dataset.clips if c.get("text") and "reference_latent" in c), None) if dataset else None
    if clip is None:
        return np.full((H, W, 3), 128, np.uint8), "hello there, this is a sample.", cfg.prompt
    codec = pipe.video_codec
    with torch.no_grad():
        z = clip["reference_latent"][None].to(next(codec.parameters()).device)  # (1, C, 1, h, w)
        frame = codec.decode(z)[0, :, 0]  # (3, H, W) in [-1, 1]
    image = ((frame.float().permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    prompt = (clip_caption(clip) if cfg.captions else None) or cfg.prompt
    return image, clip["text"], prompt


def write_sample(folder: Path, path: Path, prompt: str, seconds: float, ref_image: np.ndarray, text: str) -> None:
    """Stream up to `seconds` from the pipeline folder into an MP4 with the model's sampler (the teacher's,
    with guidance, for a pretrained model)."""
    from streamchar.pipeline import StreamChar
    from streamchar.streaming.generate import stream_to_file
    from streamchar.streaming.session import StreamSession

    model = StreamChar.from_pretrained(folder)
    session = StreamSession(model, text=text, ref_image=ref_image, prompt=prompt, max_seconds=seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream_to_file(session, path, progress=False)


def measure_timeline(orchestrator, dataset: LatentChunks) -> None:
    """The stream's timeline plan (models/timeline.py): each token type's mean duration and the lead-in,
    measured on the training clips' timings, into the orchestrator's buffers (saved with its weights).
    Deterministic, so a resumed run measures the same."""
    from streamchar.models.timeline import measure_durations

    durations, lead_in = measure_durations([(c["token_ids"], c["plan"]) for c in dataset.clips],
                                           orchestrator.token_durations.numel(), orchestrator.cfg.timeline_rate)
    orchestrator.token_durations.copy_(durations)
    orchestrator.lead_in.fill_(lead_in)


def run_pretrain(cfg: PretrainConfig) -> dict:
    """Build model, data and Trainer; resume; fit; write <out_dir>/final. Returns a summary."""
    from streamchar.train.engine import Trainer

    cfg.validate()
    distributed.init_distributed()  # first: the loader reads rank / world size
    pipe = build_pipeline(cfg)
    check_codecs(cfg, pipe)
    model = build_trainable(cfg, pipe)
    train_ds = build_datasets(cfg, pipe, cfg.train_split, train=True)
    if pipe.cfg.orchestrator.positions == "timeline":
        measure_timeline(pipe.orchestrator, train_ds)
    loader = LatentLoader(train_ds, batch_size=cfg.batch_size, seed=cfg.train.seed, group_by_length=cfg.group_by_length)
    val_fn, val_ds = None, None
    if (cfg.train.val_every and cfg.val_samples) or cfg.sample_every:
        val_ds = build_datasets(cfg, pipe, cfg.val_split, train=False)
    if cfg.train.val_every and cfg.val_samples:
        val_fn = make_val_fn(val_ds, cfg.val_samples, cfg.stage, batch_size=cfg.batch_size)
    out_dir = Path(cfg.train.out_dir)

    sample = sample_inputs(cfg, pipe, val_ds if cfg.stage == 2 else None) if cfg.sample_every else None

    def on_checkpoint(ckpt: Path, step: int):  # exports and samples of the checkpointed weights
        if cfg.export_every and step % cfg.export_every == 0:
            export_pipeline(trainer, pipe, out_dir / "latest")
        if cfg.sample_every and step % cfg.sample_every == 0:
            tmp = out_dir / "samples" / ".pipeline"
            export_pipeline(trainer, pipe, tmp)
            if distributed.is_main():
                ref_image, text, prompt = sample
                write_sample(tmp, out_dir / "samples" / f"step_{step:08d}.mp4", prompt, cfg.sample_seconds,
                             ref_image, text)

    trainer = Trainer(model, pretrain_loss, loader, cfg.train, blocks=model.blocks, val_fn=val_fn,
                      on_checkpoint=on_checkpoint if cfg.export_every or cfg.sample_every else None)
    start = trainer.resume()
    out_dir.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        cfg.to_yaml(out_dir / "pretrain_config.yaml")
    losses = trainer.fit()
    final = out_dir / "final"
    export_pipeline(trainer, pipe, final)
    val = trainer.validate() if val_fn is not None else {}
    return {"stage": cfg.stage, "start_step": start, "steps": trainer.step, "losses": losses,
            "final": str(final), "ema": trainer.ema is not None, **val}
