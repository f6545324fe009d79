"""Models that ship inside the package, by name: a name works wherever a checkpoint folder is accepted.

    judge         the SynthTalk speech judge (eval/judge.py), WER for SynthTalk speech
    tiny-codecs   a pipeline skeleton with the trained tiny codecs (video_codec/, audio_codec/, config.yaml);
                  the trained DiT and orchestrator join it in later releases
    tiny-stage1   the tiny pipeline after pretraining stage 1 (speech only: its video side is random), what
                  stage 2 of scripts/train_tiny.sh starts from; its codecs are tiny-codecs' (shared, not copied)
    tiny-teacher  the tiny teacher: the pipeline after pretraining stage 2 (speech + video, 11,000 steps from
                  tiny-stage1), streamed with the 50-step guided sampler; what distillation starts from. Its
                  card: judge WER 0.40 and sync offset 2.4 frames on held-out streams, short of issue 11's bar
    tiny-dmd      the 4-step student after Stage I (DMD) from tiny-teacher: what Stage II starts from, an
                  intermediate kept so a reset machine loses at most one stage (not the default character)
    tiny          the default character: the 4-step student after Stage II (online rollout) from tiny-dmd,
                  what `streamchar generate`, `serve` and `demo` stream without --checkpoint

Each folder holds final weights only (safetensors) and a card saying how it was trained. `CHARACTER` is the
bundled character's portrait (the demo's and the server's default reference image).
"""

from __future__ import annotations

from pathlib import Path

from streamchar.errors import StreamCharError

ROOT = Path(__file__).resolve().parent
CHARACTER = ROOT / "character.png"
DEFAULT = "tiny"  # what `generate`, `serve` and `demo` stream without --checkpoint


def bundled_names() -> list[str]:
    """The names of the bundled folders present in this install."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def resolve_checkpoint(value: str | Path, option: str = "--checkpoint") -> Path:
    """A folder path as given, or the bundled folder of that name. Errors name the value and the choices."""
    path = Path(value)
    if path.is_dir():
        return path
    if path.exists():
        raise StreamCharError(f"{option} {value} is a file: give a model folder or a bundled name")
    if str(value) in bundled_names():
        return ROOT / str(value)
    names = ", ".join(bundled_names()) or "none in this install"
    raise StreamCharError(f"{option} {value}: no such folder, and not a bundled model (bundled: {names})")
