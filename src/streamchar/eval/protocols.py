"""The paper's two evaluation protocols (§5.2) and the items they run on.

    short   150 clips, 10 s each, generated from each clip's own transcript and first frame (a clip longer
            than 10 s, as most SynthTalk test clips are, is streamed until its transcript is spoken, up to its
            own length plus two chunks: `generate.stream_cap`)
    long     50 streams of 5 minutes, each from a randomly drawn transcript of > 300 words

An `EvalItem` is what one generation needs (a transcript and a reference frame) plus what scoring needs
(the ground-truth clip, when there is one, for FID / FVD). Two sources:

- SynthTalk (default): the held-out `test` split, whose sentences and characters training never saw.
  short: the test clips themselves (first frame + transcript; the clip is the ground truth). long: the test
  clips' first frames with transcripts of held-out sentences drawn from the corpus (seeded), long enough
  for the stream (>= 300 words and >= 2.6 words per second of it).
- EMTD layout, for users who have the data: a folder of `<name>.mp4` clips, each with its transcript in
  `<name>.txt` (the first frame is the reference). The long protocol draws its transcripts from
  `<folder>/long_transcripts/*.txt` if present, else joins the clips' transcripts (seeded) up to the length.

With `ref_voice` (SynthTalk, `streamchar eval --generate --ref-voice`), each item also gets a reference voice: another
held-out clip of the same espeak voice (its soundtrack and its text: the paper's "reference audio/text"), so the
stream has the voice's timbre and speaks at its pace (models/timeline.py).

When a source has fewer items than the protocol asks for, the report says so (`items` < `num`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamchar.errors import StreamCharError

WORDS_PER_SECOND = 2.6  # speaking rate used only to size long transcripts (espeak-ng ~160 wpm)


@dataclass(frozen=True)
class Protocol:
    name: str
    num: int  # items the paper uses
    seconds: float  # length of each generated stream
    min_words: int  # transcripts at least this long (long protocol)
    wer_window: float  # seconds per transcription window (long streams are transcribed window by window)
    drift: bool  # Quality Drift is reported (needs >= 30 s)


PROTOCOLS = {
    "short": Protocol("short", num=150, seconds=10.0, min_words=0, wer_window=30.0, drift=False),
    "long": Protocol("long", num=50, seconds=300.0, min_words=300, wer_window=20.0, drift=True),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise StreamCharError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclass
class EvalItem:
    key: str
    transcript: str
    reference: np.ndarray  # (H, W, 3) uint8: the first frame
    truth: Path | bytes | None = None  # the ground-truth clip (a file or MP4 bytes), None for long streams
    meta: dict = field(default_factory=dict)
    prompt: str = ""  # the visual prompt it is streamed with (SynthTalk: its character's caption)
    ref_voice: Path | bytes | None = None  # a clip whose soundtrack is the reference voice (`--ref-voice`)
    ref_text: str | None = None  # what that soundtrack says (the stream speaks at its pace)


def _first_frame(source) -> np.ndarray:
    import av

    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as c:
        for frame in c.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise StreamCharError(f"no video frame in {source if not isinstance(source, bytes) else 'a clip'}")


def _long_transcript(pool: list[str], protocol: Protocol, rng: np.random.Generator) -> str:
    need = max(protocol.min_words, int(protocol.seconds * WORDS_PER_SECOND))
    words, out = 0, []
    for i in rng.permutation(len(pool)).tolist() * (need // max(1, sum(len(s.split()) for s in pool)) + 1):
        out.append(pool[i])
        words += len(pool[i].split())
        if words >= need:
            return " ".join(out)
    raise StreamCharError(f"cannot build a {need}-word transcript from {len(pool)} texts")


def _same_voice(clips: list, i: int) -> tuple[str, bytes, dict] | None:
    """The clip after clips[i] (cyclically) spoken by the same voice, None when no other clip has it."""
    voice = clips[i][2]["voice"]["index"]
    for j in list(range(i + 1, len(clips))) + list(range(i)):
        if clips[j][2]["voice"]["index"] == voice:
            return clips[j]
    return None


def synthtalk_items(folder: str | Path, protocol: Protocol, split: str = "test", seed: int = 0,
                    limit: int | None = None, ref_voice: bool = False) -> list[EvalItem]:
    """Items of `protocol` from a SynthTalk folder's `split` (see the module docstring); with `ref_voice`, each
    with another clip of its voice as the reference voice."""
    from streamchar.data import corpus
    from streamchar.data.identity import IDENTITIES, caption
    from streamchar.data.synthtalk import read_shard

    folder = Path(folder)
    index_file = folder / "index.json"
    if not index_file.is_file():
        raise StreamCharError(f"{folder} is not a SynthTalk folder (no index.json)")
    names = json.loads(index_file.read_text())["shards"].get(split, [])
    if not names:
        raise StreamCharError(f"the SynthTalk folder {folder} has no {split!r} clips")
    n = min(protocol.num, limit or protocol.num)
    clips = [(key, mp4, meta) for name in names for key, mp4, meta in read_shard(folder / name)]
    items = []
    if ref_voice and any("voice" not in meta for _, _, meta in clips):
        raise StreamCharError(f"the SynthTalk folder {folder} has clips without a voice label: --ref-voice needs it")

    def voice_of(i: int) -> dict:
        other = _same_voice(clips, i) if ref_voice else None
        if ref_voice and other is None:
            raise StreamCharError(f"clip {clips[i][0]} is the only {split!r} clip of its voice: no reference voice")
        return {} if other is None else dict(ref_voice=other[1], ref_text=other[2]["text"], ref_key=other[0])

    if protocol.name == "short":
        for i, (key, mp4, meta) in enumerate(clips[:n]):
            ref = voice_of(i)
            items.append(EvalItem(key, meta["text"], _first_frame(mp4), truth=mp4,
                                  meta={"identity": meta["identity"], "duration": meta["duration"],
                                        "speech_end": meta["words"][-1]["end"] if meta.get("words") else None,
                                        "ref_key": ref.pop("ref_key", None)},
                                  prompt=caption(IDENTITIES[meta["identity"]]), **ref))
        return items
    need = max(protocol.min_words, int(protocol.seconds * WORDS_PER_SECOND))
    for i in range(n):
        key, mp4, meta = clips[i % len(clips)]
        text = corpus.transcript(split, need, seed=seed * 1000 + i)
        ref = voice_of(i % len(clips))
        items.append(EvalItem(f"long-{i:03d}-{key}", text, _first_frame(mp4), truth=None,
                              meta={"identity": meta["identity"], "words": len(text.split()),
                                    "ref_key": ref.pop("ref_key", None)},
                              prompt=caption(IDENTITIES[meta["identity"]]), **ref))
    return items


def emtd_items(folder: str | Path, protocol: Protocol, seed: int = 0, limit: int | None = None) -> list[EvalItem]:
    """Items of `protocol` from an EMTD-layout folder: `<name>.mp4` + `<name>.txt`."""
    folder = Path(folder)
    videos = sorted(folder.glob("*.mp4"))
    if not videos:
        raise StreamCharError(f"no .mp4 clips in {folder} (the EMTD layout is <name>.mp4 + <name>.txt)")
    missing = [v.name for v in videos if not v.with_suffix(".txt").is_file()]
    if missing:
        raise StreamCharError(f"clips without a transcript (<name>.txt) in {folder}: {missing[:5]}")
    n = min(protocol.num, limit or protocol.num)
    texts = [v.with_suffix(".txt").read_text().strip() for v in videos]
    if protocol.name == "short":
        return [EvalItem(v.stem, t, _first_frame(v), truth=v) for v, t in zip(videos[:n], texts[:n])]
    extra = sorted((folder / "long_transcripts").glob("*.txt"))
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        v = videos[i % len(videos)]
        text = extra[i % len(extra)].read_text().strip() if extra else _long_transcript(texts, protocol, rng)
        items.append(EvalItem(f"long-{i:03d}-{v.stem}", text, _first_frame(v), truth=None,
                              meta={"words": len(text.split())}))
    return items
