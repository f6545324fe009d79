"""What `streamchar eval` runs with: its options, and the network behind each learned metric.

`Backends` loads every learned metric's network from its LOCAL weights file (an option, else its environment
variable). A file that is missing or unreadable skips that metric with one line naming the metric, the file,
the variable and the option; everything else still runs. The weights-free proxies need nothing and always run.
`records` holds, per metric, what the report says about it: backend, proxy or not, weights file and sha256,
and the metric's protocol where it has one (FID / FVD sampling, SyncNet's windows and crops).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamchar.errors import StreamCharError
from streamchar.eval.protocols import get_protocol

FLAGS = {"fid": "--inception", "fvd": "--i3d", "sync_c": "--syncnet", "face_detector": "--face-detector",
         "human_identity": "--face-embedder", "imaging_quality": "--musiq", "dynamic_degree": "--raft"}


@dataclass
class EvalOptions:
    protocol: str = "short"
    refs: Path | None = None
    timings: Path | None = None
    device: str = "cpu"
    frame_stride: int = 1  # per-frame metrics (quality, identity) on every n-th frame
    fid_frames: int = 16  # evenly spaced frames per video (generated and reference) for FID
    fvd_clips: int = 1  # 16-frame clips per video for FVD
    sync_window: float = 10.0  # seconds per sync window
    # learned metrics' weights (None: their environment variable)
    inception: str | None = None
    i3d: str | None = None
    syncnet: str | None = None
    face_detector: str | None = None
    face_embedder: str | None = None
    face_embedder_layout: str = "arcface112"
    musiq: str | None = None
    raft: str | None = None
    whisper: str | None = None
    asr: str = "auto"  # WER backend: auto | judge | pocketsphinx | whisper (see Backends)
    judge: str | None = None  # speech judge folder (None: the bundled one)

    def validate(self) -> "EvalOptions":
        get_protocol(self.protocol)
        if self.asr not in ASR_BACKENDS:
            raise StreamCharError(f"--asr must be one of {list(ASR_BACKENDS)}, got {self.asr!r}")
        if self.asr == "whisper" and not (self.whisper or _env("STREAMCHAR_WHISPER")):
            raise StreamCharError("--asr whisper needs the model folder: --whisper DIR or STREAMCHAR_WHISPER")
        for name in ("frame_stride", "fid_frames", "fvd_clips"):
            if int(getattr(self, name)) < 1:
                raise StreamCharError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.sync_window >= 1.0:
            raise StreamCharError(f"sync-window must be >= 1 second, got {self.sync_window}")
        from streamchar.paths import input_folder

        for name in ("refs", "timings"):
            if getattr(self, name) is not None:
                input_folder(getattr(self, name), f"--{name}")
        return self


# ---------------------------------------------------------------- the networks behind the learned metrics


ASR_BACKENDS = ("auto", "judge", "pocketsphinx", "whisper")


class Backends:
    """Each learned metric's network, loaded from its local weights, or None with the reason recorded."""

    def __init__(self, opts: EvalOptions, log=print):
        from streamchar.eval import dynamic, features, identity, quality

        self.opts, self.log = opts, log
        self.records: dict[str, dict] = {}  # metric -> backend, proxy, weights file and sha256
        self.skipped: dict[str, str] = {}  # metric -> the one-line reason
        dev = opts.device

        self.transcriber = None
        whisper = opts.whisper or _env("STREAMCHAR_WHISPER")
        asr = opts.asr
        if asr == "auto":  # Whisper when named; else the SynthTalk judge where one is bundled or named
            from streamchar.eval.judge import BUNDLED

            has_judge = opts.judge is not None or (BUNDLED / "model.safetensors").is_file()
            asr = "whisper" if whisper else "judge" if has_judge else "pocketsphinx"
        if asr == "judge":  # named or bundled; one that does not load skips WER, as a missing weights file does
            from streamchar.eval.judge import BUNDLED, load_judge

            path = Path(opts.judge) if opts.judge else BUNDLED
            judge = self._try("wer", "synthtalk-judge", lambda: path, lambda p: load_judge(opts.judge, dev))
            if judge is not None:
                self.transcriber = judge.transcribe
                self.records["wer"] |= {
                    "weights": str(path), "weights_sha256": features.file_sha256(path / "model.safetensors"),
                    "note": "phoneme CTC + corpus pronunciation lexicon, trained on true SynthTalk speech only: "
                            "for SynthTalk voices, not real speech (use --asr pocketsphinx or --whisper DIR there)"}
        elif asr == "whisper":  # a Whisper folder that does not load skips WER (no silent fallback to another ASR)
            from streamchar.eval.asr import WhisperTranscriber

            self.transcriber = self._try("wer", "whisper", lambda: Path(whisper),
                                         lambda p: WhisperTranscriber(p, dev))
            weights = Path(whisper) / "model.safetensors"
            if self.transcriber is not None and weights.is_file():
                self.records["wer"]["weights_sha256"] = features.file_sha256(weights)
        else:  # pocketsphinx: its en-us model ships in the wheel
            from importlib.metadata import version

            self.records["wer"] = {"backend": "pocketsphinx", "proxy": False,
                                   "model": f"bundled en-us, pocketsphinx {version('pocketsphinx')}"}
        if opts.refs is None:
            for m in ("fid", "fvd"):
                self._skip(m, f"{m.upper()} needs reference clips: pass --refs DIR with <key>.mp4 ground truth")
            self.inception = self.i3d = None
        else:
            self.inception = self._try("fid", "inception-v3 (StyleGAN2-ADA TorchScript)",
                                       lambda: features.weights_path("FID", features.INCEPTION_ENV, opts.inception,
                                                                     features.INCEPTION_FILE),
                                       lambda p: features.load_inception(p, dev))
            self.i3d = self._try("fvd", "i3d (StyleGAN-V TorchScript)",
                                 lambda: features.weights_path("FVD", features.I3D_ENV, opts.i3d, features.I3D_FILE),
                                 lambda p: features.load_i3d(p, dev))
            if self.inception is not None:
                self.records["fid"]["protocol"] = features.fid_protocol() | {
                    "frames_per_video": opts.fid_frames,
                    "frame_sampling": "evenly spaced: frame round((i + 0.5) * T / n), i < n (all frames if T <= n); "
                                      "the same for generated and reference videos"}
            if self.i3d is not None:
                self.records["fvd"]["protocol"] = features.fvd_protocol(opts.fvd_clips)
        from streamchar.eval import syncnet

        self.syncnet = self._try("sync_c", "syncnet (syncnet_v2)", lambda: syncnet.syncnet_weights_path(opts.syncnet),
                                 lambda p: syncnet.load_syncnet(p, dev))
        self.face_detector = self._try("face_detector", "yunet (OpenCV FaceDetectorYN)",
                                       lambda: features.weights_path("face detector", syncnet.FACE_DETECTOR_ENV,
                                                                     opts.face_detector, syncnet.FACE_DETECTOR_FILE),
                                       lambda p: syncnet.FaceDetector(p))
        faces = ("YuNet per frame, median-filtered (SyncNet); on the reference (identity)"
                 if self.face_detector is not None else
                 "a fixed box: the SynthTalk face layout (identity.face_box); pass --face-detector for other videos")
        if self.syncnet is not None:
            self.records["sync_c"] |= {"faces": faces, "protocol": syncnet.syncnet_protocol()}
        self.embedder = self._try("human_identity", f"face embedder ({opts.face_embedder_layout})",
                                  lambda: identity.resolve_face_embedder_path(opts.face_embedder,
                                                                              opts.face_embedder_layout),
                                  lambda p: identity.FaceEmbedder(p, opts.face_embedder_layout, dev))
        if self.embedder is not None:
            self.records["human_identity"]["faces"] = faces
            self.records["identity_similarity"] = self.records["human_identity"]
        musiq = self._try("imaging_quality", "musiq (TorchScript)", lambda: quality.resolve_musiq_path(opts.musiq),
                          lambda p: quality.MusiqScorer(p, dev))
        raft = self._try("dynamic_degree", "raft (TorchScript)", lambda: dynamic.resolve_raft_path(opts.raft),
                         lambda p: dynamic.RaftFlow(p, device=dev))
        self.scorers = [quality.SharpnessProxy()] + ([musiq] if musiq is not None else [])
        self.flows = [dynamic.FarnebackFlow()] + ([raft] if raft is not None else [])
        for proxy, what in (("sync_proxy", "mouth opening vs audio envelope (SynthTalk layout)"),
                            ("identity_proxy", "SSIM + colour-histogram distance of the face crop"),
                            ("imaging_quality_proxy", "sharpness / noise proxy"),
                            ("dynamic_degree_farneback", "OpenCV Farneback flow")):
            self.records[proxy] = {"backend": what, "proxy": True}
        if musiq is not None:
            self.records["quality_drift"] = self.records["imaging_quality"]
        self.records["quality_drift_proxy"] = self.records["imaging_quality_proxy"]

    def _skip(self, metric: str, reason: str) -> None:
        self.skipped[metric] = reason
        self.log(f"streamchar eval: {metric} skipped: {reason}")

    def _try(self, metric: str, backend: str, resolve, load):
        from streamchar.eval.features import file_sha256

        try:
            path = resolve()
            obj = load(path)
        except StreamCharError as e:
            flag = FLAGS.get(metric)
            self._skip(metric, f"{e} (streamchar eval {flag} PATH)" if flag and flag not in str(e) else str(e))
            return None
        record = {"backend": backend, "proxy": False, "weights": str(path)}
        if Path(path).is_file():
            record["weights_sha256"] = file_sha256(path)
        self.records[metric] = record
        return obj


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name) or None
