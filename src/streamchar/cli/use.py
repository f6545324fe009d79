"""Using a model: `generate` (a stream into a file), `serve` (live), `info`, `convert`, `cost`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streamchar.cli.options import positive, seed, stream_model
from streamchar.config import SOLVERS
from streamchar.errors import StreamCharError
from streamchar.paths import input_file, input_folder, output_file, output_folder


def cmd_generate(args) -> int:
    if not args.text or not args.text.strip():
        raise StreamCharError("--text is empty: give some text to speak")
    max_seconds = positive(args.max_seconds) if args.max_seconds is not None else None
    if args.guidance is not None and not all(0 < g < float("inf") for g in args.guidance):
        raise StreamCharError(f"--guidance takes two scales > 0 (video, audio), got {args.guidance}")
    out = output_file(args.out, "--out")
    timings = output_file(args.timings, "--timings") if args.timings else None
    if args.random_init and args.preset == "paper":
        raise StreamCharError("--random-init builds the tiny preset only: the paper preset needs the Wan2.2 VAE "
                              "and the Oobleck VAE from your disk; assemble them with `streamchar convert --preset "
                              "paper --video-vae ... --audio-vae ...` and pass the result as --checkpoint")
    args.checkpoint = stream_model(args)  # a folder; without --checkpoint the bundled default; None: random
    if args.ref_image is None:
        from streamchar.bundled import CHARACTER

        args.ref_image = str(CHARACTER)
    for option, path in (("--ref-image", args.ref_image), ("--ref-audio", args.ref_audio)):
        if path is not None:
            input_file(path, option)

    from streamchar.config import StreamCharConfig, preset
    from streamchar.device import inference_dtype, pick_device
    from streamchar.pipeline import StreamChar
    from streamchar.streaming.generate import stream_to_file, write_json
    from streamchar.streaming.media import load_audio, load_image
    from streamchar.streaming.session import PACE_RANGE, StreamSession

    if args.pace is not None and not PACE_RANGE[0] <= args.pace <= PACE_RANGE[1]:
        raise StreamCharError(f"--pace must be in [{PACE_RANGE[0]}, {PACE_RANGE[1]}] (1 = the training voices' mean, "
                              f"> 1 slower), got {args.pace}")
    device = pick_device(args.device)
    cfg = StreamCharConfig.from_yaml(Path(args.checkpoint) / "config.yaml") if args.checkpoint else preset(args.preset)
    ref_image = load_image(args.ref_image, cfg.video.height, cfg.video.width)  # inputs first: fail before building
    if args.ref_text is not None and args.ref_audio is None:
        raise StreamCharError("--ref-text is what --ref-audio says: give --ref-audio with it")
    # with --ref-text the whole file is read (its pace is measured over all that the text says); e_ref keeps 15 s
    ref_audio = (load_audio(args.ref_audio, cfg.audio.sample_rate, cfg.audio.channels,
                            None if args.ref_text else cfg.stream.history_seconds) if args.ref_audio else None)
    if args.checkpoint is not None:
        model = StreamChar.from_pretrained(args.checkpoint, device=device)
    else:
        print(f"streamchar: streaming with RANDOM weights (--random-init, preset {args.preset}): the output is "
              "noise, not a character", file=sys.stderr)
        model = StreamChar.from_config(cfg, seed=args.seed).to(device)
    model = model.to(inference_dtype(device, model.cfg.dit.dim))
    compile_s = None
    if args.compile:  # the per-step noisy pass, compiled before the stream starts (one shape for every chunk)
        import time

        t0 = time.perf_counter()
        model.dit.compile()
        warm_up = StreamSession(model, text="warm up", ref_image=ref_image, max_seconds=2 * cfg.chunk_seconds,
                                stop_at_end=False, sampler=args.sampler, guidance=args.guidance, solver=args.solver)
        for _ in warm_up.chunks():  # the stream's own path (its thread count): no recompile once it starts
            pass
        compile_s = time.perf_counter() - t0
        print(f"streamchar: compiled the DiT in {compile_s:.1f} s", file=sys.stderr)
    session = StreamSession(model, text=args.text, ref_image=ref_image, ref_audio=ref_audio, ref_text=args.ref_text,
                            pace=args.pace, prompt=args.prompt,
                            seed=args.seed, max_seconds=max_seconds, sampler=args.sampler, guidance=args.guidance,
                            solver=args.solver)
    report = stream_to_file(session, out, progress=not args.quiet)
    report["compile_s"] = compile_s
    report.update(device=str(device), preset=model.cfg.preset, sampler=session.sampler, guidance=session.guidance,
                  pace=session.pace,
                  solver=session.solver, checkpoint=None if args.checkpoint is None else str(args.checkpoint),
                  random_init=args.checkpoint is None)
    if timings is not None:
        write_json(report, timings)
    print(f"streamchar: wrote {out} ({report['chunks']} chunks, {report['seconds']:.3f} s, real-time factor "
          f"{report['rtf_steady']:.2f} after a first chunk of {report['first_chunk_s']:.2f} s, on {device})",
          file=sys.stderr)
    return 0


DEMO_TEXT = ("Hello! I am a streaming character. Every chunk of my speech and video is generated together, "
             "faster than you can watch it.")


def cmd_demo(args) -> int:
    """`generate` with everything defaulted: the bundled character speaks DEMO_TEXT into --out."""
    return cmd_generate(args)


def cmd_serve(args) -> int:
    """The live server: the model loaded once, sessions streamed by one worker."""
    if not 1 <= args.port <= 65535:
        raise StreamCharError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_sessions < 1:
        raise StreamCharError(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if args.token is not None and not args.token.strip():
        raise StreamCharError("--token is empty: give a secret, or leave the option out")
    folder = stream_model(args)  # without --checkpoint the bundled default; None: random weights
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
    if folder is not None:
        model = StreamChar.from_pretrained(folder, device=device)
    else:
        print(f"streamchar: serving RANDOM weights (--random-init, preset {args.preset}): the streams are noise, "
              "not a character", file=sys.stderr)
        model = StreamChar.from_config(preset(args.preset), seed=0).to(device)
    model = model.to(inference_dtype(device, model.cfg.dit.dim)).eval()
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


def stream_options(g, presets: list[str], samplers: list[str]) -> None:
    """The model, reference, sampler and output options `generate` and `demo` share."""
    from streamchar.bundled import DEFAULT

    g.add_argument("--ref-image", default=None, help="reference image of the character: a portrait, ideally "
                   "cropped like SynthTalk's (default: the bundled character)")
    g.add_argument("--ref-audio", help="reference voice (any audio file ffmpeg reads; its first 15 s are its timbre)")
    g.add_argument("--ref-text", help="what --ref-audio says: the stream then speaks at that voice's pace")
    g.add_argument("--pace", type=float, default=None,
                   help="every planned duration times this (1 = the training voices' mean, 1.2 = 20%% slower; "
                        "default: --ref-audio's pace with --ref-text, else 1)")
    g.add_argument("--prompt", default="a person talking to the camera", help="visual prompt for the DiT")
    g.add_argument("--checkpoint", help=f"a trained model folder or a bundled name (default: the bundled {DEFAULT})")
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
    g.add_argument("--solver", default=None, choices=SOLVERS,
                   help="the teacher's rule: Euler, ancestral or renoise (default: the checkpoint's stream.teacher_solver)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the DiT before the stream starts (takes seconds to minutes first)")
    g.add_argument("--timings", help="write per-chunk timings to this JSON file")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_commands(sub, presets: list[str], samplers: list[str]) -> None:
    from streamchar.cost.gpus import GPUS

    g = sub.add_parser("generate", help="stream a character speaking TEXT into an MP4 file")
    g.add_argument("--text", required=True, help="the transcript to speak")
    g.add_argument("--out", required=True, help="output .mp4 (H.264 + AAC), written atomically")
    stream_options(g, presets, samplers)
    g.set_defaults(func=cmd_generate)

    d = sub.add_parser("demo", help="the bundled character speaks a short text into demo.mp4 (generate, defaulted)")
    d.add_argument("--text", default=DEMO_TEXT, help="the transcript to speak (default: a short introduction)")
    d.add_argument("--out", default="demo.mp4", help="output .mp4 (H.264 + AAC), written atomically")
    stream_options(d, presets, samplers)
    d.set_defaults(func=cmd_demo, max_seconds="30")  # a cap in case the pointer never reaches the end

    sv = sub.add_parser("serve", help="a live streaming server: HTTP + WebSocket API and a browser player")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (localhost only by default)")
    sv.add_argument("--port", type=int, default=8000, help="TCP port")
    sv.add_argument("--checkpoint", help="a trained model folder or a bundled name (default: the bundled tiny)")
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
