"""What several commands share: option checks, the model folder, the training overrides, the JSON summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamchar.errors import StreamCharError
from streamchar.paths import input_folder, run_folder

NO_MODEL = ("no trained model is bundled in this install (the default `tiny` is missing): pass --checkpoint DIR for "
            "a trained one, or --random-init to stream with random weights")

MAX_STREAM_SECONDS = 24 * 3600.0  # --max-seconds accepts up to a day of video
MAX_SEED = 2**32 - 1


def positive(value: str, option: str = "--max-seconds", upper: float = MAX_STREAM_SECONDS) -> float:
    try:
        x = float(value)
    except ValueError:
        raise StreamCharError(f"{option} must be a number, got {value!r}") from None
    if not x > 0 or x != x or x == float("inf"):
        raise StreamCharError(f"{option} must be > 0, got {value}")
    if x > upper:
        raise StreamCharError(f"{option} must be at most {upper:g} s (a day of video), got {value}")
    return x


def seed(value: str) -> int:
    """--seed: an integer in [0, 2^32)."""
    try:
        x = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if not 0 <= x <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}, got {value}")
    return x


def model_folder(value: str, option: str = "--checkpoint") -> Path:
    """--checkpoint / --init: a folder, or a bundled name; a codecs-only skeleton cannot generate."""
    from streamchar.bundled import resolve_checkpoint

    path = resolve_checkpoint(value, option)
    if (path / "video_codec").is_dir() and not (path / "dit").is_dir():
        raise StreamCharError(f"{option} {value} holds the codecs only (no trained DiT / orchestrator yet): "
                              "use it with `streamchar eval-codecs` or `convert --video-vae/--audio-vae`")
    return path


def stream_model(args) -> Path | None:
    """generate / serve / demo: the model folder to stream, or None for --random-init. Without --checkpoint it is
    the bundled default character (`streamchar.bundled.DEFAULT`)."""
    from streamchar.bundled import DEFAULT, bundled_names

    if args.checkpoint is not None and args.random_init:
        raise StreamCharError("--checkpoint and --random-init exclude each other: choose one")
    if args.random_init:
        return None
    if args.checkpoint is None:
        if DEFAULT not in bundled_names():
            raise StreamCharError(NO_MODEL)
        args.checkpoint = DEFAULT
    return model_folder(args.checkpoint)


def train_overrides(cfg, args):
    """--set KEY=VALUE, --data / --out-dir / --steps override the YAML; the config is validated again, and the
    run's folder is checked: a new one, or an earlier run of this command, which resumes (--overwrite starts over)."""
    if getattr(args, "set", None):
        cfg = cfg.override(args.set)
    if args.data is not None:
        cfg.data = str(input_folder(args.data, "--data"))
    if args.out_dir is not None:
        cfg.train.out_dir = args.out_dir
    if args.steps is not None:
        cfg.train.steps = args.steps
    cfg = cfg.validate()
    run_folder(cfg.train.out_dir, "--out-dir" if args.out_dir is not None else "train.out_dir", args.overwrite)
    return cfg


def print_report(report: dict) -> int:
    """A training command's summary as JSON on stdout (the loss curve is in metrics.jsonl)."""
    print(json.dumps({k: v for k, v in report.items() if k != "losses"}, indent=2, default=str))
    return 0
