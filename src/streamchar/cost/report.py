"""The text form of `cost_report` (the dict itself is the JSON form)."""

from __future__ import annotations

from streamchar.cost.memory import GB


def _fmt(x: float) -> str:
    """1 decimal from 10 up, 3 significant digits below (tiny configs have tiny numbers)."""
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def format_report(report: dict) -> str:
    """A readable table of `cost_report`'s dict (the dict itself is the JSON form)."""
    g, ch, tok = report["gpu"], report["chunk"], report["chunk"]["tokens"]
    lines = [
        f"streamchar cost: preset {report.get('preset', '?')} on {g['name']} ({g['bf16_tflops']:g} TFLOP/s bf16, "
        f"{g['bandwidth_tbs']:g} TB/s, {g['memory_gb']:g} GB); roofline at MFU {report['mfu']:.2f}, "
        f"bandwidth efficiency {report['bandwidth_eff']:.2f}",
        f"chunk: {report['chunk_seconds']:.3f} s, {ch['steps']} steps; tokens: DiT noisy {tok['video']} video + "
        f"{tok['audio']} audio, conditions {tok['conditions']}, prompt {tok['prompt_context']}; orchestrator "
        f"prefix {tok['prefix']} (ref {tok['ref_audio']} + text {tok['text']} + history {tok['history']})",
        "",
        f"{'part':<22}{'passes':>7}{'GFLOP':>12}{'GB moved':>10}{'ms':>10}  bound",
    ]
    for name, p in ch["parts"].items():
        lines.append(f"{name:<22}{p['passes']:>7}{_fmt(p['flops'] / 1e9):>12}{_fmt(p['bytes'] / GB):>10}"
                     f"{_fmt(report['latency_s'][name] * 1e3):>10}  {report['bound'][name]}")
    lines.append(f"{'total':<22}{'':>7}{_fmt(ch['total_flops'] / 1e9):>12}{_fmt(ch['total_bytes'] / GB):>10}"
                 f"{_fmt(report['total_s'] * 1e3):>10}")
    rt = "real time" if report["real_time"] else "slower than real time"
    lines.append(f"estimate: LLM+DiT {_fmt(report['llm_dit_s'])} s, decode {_fmt(report['decode_s'])} s, chunk "
                 f"{_fmt(report['total_s'])} s -> RTF {report['rtf']:.3g} ({rt}; budget {report['chunk_seconds']:.3f} s)")
    if report.get("paper_h100"):
        p = report["paper_h100"]
        lines.append(f"paper's reported numbers ({p['source']}): LLM+DiT {p['llm_dit_s']} s, VAE decode "
                     f"~{p['vae_decode_s']} s, all-in ~{p['total_s']} s")
    m = report["memory"]
    lines += ["", f"inference memory (GB): total {_fmt(m['total_gb'])} "
                  f"({'fits' if report['fits'] else 'does NOT fit'} in {g['memory_gb']:g} GB)"]
    lines.append("  weights   " + ", ".join(f"{k} {_fmt(v)}" for k, v in m["weights_gb"].items()))
    lines.append("  KV cache  " + ", ".join(f"{k} {_fmt(v)}" for k, v in m["kv_cache_gb"].items()))
    lines.append(f"  activations (largest pass: {m['largest_pass']}) {_fmt(m['activations_gb'][m['largest_pass']])}")
    for stage, t in report.get("train", {}).items():
        parts = ", ".join(f"{k} {_fmt(v)}" for k, v in t["per_gpu_gb"].items())
        lines.append(f"training ({stage}, FSDP over {t['gpus']} GPUs, micro-batch {t['micro_batch']}): "
                     f"{_fmt(t['total_per_gpu_gb'])} GB per GPU ({parts})")
    return "\n".join(lines)
