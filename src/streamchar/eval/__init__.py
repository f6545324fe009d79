"""Evaluation (§5.2-5.3): one module per metric, the maths separate from any network.

Metrics: `asr` (WER: pocketsphinx / Whisper, forced alignment), `sync` (SyncNet's lag search, the SynthTalk
proxy), `syncnet` (the SyncNet network, its protocol, YuNet face boxes), `frechet` + `features` (FID / FVD),
`dynamic` (VBench Dynamic degree), `identity` (VBench-2.0 Human Identity, the SSIM proxy), `quality` (MUSIQ,
the sharpness proxy), `drift` (Quality Drift), `psnr` (codec reconstruction).
Running them: `protocols` (the short and long protocols' items), `generate` (streaming the items), `media`
(reading the videos), `backends` (the options and the learned metrics' networks from local files), `report`
(`streamchar eval`: one pass per video, the aggregates, report.json and summary.md), `plots` (drift, sync
per window, latency).

Import the submodules directly; pocketsphinx / jiwer / scipy / matplotlib load only when their module is imported.
"""
