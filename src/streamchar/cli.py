"""The `streamchar` command. Heavy imports (torch, diffusers, transformers) happen inside the commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from streamchar.configs import resolve_config
from streamchar.errors import StreamCharError
from streamchar.paths import input_file, input_folder, output_file, output_folder, run_folder

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local paths only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

NO_MODEL = ("no trained model is bundled yet: pass --checkpoint DIR for a trained one, "
            "or --random-init to stream with random weights")


MAX_STREAM_SECONDS = 24 * 3600.0  # --max-seconds accepts up to a day of video


def _positive(value: str, option: str = "--max-seconds", upper: float = MAX_STREAM_SECONDS) -> float:
    try:
        x = float(value)
    except ValueError:
        raise StreamCharError(f"{option} must be a number, got {value!r}") from None
    if not x > 0 or x != x or x == float("inf"):
        raise StreamCharError(f"{option} must be > 0, got {value}")
    if x > upper:
        raise StreamCharError(f"{option} must be at most {upper:g} s (a day of video), got {value}")
    return x


def cmd_generate(args) -> int:
    if not args.text or not args.text.strip():
        raise StreamCharError("--text is empty: give some text to speak")
    max_seconds = _positive(args.max_seconds) if args.max_seconds is not None else None
    if args.guidance is not None and not all(0 < g < float("inf") for g in args.guidance):
        raise StreamCharError(f"--guidance takes two scales > 0 (video, audio), got {args.guidance}")
    out = output_file(args.out, "--out")
    timings = output_file(args.timings, "--timings") if args.timings else None
    if args.checkpoint is None and not args.random_init:
        raise StreamCharError(NO_MODEL)
    if args.checkpoint is not None and args.random_init:
        raise StreamCharError("--checkpoint and --random-init exclude each other: choose one")
    if args.random_init and args.preset == "paper":
        raise StreamCharError("--random-init builds the tiny preset only: the paper preset needs the Wan2.2 VAE "
                              "and the Oobleck VAE from your disk; assemble them with `streamchar convert --preset "
                              "paper --video-vae ... --audio-vae ...` and pass the result as --checkpoint")
    if args.checkpoint is not None:
        args.checkpoint = _model_folder(args.checkpoint)
    for option, path in (("--ref-image", args.ref_image), ("--ref-audio", args.ref_audio)):
        if path is not None:
            input_file(path, option)

    from streamchar.config import StreamCharConfig, preset
    from streamchar.device import inference_dtype, pick_device
    from streamchar.pipeline import StreamChar
    from streamchar.streaming.generate import stream_to_file, write_json
    from streamchar.streaming.media import load_audio, load_image
    from streamchar.streaming.session import StreamSession

    device = pick_device(args.device)
    cfg = StreamCharConfig.from_yaml(Path(args.checkpoint) / "config.yaml") if args.checkpoint else preset(args.preset)
    ref_image = load_image(args.ref_image, cfg.video.height, cfg.video.width)  # inputs first: fail before building
    ref_audio = (load_audio(args.ref_audio, cfg.audio.sample_rate, cfg.audio.channels, cfg.stream.history_seconds)
                 if args.ref_audio else None)
    if args.checkpoint is not None:
        model = StreamChar.from_pretrained(args.checkpoint, device=device)
    else:
        print(f"streamchar: {NO_MODEL.split(':')[0]}; streaming with RANDOM weights (--random-init, preset "
              f"{args.preset}): the output is noise, not a character", file=sys.stderr)
        model = StreamChar.from_config(cfg, seed=args.seed).to(device)
    model = model.to(inference_dtype(device))
    compile_s = None
    if args.compile:  # the per-step noisy pass, compiled before the stream starts (one shape for every chunk)
        import time

        t0 = time.perf_counter()
        model.dit.compile()
        warm_up = StreamSession(model, text="warm up", ref_image=ref_image, max_seconds=2 * cfg.chunk_seconds,
                                stop_at_end=False, sampler=args.sampler, guidance=args.guidance)
        for _ in warm_up.chunks():  # the stream's own path (its thread count): no recompile once it starts
            pass
        compile_s = time.perf_counter() - t0
        print(f"streamchar: compiled the DiT in {compile_s:.1f} s", file=sys.stderr)
    session = StreamSession(model, text=args.text, ref_image=ref_image, ref_audio=ref_audio, prompt=args.prompt,
                            seed=args.seed, max_seconds=max_seconds, sampler=args.sampler, guidance=args.guidance)
    report = stream_to_file(session, out, progress=not args.quiet)
    report["compile_s"] = compile_s
    report.update(device=str(device), preset=model.cfg.preset, sampler=session.sampler, guidance=session.guidance,
                  random_init=args.checkpoint is None)
    if timings is not None:
        write_json(report, timings)
    print(f"streamchar: wrote {out} ({report['chunks']} chunks, {report['seconds']:.3f} s, real-time factor "
          f"{report['rtf_steady']:.2f} after a first chunk of {report['first_chunk_s']:.2f} s, on {device})",
          file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    """The live server: the model loaded once, sessions streamed by one worker."""
    if not 1 <= args.port <= 65535:
        raise StreamCharError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_sessions < 1:
        raise StreamCharError(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if args.token is not None and not args.token.strip():
        raise StreamCharError("--token is empty: give a secret, or leave the option out")
    if args.checkpoint is None and not args.random_init:
        raise StreamCharError(NO_MODEL)
    if args.checkpoint is not None and args.random_init:
        raise StreamCharError("--checkpoint and --random-init exclude each other: choose one")
    if args.max_lead is not None and not args.max_lead > 0:
        raise StreamCharError(f"--max-lead must be > 0 seconds, got {args.max_lead}")
    ref = input_file(args.ref_image, "--ref-image") if args.ref_image else None
    if args.host not in ("127.0.0.1", "localhost", "::1") and args.token is None:
        print(f"streamchar: serving on {args.host} without --token: anyone who reaches this port can use the "
              "model", file=sys.stderr)
    import uvicorn

    from streamchar.config import preset
    from streamchar.device import inference_dtype, pick_device
    from streamchar.pipeline import StreamChar
    from streamchar.serve.app import ServeOptions, create_app

    device = pick_device(args.device)
    if args.checkpoint is not None:
        model = StreamChar.from_pretrained(_model_folder(args.checkpoint), device=device)
    else:
        print(f"streamchar: {NO_MODEL.split(':')[0]}; serving RANDOM weights (--random-init, preset {args.preset}): "
              "the streams are noise, not a character", file=sys.stderr)
        model = StreamChar.from_config(preset(args.preset), seed=0).to(device)
    model = model.to(inference_dtype(device)).eval()
    app = create_app(model, ServeOptions(token=args.token, max_sessions=args.max_sessions,
                                         max_lead_seconds=args.max_lead, idle_seconds=args.idle_seconds,
                                         reference_image=ref, sampler=args.sampler))
    print(f"streamchar: serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_info(args) -> int:
    from streamchar.config import preset
    from streamchar.pipeline import parameter_counts

    cfg = preset(args.preset)
    counts = parameter_counts(cfg)
    info = {
        "preset": cfg.preset,
        "parameters": counts,
        "chunk": {"frames": cfg.stream.frames_per_chunk, "seconds": cfg.chunk_seconds,
                  "video_latent_frames": cfg.video_latent_frames, "audio_latent_frames": cfg.audio_latent_frames,
                  "video_tokens": cfg.video_latent_frames * (cfg.latent_size[0] // cfg.dit.patch_size[1])
                  * (cfg.latent_size[1] // cfg.dit.patch_size[2]),
                  "audio_rope_scale": cfg.audio_rope_scale, "history_frames": cfg.history_frames},
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"preset {cfg.preset}: {cfg.video.width}x{cfg.video.height} @ {cfg.video.fps} fps, "
              f"chunk {cfg.stream.frames_per_chunk} frames = {cfg.chunk_seconds} s")
        for name, n in counts.items():
            print(f"  {name:28s} {n:>16,d}  ({n / 1e9:.3f} B)")
    return 0


def cmd_convert(args) -> int:
    out = output_folder(args.out, "--out", args.overwrite)  # a pipeline folder, written whole
    folders = dict(wan=args.wan, qwen=args.qwen, text_encoder=args.text_encoder, video_vae=args.video_vae,
                   audio_vae=args.audio_vae)
    for name, path in folders.items():
        if path is not None:
            input_folder(path, f"--{name.replace('_', '-')}")
    if all(v is None for v in folders.values()) and not args.set:
        raise StreamCharError("nothing to convert: give at least one of --wan, --qwen, --text-encoder, "
                              "--video-vae, --audio-vae (or --set)")
    import torch

    from streamchar.convert import codecs_skeleton, convert

    if args.codecs_only:
        if any(folders[k] is not None for k in ("wan", "qwen", "text_encoder")) or args.set:
            raise StreamCharError("--codecs-only takes --video-vae and --audio-vae only")
        card = input_file(args.card, "--card").read_text(errors="replace") if args.card else None
        report = codecs_skeleton(out, folders["video_vae"], folders["audio_vae"], base=args.preset, card=card)
        print(json.dumps(report, indent=2))
        return 0
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    report = convert(out, base=args.preset, dtype=dtype, settings=args.set, seed=args.seed, **folders)
    print(json.dumps(report, indent=2))
    return 0


def cmd_cost(args) -> int:
    from streamchar.config import preset
    from streamchar.cost import cost_report, format_report

    if args.gpus < 1:
        raise StreamCharError(f"--gpus must be >= 1, got {args.gpus}")
    report = cost_report(preset(args.preset), args.gpu, train_gpus=args.gpus)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_data_synthtalk(args) -> int:
    from streamchar.atomic import atomic_folder
    from streamchar.data.synthtalk import generate

    out = output_folder(args.out, "--out", args.overwrite)
    with atomic_folder(out) as tmp:  # a stopped run leaves nothing; --overwrite replaces the old set when done
        summary = generate(tmp, args.num, seed=args.seed, size=args.size, long=args.long,
                           shard_size=args.shard_size, workers=args.workers, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _model_folder(value: str) -> Path:
    """--checkpoint: a folder, or a bundled name; a codecs-only skeleton cannot generate."""
    from streamchar.bundled import resolve_checkpoint

    path = resolve_checkpoint(value)
    if (path / "video_codec").is_dir() and not (path / "dit").is_dir():
        raise StreamCharError(f"--checkpoint {value} holds the codecs only (no trained DiT / orchestrator yet): "
                              "use it with `streamchar eval-codecs` or `convert --video-vae/--audio-vae`")
    return path


def cmd_eval_codecs(args) -> int:
    from streamchar.bundled import resolve_checkpoint
    from streamchar.codecs.load import load_pipeline_codecs
    from streamchar.device import pick_device
    from streamchar.eval.codecs import evaluate_codecs

    if not (input_folder(args.data, "--data") / "index.json").is_file():
        raise StreamCharError(f"--data {args.data} is not a SynthTalk folder (no index.json)")
    if args.judge is not None:
        input_folder(args.judge, "--judge")
    video, audio, cfg = load_pipeline_codecs(resolve_checkpoint(args.checkpoint))
    device = pick_device(args.device)
    report = evaluate_codecs(args.data, video.to(device), audio.to(device), cfg, clips=args.clips,
                             chunks=args.chunks, split=args.split, judge=args.judge)
    report["checkpoint"] = str(args.checkpoint)
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:20s} {v:.4f}" if isinstance(v, float) else f"{k:20s} {v}")
    return 0


def cmd_data_encode(args) -> int:
    from streamchar.atomic import atomic_folder

    input_folder(args.shards, "--shards")
    out = output_folder(args.out, "--out", args.overwrite)
    if (args.checkpoint is None) == (not args.random_init):
        raise StreamCharError("choose the codecs: --checkpoint DIR (trained) or --random-init (random, for tests)")
    from streamchar.config import preset
    from streamchar.data.latents import encode_shards
    from streamchar.device import pick_device
    from streamchar.pipeline import StreamChar

    device = pick_device(args.device)
    if args.checkpoint:
        args.checkpoint = _model_folder(args.checkpoint)
        model, source = StreamChar.from_pretrained(args.checkpoint, device=device), str(args.checkpoint)
    else:
        print("streamchar: encoding with RANDOM codecs (--random-init): the latents only test the pipeline",
              file=sys.stderr)
        model, source = StreamChar.from_config(preset(args.preset)).to(device), f"random-init:{args.preset}"
    with atomic_folder(out) as tmp:  # a stopped run leaves nothing; --overwrite replaces the old folder when done
        summary = encode_shards(args.shards, tmp, model, device, source=source, progress=not args.quiet,
                                workers=1 if device.type != "cpu" else args.workers)
    print(json.dumps(summary, indent=2))
    return 0


def _train_overrides(cfg, args):
    """--data / --out-dir / --steps override the YAML; the config is validated again, and the run's folder is
    checked: a new one, or an earlier run of this command, which resumes (--overwrite starts over)."""
    if args.data is not None:
        cfg.data = str(input_folder(args.data, "--data"))
    if args.out_dir is not None:
        cfg.train.out_dir = args.out_dir
    if args.steps is not None:
        cfg.train.steps = args.steps
    cfg = cfg.validate()
    run_folder(cfg.train.out_dir, "--out-dir" if args.out_dir is not None else "train.out_dir", args.overwrite)
    return cfg


def cmd_train_codec(args) -> int:
    from streamchar.train.codec import CodecTrainConfig, run_codec_training

    kind = args.command_name.removeprefix("codec-")
    cfg = _train_overrides(CodecTrainConfig.from_yaml(resolve_config(args.config or f"codec_{kind}_tiny")), args)
    if cfg.kind != kind:
        raise StreamCharError(f"{args.command_name} needs a config with kind: {kind}, got {cfg.kind!r}")
    report = run_codec_training(cfg)
    skip = ("codec", "losses", "transcripts", "latents_mean", "latents_std")
    print(json.dumps({k: v for k, v in report.items() if k not in skip}, indent=2))
    return 0


def cmd_train_asr_judge(args) -> int:
    from streamchar.train.asr_judge import JudgeTrainConfig, run_judge_training

    cfg = _train_overrides(JudgeTrainConfig.from_yaml(resolve_config(args.config or "asr_judge_tiny")), args)
    report = run_judge_training(cfg)
    print(json.dumps({k: v for k, v in report.items() if k not in ("judge", "losses")}, indent=2))
    return 0


def cmd_train_distill_dmd(args) -> int:
    from streamchar.train.distill_dmd import DMDConfig, run_distill_dmd

    cfg = DMDConfig.from_yaml(resolve_config(args.config or "distill_dmd_tiny"))
    if args.init is not None:
        cfg.init = str(_model_folder(args.init))
    return _print_report(run_distill_dmd(_train_overrides(cfg, args)))


def cmd_train_distill_rollout(args) -> int:
    from streamchar.train.distill_rollout import RolloutConfig, run_distill_rollout

    cfg = RolloutConfig.from_yaml(resolve_config(args.config or "distill_rollout_tiny"))
    if args.init is not None:
        cfg.init = str(_model_folder(args.init))
    if args.teacher is not None:
        cfg.teacher = str(_model_folder(args.teacher))
    cfg.sink = False if args.no_sink else cfg.sink
    cfg.one_chunk = cfg.one_chunk or args.one_chunk
    return _print_report(run_distill_rollout(_train_overrides(cfg, args)))


def cmd_train_pretrain(args) -> int:
    from streamchar.train.pretrain import PretrainConfig, run_pretrain

    cfg = PretrainConfig.from_yaml(resolve_config(args.config or "pretrain_tiny"))
    if args.stage is not None:
        cfg.stage = args.stage
    if args.init is not None:
        cfg.init = str(input_folder(args.init, "--init"))
    return _print_report(run_pretrain(_train_overrides(cfg, args)))


def _print_report(report: dict) -> int:
    """A training command's summary as JSON on stdout (the loss curve is in metrics.jsonl)."""
    print(json.dumps({k: v for k, v in report.items() if k != "losses"}, indent=2, default=str))
    return 0


def _eval_device(name: str):
    from streamchar.device import pick_device

    try:
        return pick_device(name)
    except StreamCharError as e:
        raise StreamCharError(str(e).replace("--device", "--eval-device")) from None


def cmd_eval(args) -> int:
    from streamchar.eval.protocols import emtd_items, get_protocol, synthtalk_items
    from streamchar.eval.report import EvalOptions, evaluate

    protocol = get_protocol(args.protocol)
    eval_device = _eval_device(args.eval_device)  # checked before any generation
    output_folder(args.out, "--out", args.overwrite)  # the report folder, written whole at the end
    refs = input_folder(args.refs, "--refs") if args.refs else None
    if args.timings:
        input_folder(args.timings, "--timings")
    for option, path in (("--data", args.data), ("--emtd", args.emtd), ("--judge", args.judge)):
        if path is not None:
            input_folder(path, option)
    if args.generate or args.score_truth:  # --videos is written: a folder or a new name
        if Path(args.videos).exists() and not Path(args.videos).is_dir():
            raise StreamCharError(f"--videos {args.videos} is a file; give a folder")
    else:
        input_folder(args.videos, "--videos")
    if args.generate:
        if (args.checkpoint is None) == (not args.random_init):
            raise StreamCharError("--generate needs the model: --checkpoint DIR (trained) or --random-init")
        if args.score_truth:
            raise StreamCharError("--generate and --score-truth exclude each other: the truth is not generated")
        if args.checkpoint is not None:
            args.checkpoint = _model_folder(args.checkpoint)
        if (args.data is None) == (args.emtd is None):
            raise StreamCharError("--generate needs the items: --data SYNTHTALK_DIR or --emtd DIR (one of them)")
        if args.limit is not None and args.limit < 1:
            raise StreamCharError(f"--limit must be >= 1, got {args.limit}")
        seconds = _positive(args.seconds, "--seconds") if args.seconds is not None else None
        items = (synthtalk_items(args.data, protocol, seed=args.seed, limit=args.limit) if args.data
                 else emtd_items(args.emtd, protocol, seed=args.seed, limit=args.limit))
        refs = refs or Path(args.videos) / "refs"

        from streamchar.config import preset
        from streamchar.device import inference_dtype, pick_device
        from streamchar.eval.generate import generate_items
        from streamchar.pipeline import StreamChar

        device = pick_device(args.device)
        if args.checkpoint is not None:
            model = StreamChar.from_pretrained(args.checkpoint, device=device)
        else:
            print(f"streamchar: generating with RANDOM weights (--random-init, preset {args.preset}): the scores "
                  "measure noise, not a model", file=sys.stderr)
            model = StreamChar.from_config(preset(args.preset), seed=args.seed).to(device)
        model = model.to(inference_dtype(device))
        done = generate_items(model, items, protocol, Path(args.videos), refs, seconds=seconds, sampler=args.sampler,
                              seed=args.seed, guidance=args.guidance, progress=not args.quiet)
        print(f"streamchar: {done['generated']} stream(s) generated, {done['kept']} kept from an earlier run, "
              f"into {args.videos}", file=sys.stderr)
    elif args.score_truth:
        refs = _write_truth(args, protocol)
    elif args.checkpoint or args.random_init or args.data or args.emtd:
        raise StreamCharError("--checkpoint / --random-init / --data / --emtd drive generation: add --generate "
                              "(or --score-truth with --data / --emtd)")
    opts = EvalOptions(protocol=args.protocol, refs=refs, timings=Path(args.timings) if args.timings else None,
                       device=str(eval_device), frame_stride=args.frame_stride, fid_frames=args.fid_frames,
                       fvd_clips=args.fvd_clips, sync_window=args.sync_window, inception=args.inception,
                       i3d=args.i3d, syncnet=args.syncnet, face_detector=args.face_detector,
                       face_embedder=args.face_embedder, face_embedder_layout=args.face_embedder_layout,
                       musiq=args.musiq, raft=args.raft, whisper=args.whisper,
                       asr="pocketsphinx" if args.asr == "auto" and args.emtd and not args.whisper else args.asr,
                       judge=args.judge)
    report = evaluate(args.videos, args.out, opts, progress=not args.quiet, overwrite=args.overwrite)
    width = max(len(k) for k in report["metrics"]) if report["metrics"] else 0
    for name, m in report["metrics"].items():
        value = "n/a" if m["value"] is None else f"{m['value']:.4f}"
        print(f"{name:{width}s}  {value:>10s}  ({m.get('backend', '')}{', proxy' if m.get('proxy') else ''})")
    print(f"streamchar: wrote {Path(args.out) / 'report.json'} and summary.md ({len(report['videos'])} videos, "
          f"{len(report['plots'])} plots)", file=sys.stderr)
    return 0


def _write_truth(args, protocol) -> Path:
    """--score-truth: the protocol's true held-out clips into --videos (<key>.mp4 + <key>.txt); -> refs."""
    from streamchar.eval.protocols import emtd_items, synthtalk_items

    if (args.data is None) == (args.emtd is None):
        raise StreamCharError("--score-truth needs the clips: --data SYNTHTALK_DIR or --emtd DIR (one of them)")
    if protocol.name != "short":
        raise StreamCharError("--score-truth scores whole true clips: use --protocol short (the long protocol's "
                              "5-minute streams have no recorded truth)")
    if args.limit is not None and args.limit < 1:
        raise StreamCharError(f"--limit must be >= 1, got {args.limit}")
    items = (synthtalk_items(args.data, protocol, seed=args.seed, limit=args.limit) if args.data
             else emtd_items(args.emtd, protocol, seed=args.seed, limit=args.limit))
    videos = Path(args.videos)
    videos.mkdir(parents=True, exist_ok=True)
    for item in items:
        data = item.truth if isinstance(item.truth, bytes) else Path(item.truth).read_bytes()
        for name, payload in ((f"{item.key}.mp4", data), (f"{item.key}.txt", item.transcript.encode())):
            tmp = videos / f".{name}.partial"
            tmp.write_bytes(payload)
            tmp.replace(videos / name)
    print(f"streamchar: {len(items)} true clip(s) written to {videos} (the ceiling row)", file=sys.stderr)
    return Path(args.refs) if args.refs else videos


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one (None and False are no default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default:" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """A usage mistake is one line too (argparse prints the whole usage first): what is wrong, where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


MAX_SEED = 2**32 - 1


def seed(value: str) -> int:
    """--seed: an integer in [0, 2^32)."""
    try:
        x = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if not 0 <= x <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}, got {value}")
    return x


def build_parser() -> argparse.ArgumentParser:
    from streamchar import __version__
    from streamchar.config import PRESETS, SAMPLERS
    from streamchar.cost.gpus import GPUS
    from streamchar.eval.backends import ASR_BACKENDS
    from streamchar.eval.identity import LAYOUTS
    from streamchar.eval.protocols import PROTOCOLS

    presets, samplers = sorted(PRESETS), list(SAMPLERS)
    p = Parser(prog="streamchar", description="Real-time streaming talking-character generation.",
               formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"streamchar {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="stream a character speaking TEXT into an MP4 file")
    g.add_argument("--text", required=True, help="the transcript to speak")
    g.add_argument("--ref-image", required=True, help="reference image of the character")
    g.add_argument("--out", required=True, help="output .mp4 (H.264 + AAC), written atomically")
    g.add_argument("--ref-audio", help="reference voice (any audio file ffmpeg reads)")
    g.add_argument("--prompt", default="a person talking to the camera", help="visual prompt for the DiT")
    g.add_argument("--checkpoint", help="a trained model folder (see StreamChar.save_pretrained)")
    g.add_argument("--preset", default="tiny", choices=presets, help="with --random-init (a checkpoint has its own)")
    g.add_argument("--random-init", action="store_true", help="random weights (no trained model is needed)")
    g.add_argument("--max-seconds", default=None,
                   help="stop after this much video, rounded up to whole 1.375 s chunks (default: the config's, "
                        "600 s; at most a day); the stream ends earlier when the transcript is spoken")
    g.add_argument("--seed", type=seed, default=0, help="seed of the noise (and of --random-init's weights)")
    g.add_argument("--sampler", default=None, choices=samplers,
                   help="the 4-step student or the Euler teacher with guidance (default: the checkpoint's: the "
                        "teacher unless the model is distilled)")
    g.add_argument("--guidance", type=float, nargs=2, metavar=("VIDEO", "AUDIO"),
                   help="the teacher's classifier-free guidance scales (default: the checkpoint's)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the DiT before the stream starts (takes seconds to minutes first)")
    g.add_argument("--timings", help="write per-chunk timings to this JSON file")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    sv = sub.add_parser("serve", help="a live streaming server: HTTP + WebSocket API and a browser player")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (localhost only by default)")
    sv.add_argument("--port", type=int, default=8000, help="TCP port")
    sv.add_argument("--checkpoint", help="a trained model folder or a bundled name")
    sv.add_argument("--random-init", action="store_true", help="random weights (no trained model is needed)")
    sv.add_argument("--preset", default="tiny", choices=presets, help="with --random-init")
    sv.add_argument("--max-sessions", type=int, default=4, help="live sessions at once; more get 429")
    sv.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (WebSocket: the header or ?token=)")
    sv.add_argument("--ref-image", help="the character of sessions that upload none (default: the bundled one)")
    sv.add_argument("--max-lead", type=float, default=4.0,
                    help="seconds a stream may be generated ahead of its playback")
    sv.add_argument("--idle-seconds", type=float, default=60.0, help="unused sessions expire after this long")
    sv.add_argument("--sampler", default=None, choices=samplers,
                    help="the 4-step student or the Euler teacher (default: the checkpoint's: the teacher unless "
                         "the model is distilled)")
    sv.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    sv.set_defaults(func=cmd_serve)

    i = sub.add_parser("info", help="parameter counts of a preset (built on the meta device)")
    i.add_argument("--preset", default="tiny", choices=presets, help="the model size")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("convert", help="assemble a pipeline folder from local Wan2.2 / Qwen2.5 / UMT5 / codec folders")
    c.add_argument("--out", required=True, help="the pipeline folder to write (atomically)")
    c.add_argument("--preset", default="paper", choices=presets, help="defaults for what is not given")
    c.add_argument("--wan", help="Wan2.2 transformer folder (diffusers or original layout)")
    c.add_argument("--qwen", help="Qwen2 / Qwen2.5 folder (config, safetensors, tokenizer)")
    c.add_argument("--text-encoder", help="UMT5 / T5 encoder folder with its tokenizer")
    c.add_argument("--video-vae", help="video codec folder: diffusers AutoencoderKLWan or the tiny video codec")
    c.add_argument("--audio-vae", help="audio codec folder: diffusers AutoencoderOobleck or the tiny audio codec")
    c.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="the dtype the weights are saved in")
    c.add_argument("--overwrite", action="store_true", help="replace an existing folder in --out (once the new "
                                                            "one is complete)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config setting for what no folder defines, e.g. --set dit.dim=192 (repeatable)")
    c.add_argument("--seed", type=seed, default=0, help="seed of the weights no folder gives")
    c.add_argument("--codecs-only", action="store_true",
                   help="write a codecs-only skeleton (config.yaml, video_codec/, audio_codec/) from the two codecs")
    c.add_argument("--card", help="with --codecs-only: a Markdown file saved as the folder's README.md card")
    c.set_defaults(func=cmd_convert)

    k = sub.add_parser("cost", help="per-chunk FLOPs, bytes, latency and memory of a preset on a GPU")
    k.add_argument("--preset", default="paper", choices=presets, help="the model size")
    k.add_argument("--gpu", default="h100", type=str.lower, choices=sorted(GPUS), help="the GPU whose peak rates are used")
    k.add_argument("--gpus", type=int, default=8, help="GPUs for the FSDP training-memory estimate")
    k.add_argument("--json", action="store_true", help="print one JSON object")
    k.set_defaults(func=cmd_cost)

    d = sub.add_parser("data", help="data sets").add_subparsers(dest="dataset", required=True)
    st = d.add_parser("synthtalk", help="generate SynthTalk clips into WebDataset shards")
    st.add_argument("--num", type=int, required=True, help="clips to generate")
    st.add_argument("--out", required=True, help="output folder (created; its parent must exist)")
    st.add_argument("--size", type=int, default=64, help="frame size in pixels (multiple of 16)")
    st.add_argument("--seed", type=seed, default=0, help="seed of the identities, texts and voices")
    st.add_argument("--long", type=int, default=0, help="how many of the clips are long (>= 60 s)")
    st.add_argument("--shard-size", type=int, default=50, help="clips per shard")
    st.add_argument("--workers", type=int, default=None, help="processes (default: the CPU cores)")
    st.add_argument("--quiet", action="store_true", help="no progress bar")
    st.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out (once the new "
                                                             "one is complete)")
    st.set_defaults(func=cmd_data_synthtalk)
    en = d.add_parser("encode", help="SynthTalk shards -> latent shards (video/audio latents, tokens, PAP targets)")
    en.add_argument("--shards", required=True, help="a SynthTalk folder (with index.json)")
    en.add_argument("--out", required=True, help="output folder for the latent shards")
    en.add_argument("--checkpoint", help="a pipeline folder whose codecs and tokenizer encode")
    en.add_argument("--workers", type=int, default=1, help="processes encoding shards side by side (CPU only)")
    en.add_argument("--random-init", action="store_true", help="random codecs of --preset (for tests)")
    en.add_argument("--preset", default="tiny", choices=presets, help="with --random-init")
    en.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    en.add_argument("--quiet", action="store_true", help="no progress bar")
    en.add_argument("--overwrite", action="store_true", help="replace an existing latent folder in --out (once "
                                                             "the new one is complete)")
    en.set_defaults(func=cmd_data_encode)

    e = sub.add_parser("eval", help="score generated videos under the paper's protocols (report, summary, plots)")
    e.add_argument("--videos", required=True, help="folder of <key>.mp4 (+ <key>.txt transcripts, "
                   "<key>.timings.json); with --generate, where the streams are written")
    e.add_argument("--out", required=True, help="report folder: report.json, summary.md, plots/ (written whole at "
                   "the end)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing report folder in --out (once the "
                                                            "new report is complete)")
    e.add_argument("--protocol", default="short", choices=sorted(PROTOCOLS),
                   help="short: 10 s clips; long: 5-minute streams (Quality Drift, windowed WER)")
    e.add_argument("--refs", help="folder of <key>.mp4 ground truth (FID/FVD) and <key>.png reference portraits")
    e.add_argument("--timings", help="folder of <key>.timings.json (default: next to the videos)")
    e.add_argument("--frame-stride", type=int, default=1, help="per-frame metrics on every n-th frame")
    e.add_argument("--fid-frames", type=int, default=16, help="evenly spaced frames per video for FID")
    e.add_argument("--fvd-clips", type=int, default=1, help="16-frame clips per video for FVD")
    e.add_argument("--sync-window", type=float, default=10.0, help="seconds per sync window")
    e.add_argument("--eval-device", default="auto", help="device for the metric networks (auto: cuda if there)")
    weights = e.add_argument_group("weights of the learned metrics (default: the environment variable)")
    for flag, env, what in (("--inception", "STREAMCHAR_INCEPTION", "FID: inception-2015-12-05.pt"),
                            ("--i3d", "STREAMCHAR_I3D", "FVD: i3d_torchscript.pt"),
                            ("--syncnet", "STREAMCHAR_SYNCNET", "Sync-C/D: syncnet_v2.model"),
                            ("--face-detector", "STREAMCHAR_FACE_DETECTOR", "face boxes: YuNet ONNX"),
                            ("--face-embedder", "STREAMCHAR_FACE_EMBEDDER", "identity: TorchScript face embedder"),
                            ("--musiq", "STREAMCHAR_MUSIQ", "imaging quality: MUSIQ TorchScript"),
                            ("--raft", "STREAMCHAR_RAFT", "dynamic degree: RAFT TorchScript"),
                            ("--whisper", "STREAMCHAR_WHISPER", "WER: a Whisper folder")):
        weights.add_argument(flag, help=f"{what} (${env})")
    e.add_argument("--asr", default="auto", choices=list(ASR_BACKENDS),
                   help="WER backend (auto: --whisper if given, else the bundled SynthTalk judge, else pocketsphinx; "
                        "EMTD items: pocketsphinx)")
    e.add_argument("--judge", help="a speech judge folder (default: the bundled one)")
    e.add_argument("--score-truth", action="store_true",
                   help="score the true held-out clips of --data / --emtd themselves (the ceiling row)")
    weights.add_argument("--face-embedder-layout", default="arcface112", choices=sorted(LAYOUTS),
                         help="the face embedder's input convention")
    gen = e.add_argument_group("generation (--generate)")
    gen.add_argument("--generate", action="store_true", help="first stream the protocol's items into --videos")
    gen.add_argument("--checkpoint", help="a trained model folder")
    gen.add_argument("--random-init", action="store_true", help="random weights (tests the pipeline only)")
    gen.add_argument("--preset", default="tiny", choices=presets, help="with --random-init")
    gen.add_argument("--data", help="a SynthTalk folder: its held-out test split gives the items")
    gen.add_argument("--emtd", help="an EMTD-layout folder (<name>.mp4 + <name>.txt) gives the items")
    gen.add_argument("--limit", type=int, help="at most this many items (default: the protocol's number)")
    gen.add_argument("--seconds", default=None, help="stream length (default: the protocol's)")
    gen.add_argument("--sampler", default=None, choices=samplers,
                     help="default: the checkpoint's (the teacher unless the model is distilled)")
    gen.add_argument("--guidance", type=float, nargs=2, metavar=("VIDEO", "AUDIO"),
                     help="the teacher's guidance scales (default: the checkpoint's)")
    gen.add_argument("--seed", type=seed, default=0, help="seed of the item choice and of the noise")
    gen.add_argument("--device", default="auto", help="device for generation")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_eval)

    ec = sub.add_parser("eval-codecs", help="round-trip held-out SynthTalk clips through a pipeline's codecs")
    ec.add_argument("--data", required=True, help="a SynthTalk folder (its test split)")
    ec.add_argument("--checkpoint", default="tiny-codecs", help="a pipeline folder or a bundled name")
    ec.add_argument("--clips", type=int, default=16, help="held-out clips")
    ec.add_argument("--chunks", type=int, default=2, help="whole 33-frame chunks per clip for PSNR / SSIM")
    ec.add_argument("--split", default="test", choices=["train", "val", "test"], help="which SynthTalk split")
    ec.add_argument("--judge", help="a speech judge folder (default: the bundled one, else pocketsphinx)")
    ec.add_argument("--device", default="cpu", help="device for the codecs")
    ec.add_argument("--json", action="store_true", help="print one JSON object")
    ec.set_defaults(func=cmd_eval_codecs)

    t = sub.add_parser("train", help="training stages (single process, or under torchrun)").add_subparsers(
        dest="command_name", required=True)
    for name, func, what in (("codec-video", cmd_train_codec, "the tiny video VAE on SynthTalk clips"),
                             ("codec-audio", cmd_train_codec, "the tiny audio codec on SynthTalk speech"),
                             ("asr-judge", cmd_train_asr_judge, "the SynthTalk speech judge (WER) on true speech"),
                             ("pretrain", cmd_train_pretrain, "flow-matching pretraining on latent shards"),
                             ("distill-dmd", cmd_train_distill_dmd,
                              "Stage I: DMD step distillation of the teacher into the 4-step student"),
                             ("distill-rollout", cmd_train_distill_rollout,
                              "Stage II: online-rollout distillation with the pointer and the sink")):
        tp = t.add_parser(name, help=what)
        tp.add_argument("--config", help="YAML config (default: the tiny one in configs/)")
        tp.add_argument("--data", help="override the config's data folder")
        tp.add_argument("--out-dir", help="override train.out_dir (checkpoints, metrics, the result)")
        tp.add_argument("--steps", type=int, help="override train.steps")
        tp.add_argument("--overwrite", action="store_true", help="start over: delete what --out-dir holds (an "
                        "earlier run there resumes without it; a folder that holds no run is refused)")
        if name == "pretrain":
            tp.add_argument("--stage", type=int, choices=[1, 2], help="1: speech alone; 2: joint audio-video")
            tp.add_argument("--init", help="override init: a pipeline folder to start from (e.g. stage 1's final)")
        if name == "distill-dmd":
            tp.add_argument("--init", help="override init: the teacher (a pipeline folder or a bundled name)")
        if name == "distill-rollout":
            tp.add_argument("--init", help="override init: the student to start from (Stage I's final; the "
                            "teacher's folder skips Stage I, an ablation)")
            tp.add_argument("--teacher", help="override teacher: the real score (a pipeline folder or a bundled name)")
            tp.add_argument("--no-sink", action="store_true", help="ablation: no sink chunk (the student streams "
                            "without one too)")
            tp.add_argument("--one-chunk", action="store_true", help="ablation: isolated chunks (K = window = 1)")
        tp.set_defaults(func=func)
    _show_defaults(p)
    return p


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's help shows the options' defaults."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StreamCharError as e:
        print(f"streamchar: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("streamchar: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
