"""Evaluation metrics, the maths separate from any network:
`asr` (pocketsphinx transcripts, forced alignment, word error rate), `psnr` (reconstruction quality),
`frechet` (the Fréchet distance of FID / FVD), `sync` (SyncNet's lag search: Sync-C, Sync-D, offset),
`drift` (Quality Drift over a long stream).

Import the submodules directly; pocketsphinx / jiwer / scipy load only when their module is imported.
"""
