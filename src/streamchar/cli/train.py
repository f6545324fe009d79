"""Training: `train codec-video|codec-audio|asr-judge|pretrain|distill-dmd|distill-rollout`."""

from __future__ import annotations

import json

from streamchar.cli.options import model_folder, print_report, train_overrides
from streamchar.configs import resolve_config
from streamchar.errors import StreamCharError


def cmd_train_codec(args) -> int:
    from streamchar.train.codec import CodecTrainConfig, run_codec_training

    kind = args.command_name.removeprefix("codec-")
    cfg = train_overrides(CodecTrainConfig.from_yaml(resolve_config(args.config or f"codec_{kind}_tiny")), args)
    if cfg.kind != kind:
        raise StreamCharError(f"{args.command_name} needs a config with kind: {kind}, got {cfg.kind!r}")
    report = run_codec_training(cfg)
    skip = ("codec", "losses", "transcripts", "latents_mean", "latents_std")
    print(json.dumps({k: v for k, v in report.items() if k not in skip}, indent=2))
    return 0


def cmd_train_asr_judge(args) -> int:
    from streamchar.train.asr_judge import JudgeTrainConfig, run_judge_training

    cfg = train_overrides(JudgeTrainConfig.from_yaml(resolve_config(args.config or "asr_judge_tiny")), args)
    report = run_judge_training(cfg)
    print(json.dumps({k: v for k, v in report.items() if k not in ("judge", "losses")}, indent=2))
    return 0


def cmd_train_pretrain(args) -> int:
    from streamchar.train.pretrain import PretrainConfig, run_pretrain

    cfg = PretrainConfig.from_yaml(resolve_config(args.config or "pretrain_tiny"))
    if args.stage is not None:
        cfg.stage = args.stage
    if args.init is not None:
        cfg.init = str(model_folder(args.init, "--init"))
    return print_report(run_pretrain(train_overrides(cfg, args)))


def cmd_train_distill_dmd(args) -> int:
    from streamchar.train.distill_dmd import DMDConfig, run_distill_dmd

    cfg = DMDConfig.from_yaml(resolve_config(args.config or "distill_dmd_tiny"))
    if args.init is not None:
        cfg.init = str(model_folder(args.init, "--init"))
    return print_report(run_distill_dmd(train_overrides(cfg, args)))


def cmd_train_distill_rollout(args) -> int:
    from streamchar.train.distill_rollout import RolloutConfig, run_distill_rollout

    cfg = RolloutConfig.from_yaml(resolve_config(args.config or "distill_rollout_tiny"))
    if args.init is not None:
        cfg.init = str(model_folder(args.init, "--init"))
    if args.teacher is not None:
        cfg.teacher = str(model_folder(args.teacher, "--teacher"))
    cfg.sink = False if args.no_sink else cfg.sink
    cfg.one_chunk = cfg.one_chunk or args.one_chunk
    return print_report(run_distill_rollout(train_overrides(cfg, args)))


def add_commands(sub) -> None:
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
        tp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, YAML value (repeatable): --set noise_draws=8 --set train.lr=1e-4")
        tp.add_argument("--overwrite", action="store_true", help="start over: delete what --out-dir holds (an "
                        "earlier run there resumes without it; a folder that holds no run is refused)")
        if name == "pretrain":
            tp.add_argument("--stage", type=int, choices=[1, 2], help="1: speech alone; 2: joint audio-video")
            tp.add_argument("--init", help="override init: a pipeline folder or a bundled name to start from (e.g. stage 1's final, tiny-stage1)")
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
