"""`eval --generate`'s streams with a reference voice: its timbre and its pace, recorded in the timings."""

import io
import json
import wave

import numpy as np

from streamchar.config import tiny
from streamchar.eval.generate import generate_items
from streamchar.eval.protocols import EvalItem, get_protocol
from streamchar.pipeline import StreamChar

REF_TEXT = "a reference voice says these words"


def test_an_item_with_a_reference_voice_streams_at_its_pace(tmp_path):
    model = StreamChar.from_config(tiny(), seed=0)
    cfg = model.cfg
    ids = model.tokenizer(REF_TEXT, add_special_tokens=False)["input_ids"]
    seconds = 1.25 * float(model.orchestrator.token_durations[ids].sum()) / cfg.audio_latent_rate
    sr = 16000  # any rate: the stream resamples it
    burst = 0.3 * np.random.default_rng(0).uniform(-1, 1, round(seconds * sr))
    samples = (np.concatenate([np.zeros(sr // 2), burst, np.zeros(sr // 2)]) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:  # a WAV file's bytes, as SynthTalk's clips are MP4 bytes
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(samples.tobytes())
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    items = [EvalItem("with-voice", "hello there", image, meta={"ref_key": "clip-7"}, ref_voice=buf.getvalue(),
                      ref_text=REF_TEXT),
             EvalItem("without", "hello there", image)]
    done = generate_items(model, items, get_protocol("short"), tmp_path / "v", tmp_path / "r",
                          seconds=cfg.chunk_seconds, sampler="student", progress=False)
    assert done["generated"] == 2
    voiced = json.loads((tmp_path / "v" / "with-voice.timings.json").read_text())
    plain = json.loads((tmp_path / "v" / "without.timings.json").read_text())
    assert abs(voiced["pace"] - 1.25) < 0.05 and voiced["ref_voice"] == "clip-7"
    assert plain["pace"] == 1.0 and plain["ref_voice"] is None
