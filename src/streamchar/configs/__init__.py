"""The training configs installed with the package: `--config pretrain_tiny` works from any folder.

`resolve_config(value)` takes a YAML path that exists, else the name of an installed config (`pretrain_tiny`,
`pretrain_tiny.yaml` or `configs/pretrain_tiny.yaml`, as the repository's docs write it).
"""

from __future__ import annotations

from pathlib import Path

from streamchar.errors import StreamCharError

CONFIGS = Path(__file__).resolve().parent


def installed_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def resolve_config(value: str | Path) -> Path:
    p = Path(value)
    if p.is_dir():
        raise StreamCharError(f"--config {value} is a folder; give a YAML file or an installed config's name")
    if p.is_file():
        return p
    name = p.name.removesuffix(".yaml").removesuffix(".yml")
    if (CONFIGS / f"{name}.yaml").is_file() and (len(p.parts) == 1 or p.parent.name == "configs"):
        return CONFIGS / f"{name}.yaml"
    raise StreamCharError(f"--config not found: {value} (neither a file nor an installed config: "
                          f"{', '.join(installed_configs())})")
