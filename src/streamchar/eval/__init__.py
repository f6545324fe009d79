"""Evaluation metrics: `asr` (pocketsphinx transcripts, word error rate), `psnr` (reconstruction quality).

Import the submodules directly; pocketsphinx / jiwer load only when `streamchar.eval.asr` is imported.
"""
