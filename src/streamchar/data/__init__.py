"""Synthetic training data (SynthTalk): speech, timings and the like."""
