"""Data sets: `data synthtalk` (generate SynthTalk) and `data encode` (clips -> latent shards)."""

from __future__ import annotations

import json
import sys

from streamchar.cli.options import model_folder, seed
from streamchar.errors import StreamCharError
from streamchar.paths import input_folder, output_folder


def cmd_data_synthtalk(args) -> int:
    from streamchar.atomic import atomic_folder
    from streamchar.data.synthtalk import generate

    out = output_folder(args.out, "--out", args.overwrite)
    with atomic_folder(out) as tmp:  # a stopped run leaves nothing; --overwrite replaces the old set when done
        summary = generate(tmp, args.num, seed=args.seed, size=args.size, long=args.long,
                           shard_size=args.shard_size, workers=args.workers, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
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
        args.checkpoint = model_folder(args.checkpoint)
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


def add_commands(sub, presets: list[str]) -> None:
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
