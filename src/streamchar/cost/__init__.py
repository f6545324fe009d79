"""Cost model of one streaming chunk: FLOPs, bytes moved, latency (roofline), memory (inference and training).

Modules: `gpus` (GPU specs and their sources), `flops` (token counts, per-pass FLOPs and bytes, codec decode
counting, `chunk_cost`), `memory` (inference and FSDP training memory), `estimate` (roofline latency,
`estimate`, `cost_report`), `check` (`flops_check` under FlopCounterMode), `report` (`format_report`).
"""

from streamchar.cost.check import flops_check
from streamchar.cost.estimate import cost_report, estimate
from streamchar.cost.flops import chunk_cost
from streamchar.cost.gpus import GPUS, gpu_spec
from streamchar.cost.memory import train_memory
from streamchar.cost.report import format_report

__all__ = ["GPUS", "chunk_cost", "cost_report", "estimate", "flops_check", "format_report", "gpu_spec",
           "train_memory"]
