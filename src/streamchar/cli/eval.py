"""Measuring: `eval` (the paper's protocols, optionally generating first) and `eval-codecs`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streamchar.cli.options import model_folder, positive, seed
from streamchar.config import SOLVERS
from streamchar.errors import StreamCharError
from streamchar.paths import input_folder, output_folder


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
    if args.ref_voice and not args.generate:
        raise StreamCharError("--ref-voice is what the streams are generated with: add --generate")
    if args.generate:
        if (args.checkpoint is None) == (not args.random_init):
            raise StreamCharError("--generate needs the model: --checkpoint DIR (trained) or --random-init")
        if args.score_truth:
            raise StreamCharError("--generate and --score-truth exclude each other: the truth is not generated")
        if args.checkpoint is not None:
            args.checkpoint = model_folder(args.checkpoint)
        if (args.data is None) == (args.emtd is None):
            raise StreamCharError("--generate needs the items: --data SYNTHTALK_DIR or --emtd DIR (one of them)")
        if args.limit is not None and args.limit < 1:
            raise StreamCharError(f"--limit must be >= 1, got {args.limit}")
        seconds = positive(args.seconds, "--seconds") if args.seconds is not None else None
        if args.ref_voice and args.data is None:
            raise StreamCharError("--ref-voice takes another clip of each item's voice: it needs --data (SynthTalk's "
                                  "voice labels)")
        items = (synthtalk_items(args.data, protocol, seed=args.seed, limit=args.limit, ref_voice=args.ref_voice)
                 if args.data else emtd_items(args.emtd, protocol, seed=args.seed, limit=args.limit))
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
        model = model.to(inference_dtype(device, model.cfg.dit.dim))
        done = generate_items(model, items, protocol, Path(args.videos), refs, seconds=seconds, sampler=args.sampler,
                              seed=args.seed, guidance=args.guidance, solver=args.solver,
                              progress=not args.quiet)
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


def add_commands(sub, presets: list[str], samplers: list[str]) -> None:
    from streamchar.eval.backends import ASR_BACKENDS
    from streamchar.eval.identity import LAYOUTS
    from streamchar.eval.protocols import PROTOCOLS

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
    gen.add_argument("--solver", default=None, choices=SOLVERS,
                     help="the teacher's rule: Euler, ancestral or renoise (default: the checkpoint's stream.teacher_solver)")
    gen.add_argument("--ref-voice", action="store_true",
                     help="SynthTalk: give each stream another held-out clip of its voice as the reference voice "
                          "and its text (the voice's timbre and pace)")
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
