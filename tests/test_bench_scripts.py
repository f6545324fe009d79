"""The streaming benchmark still runs against the current session API and reports its fields (a benchmark
that breaks silently, as bench_stream did when the session gained `ended_by`, measures nothing)."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run_bench(script: str, *args: str) -> dict:
    """Run a benchmark script offline -> the JSON object it prints."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_bench_stream_reports_its_fields():
    report = run_bench("bench_stream.py", "--chunks", "10", "--device", "cpu")
    assert report["chunks"] == 10 and report["mp4_bytes"] > 0
    for key in ("rtf", "rtf_sequential", "first_chunk_s", "speedup_pipelined"):
        assert report[key] > 0, key
    assert report["recompiles_during_streams"] == 0


def test_bench_lookahead_reports_both_streams():
    report = run_bench("bench_lookahead.py", "--chunks", "3", "--words", "300")
    whole, ahead = report["whole"], report["lookahead_20s"]
    assert whole["e_txt_tokens_first_chunk"] == report["transcript_tokens"] > ahead["e_txt_tokens_first_chunk"] > 0
    for row in (whole, ahead):
        assert row["first_chunk_s"] > 0 and row["orchestrator_s"] > 0 and row["rtf"] > 0
    assert report["speedup_orchestrator"] > 0
