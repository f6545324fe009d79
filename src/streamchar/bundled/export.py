"""Put a trained pipeline folder into the bundle, lean: its codecs shared with `tiny-codecs` when they are the same.

    python -m streamchar.bundled.export runs/tiny/stage2/final tiny-teacher --card card.md

The bundle must stay small (~100 MB in all), and every tiny pipeline trained here encodes with the bundled
codecs: a copy of them in each bundled pipeline would be 26 MB of duplicates. So the exported folder keeps
its own DiT, orchestrator, tokenizer, prompt encoder and config, and its model_index.json points the codecs
at `../tiny-codecs/` (pipeline.component_paths), after checking that their weights are the same bytes' worth
(the codecs' fingerprint, as latent folders record it). Different codecs are copied in instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from streamchar.atomic import atomic_folder
from streamchar.bundled import ROOT
from streamchar.errors import StreamCharError

CODECS = ("video_codec", "audio_codec")


def export_pipeline(src: str | Path, name: str, card: str, share: str = "tiny-codecs", root: Path = ROOT) -> Path:
    """Copy pipeline folder `src` to `root/name` with `card` as its README.md; codecs shared with `root/share`
    when equal. -> the new folder (written whole, replacing an earlier one)."""
    from streamchar.codecs.load import load_pipeline_codecs
    from streamchar.data.latents import codec_fingerprint
    from streamchar.pipeline import component_paths

    src = Path(src)
    where = component_paths(src)  # checks that src is a whole pipeline folder
    if not card.strip():
        raise StreamCharError("a bundled model needs a card (how it was trained, its metrics)")
    def fingerprint(folder: Path) -> str:
        video, audio, _ = load_pipeline_codecs(folder)
        return codec_fingerprint(SimpleNamespace(video_codec=video, audio_codec=audio))

    shared = (root / share / "model_index.json").is_file() and fingerprint(src) == fingerprint(root / share)
    dest = root / name
    with atomic_folder(dest) as tmp:
        index = json.loads((src / "model_index.json").read_text())
        for component, path in where.items():
            if shared and component in CODECS:
                index[component]["path"] = f"../{share}/{component}"
                continue
            shutil.copytree(path, tmp / component)
            index[component]["path"] = component
        shutil.copy(src / "config.yaml", tmp / "config.yaml")
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
        (tmp / "README.md").write_text(card.rstrip() + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="a trained pipeline folder")
    p.add_argument("name", help="the bundled name (a folder under streamchar/bundled/)")
    p.add_argument("--card", required=True, help="a Markdown file: how it was trained, its metrics")
    p.add_argument("--share", default="tiny-codecs", help="the bundled folder whose codecs to share")
    args = p.parse_args(argv)
    out = export_pipeline(args.src, args.name, Path(args.card).read_text(), share=args.share)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
