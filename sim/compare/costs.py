"""Per-hop software costs from a calibration file, scaled to the scenario's host.

A calibration file (:mod:`sim.compare.calibration` writes it) holds figures in ns on the machine
it was measured on, each ``{"value", "uncertainty", "source", ...}``. Costs scale by the clock
ratio (calibration machine / scenario host): a first-order model that ignores cache and memory
differences, said so in docs/compare.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Costs", "load_calibration", "REQUIRED_FIGURES", "CalibrationError"]

#: Figures a calibration file must hold (ns on the calibration machine).
REQUIRED_FIGURES = (
    "vswitch.per_packet_ns", "vswitch.per_byte_ns",
    "firewall.per_packet_ns", "firewall.per_rule_ns",
    "ids_match.per_packet_ns", "ids_match.per_byte_ns",
    "ids_overhead.per_packet_ns",
    "virtio.per_packet_ns", "virtio.per_byte_ns",
    "guest_io.per_packet_ns", "interrupt.wake_ns",
)


class CalibrationError(ValueError):
    """A calibration file that cannot be used (the message names the file and figure)."""


def load_calibration(path: str | Path) -> dict:
    """A calibration file's JSON, checked to hold every figure of :data:`REQUIRED_FIGURES`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read calibration file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise CalibrationError(f"{path}: not JSON ({exc})") from None
    figures = doc.get("figures") if isinstance(doc, dict) else None
    if not isinstance(figures, dict):
        raise CalibrationError(f"{path}: no 'figures' table")
    for name in REQUIRED_FIGURES:
        fig = figures.get(name)
        if not isinstance(fig, dict) or not isinstance(fig.get("value"), (int, float)) or fig["value"] < 0:
            raise CalibrationError(f"{path}: figures.{name}: missing or not a non-negative number")
    clock = doc.get("machine", {}).get("clock_ghz")
    if not isinstance(clock, (int, float)) or clock <= 0:
        raise CalibrationError(f"{path}: machine.clock_ghz: missing or not a positive number")
    return doc


@dataclass(frozen=True)
class Costs:
    """Service times in ns on the scenario's host for each kind of work."""
    scale: float
    fig: dict

    @classmethod
    def from_calibration(cls, calibration: dict, host_clock_ghz: float) -> Costs:
        figures = {k: float(v["value"]) for k, v in calibration["figures"].items() if isinstance(v, dict)
                   and isinstance(v.get("value"), (int, float))}
        return cls(calibration["machine"]["clock_ghz"] / host_clock_ghz, figures)

    def _f(self, name: str) -> float:
        return self.fig[name] * self.scale

    def vswitch(self, length: int) -> float:
        """One pass through the software vSwitch (lookup and forwarding, no VM boundary)."""
        return self._f("vswitch.per_packet_ns") + self._f("vswitch.per_byte_ns") * length

    def virtio(self, length: int) -> float:
        """One crossing of a VM boundary (vhost copy into or out of a guest's ring)."""
        return self._f("virtio.per_packet_ns") + self._f("virtio.per_byte_ns") * length

    def firewall(self, length: int, rules: int) -> float:
        """A firewall VM: its guest's packet I/O and nftables over ``rules`` rules."""
        return (self._f("guest_io.per_packet_ns") + self._f("firewall.per_packet_ns")
                + self._f("firewall.per_rule_ns") * rules)

    def bridge_firewall(self, rules: int) -> float:
        """nftables over ``rules`` rules on a host bridge (no guest: the bridge runs in the host kernel)."""
        return self._f("firewall.per_packet_ns") + self._f("firewall.per_rule_ns") * rules

    def ids(self, length: int) -> float:
        """An IDS VM (or the host's inspection path): packet I/O, Suricata's per-packet work and matching."""
        return (self._f("guest_io.per_packet_ns") + self._f("ids_overhead.per_packet_ns")
                + self._f("ids_match.per_packet_ns") + self._f("ids_match.per_byte_ns") * length)

    @property
    def wake_ns(self) -> float:
        return self._f("interrupt.wake_ns")
