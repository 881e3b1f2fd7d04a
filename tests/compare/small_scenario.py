"""Small `secnic compare` scenarios for the tests: one host, 2-core VMs at 0.25 Gb/s, a short storm.

The tests differ only in their VMs, traffic, sweep and chains; this writes the rest once so a
change to the scenario format is made in one place (docs/compare.md has the format).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def _value(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, Path):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


def scenario_toml(name: str, traffic: Mapping, chains: Mapping[str, tuple[str | Path, Sequence[str]]], *,
                  vms: Sequence[str] = ("vm1", "vm2"), gbps: Sequence[float] = (0.25, 1),
                  reference_gbps: float | None = None) -> str:
    """The scenario's TOML text. ``chains`` maps a VM to (rules file, hop kinds), each hop one core."""
    lines = [f'name = "{name}"', "[host]", "cores = 16", "vswitch_cores = 2", "ring = 64"]
    for vm in vms:
        lines += ["[[vm]]", f'name = "{vm}"', "cores = 2", "gbps = 0.25"]
    lines.append("[traffic]")
    lines += [f"{key} = {_value(v)}" for key, v in traffic.items()]
    lines += ["[sweep]", f"gbps = {_value(list(gbps))}", f"reference_gbps = {reference_gbps or gbps[0]}"]
    for vm, (rules, hops) in chains.items():
        hop_text = ", ".join(f'{{kind = "{kind}", cores = 1}}' for kind in hops)
        lines += [f"[chain.{vm}]", f"rules = {_value(rules)}", f"hops = [{hop_text}]"]
    lines += ["[storm]", "duration_us = 40"]
    return "\n".join(lines) + "\n"
