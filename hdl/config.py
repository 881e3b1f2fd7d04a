"""Build-time configuration of the NIC (one object, hashed into the build cache key)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from hdl.security.settings import SecuritySettings
from hdl.switch.settings import SwitchSettings

__all__ = ["NicConfig", "VALID_DATA_WIDTHS", "PARSER_ARCHITECTURES", "MIN_PHYSICAL_FRAME", "MAX_FRAME",
           "INGRESS_MODES"]

VALID_DATA_WIDTHS = (64, 128, 256, 512)
#: Parser architectures (docs/parser.md, "Two architectures").
PARSER_ARCHITECTURES = ("pipelined", "sequential")

#: Ethernet minimum frame without FCS (64 bytes on the wire, FCS stripped by the MAC).
MIN_PHYSICAL_FRAME = 60
#: Largest frame the NIC carries (jumbo, without FCS). Longer frames are dropped whole.
MAX_FRAME = 9216
#: What a switch port does when the shared pipeline cannot take its frames (docs/switch.md,
#: "Ingress"): hold the source back (``tready`` low), or take everything into a FIFO and drop whole
#: frames when it is full, as a MAC must.
INGRESS_MODES = ("pause", "drop")
#: Build options added later: left out of :meth:`NicConfig.as_dict` (and so of :meth:`NicConfig.key`)
#: while at these defaults, so existing configurations keep their dict and key.
_QUIET_DEFAULTS = {"ingress": "pause", "ingress_fifo_bytes": 16384, "security": None}


@dataclass(frozen=True)
class NicConfig:
    """Parameters of one NIC build.

    Parameters
    ----------
    data_width:
        Datapath width W in bits (64, 128, 256 or 512).
    ports:
        Port names in port-number order. Port 0 is the uplink. Two for the bump in the wire,
        2..8 with ``switch``.
    physical_ports:
        Ports attached to a real PHY; only these flag frames below 60 bytes as runts.
    clock_mhz:
        Core clock, used to turn cycles into Gb/s and ns.
    header_window:
        Bytes at the start of each frame the parser can see (multiple of 8, 128..256).
    buffer_bytes:
        Store-and-forward packet buffer size in bytes (must hold more than one maximum frame).
    max_frame:
        Largest accepted frame in bytes; longer frames are dropped whole as ``oversize``.
    uart_bridge:
        Put the UART-to-CSR bridge in the top as the CSR bus master (board builds); the top then
        has ``uart_rx``/``uart_tx`` pins instead of the ``s_axil`` port.
    uart_baud:
        Bridge baud rate.
    line_tester:
        Add the built-in line-rate tester (frame generators on ingress, signature checkers on egress).
    counter_width:
        Bits kept per event counter (64, or 32 for small FPGAs); the register map is the same and
        the high word of a 32-bit counter reads 0.
    parser:
        Parser architecture: ``"pipelined"`` (:class:`hdl.parser.pipelined.Parser`, one frame per cycle,
        fixed latency, thousands of flip-flops) or ``"sequential"``
        (:class:`hdl.parser.sequential.SequentialParser`, header window in block RAM walked by a small
        FSM in 2..16 cycles per frame, backpressure through ``space`` when frames come faster;
        for small FPGAs). Both produce the same metadata.
    compact:
        Trade clock speed for area, for small FPGAs (iCE40): selects the AREA target profile
        rather than SPEED (:func:`hdl.profile.target_for`, the one place that reads this flag):
        no register slices between blocks, the compact CSR with its counters in block RAM, the
        line tester's template read through a mux rather than shifted out of a per-generator
        copy, shallow FIFO output queues. The behaviour seen at the ports and on the register bus
        is the same; only latencies differ. (Kept as the user-facing name: boards and nic.toml
        files set it.)
    switch:
        The switch fabric (:class:`hdl.switch.settings.SwitchSettings`: learning, VLANs, storm
        control, loop guard, mirroring, per-port output queues; docs/switch.md), or None for the
        two-port bump in the wire (every good frame to the other port, unchanged).
    ingress:
        ``"pause"`` (the default): each port enters through a two-entry register slice and holds
        its source back while the shared pipeline is busy. ``"drop"`` (switch builds only): each
        port has an ingress FIFO of ``ingress_fifo_bytes`` (:class:`hdl.switch.ingress.IngressFifo`)
        that takes every beat and drops whole frames when full, counted per port in SWPORT
        (``INGRESS_FULL``, ``INGRESS_TOO_LONG``). docs/switch.md, "Ingress".
    ingress_fifo_bytes:
        Each port's ingress FIFO in ``"drop"`` mode: a power of two, 256..1 MiB (0: no FIFO, only
        with ``"pause"``). A frame longer than the FIFO is always dropped (``INGRESS_TOO_LONG``).
    security:
        The security stage (:class:`hdl.security.settings.SecuritySettings`: flow table and ACL
        classifier between the parser and the packet buffer; docs/security.md), or None for none
        (the build is then the same as before the stage existed). Its ``bypass_port`` ``"auto"``
        is resolved here to the ``host`` port's index (or None). :meth:`from_dict` takes a table of
        its options, or ``false`` for none (a board whose own configuration has the stage).
    """

    data_width: int = 64
    ports: tuple[str, ...] = ("phy0", "vm1")
    physical_ports: tuple[str, ...] = ("phy0",)
    clock_mhz: float = 156.25
    header_window: int = 128
    buffer_bytes: int = 32768
    max_frame: int = MAX_FRAME
    uart_bridge: bool = False
    uart_baud: int = 115200
    line_tester: bool = False
    counter_width: int = 64
    parser: str = "pipelined"
    compact: bool = False
    switch: SwitchSettings | None = None
    ingress: str = "pause"
    ingress_fifo_bytes: int = 16384
    security: SecuritySettings | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self):
        if self.security is not None:
            if not isinstance(self.security, SecuritySettings):
                raise ValueError(f"security must be SecuritySettings or None, not {self.security!r}")
            object.__setattr__(self, "security", self.security.resolved(tuple(self.ports)))
            if len(self.ports) > 16:
                raise ValueError("the security stage's ACL key holds port numbers up to 15")
        if self.data_width not in VALID_DATA_WIDTHS:
            raise ValueError(f"data_width must be one of {VALID_DATA_WIDTHS}, not {self.data_width!r}")
        if self.switch is None and len(self.ports) != 2:
            raise ValueError(f"a bump in the wire has exactly two ports, not {self.ports!r}")
        if self.switch is not None:
            if len(self.switch.ports) != len(self.ports):
                raise ValueError(f"switch settings for {len(self.switch.ports)} ports, but the NIC has "
                                 f"{len(self.ports)}")
            if self.switch.egress_queue_bytes < self.max_frame + 8:
                raise ValueError(f"switch egress_queue_bytes must hold a maximum frame ({self.max_frame} + 8), "
                                 f"not {self.switch.egress_queue_bytes}")
            if self.data_width < 64:
                raise ValueError("the switch needs W >= 64")
        if len(set(self.ports)) != len(self.ports):
            raise ValueError(f"port names must be unique, not {self.ports!r}")
        for name in self.physical_ports:
            if name not in self.ports:
                raise ValueError(f"physical port {name!r} is not one of the ports {self.ports!r}")
        if self.header_window % 8 or not 128 <= self.header_window <= 256:
            raise ValueError(f"header_window must be a multiple of 8 in 128..256, not {self.header_window!r}")
        if not 64 <= self.max_frame <= 16000:
            raise ValueError(f"max_frame must be in 64..16000, not {self.max_frame!r}")
        if self.buffer_bytes < 2 * self.max_frame:
            raise ValueError(
                f"buffer_bytes must hold at least two maximum frames ({2 * self.max_frame}), "
                f"not {self.buffer_bytes!r}")
        if not 300 <= self.uart_baud <= self.clock_mhz * 1e6 / 8:
            raise ValueError(f"uart_baud must be in 300..clock/8, not {self.uart_baud!r}")
        if self.counter_width not in (32, 64):
            raise ValueError(f"counter_width must be 32 or 64, not {self.counter_width!r}")
        if self.parser not in PARSER_ARCHITECTURES:
            raise ValueError(f"parser must be one of {', '.join(map(repr, PARSER_ARCHITECTURES))}, "
                             f"not {self.parser!r}")
        if self.clock_mhz <= 0:
            raise ValueError(f"clock_mhz must be positive, not {self.clock_mhz!r}")
        if self.ingress not in INGRESS_MODES:
            raise ValueError(f"ingress must be one of {', '.join(map(repr, INGRESS_MODES))}, not {self.ingress!r}")
        fifo = self.ingress_fifo_bytes
        if isinstance(fifo, bool) or not isinstance(fifo, int) or (
                fifo != 0 and (fifo & (fifo - 1) or not 256 <= fifo <= 1 << 20)):
            raise ValueError(f"ingress_fifo_bytes must be 0 or a power of two in 256..1048576, not {fifo!r}")
        if self.ingress == "drop":
            if self.switch is None:
                raise ValueError('ingress = "drop" needs the switch fabric (its SWPORT blocks count the drops)')
            if fifo == 0:
                raise ValueError('ingress = "drop" needs an ingress FIFO: ingress_fifo_bytes must not be 0')

    @property
    def bytes_per_beat(self) -> int:
        return self.data_width // 8

    @property
    def ingress_fifos(self) -> bool:
        """Whether each port enters through an ingress FIFO that drops whole frames (``ingress = "drop"``)."""
        return self.ingress == "drop"

    @property
    def ingress_depth(self) -> int:
        """Beats each port's ingress FIFO holds."""
        return self.ingress_fifo_bytes // self.bytes_per_beat

    @property
    def port_bits(self) -> int:
        return max(1, (len(self.ports) - 1).bit_length())

    @property
    def buffer_depth(self) -> int:
        """Packet buffer depth in beats (a power of two)."""
        depth = self.buffer_bytes // self.bytes_per_beat
        return 1 << (depth - 1).bit_length()

    def port_index(self, name: str) -> int:
        try:
            return self.ports.index(name)
        except ValueError:
            raise ValueError(f"unknown port {name!r}; this NIC has ports {', '.join(self.ports)}") from None

    def is_physical(self, port: int | str) -> bool:
        name = self.ports[port] if isinstance(port, int) else port
        return name in self.physical_ports

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["switch"] = self.switch.as_dict() if self.switch is not None else None
        d["security"] = self.security.as_dict() if self.security is not None else None
        d["ports"] = list(self.ports)
        d["physical_ports"] = list(self.physical_ports)
        for key, default in _QUIET_DEFAULTS.items():
            if d[key] == default:
                del d[key]
        return d

    def key(self) -> str:
        """Short stable hash of the parameters (part of the build cache key)."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config") -> NicConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{source}: unknown NIC option(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        kwargs = dict(d)
        for key in ("ports", "physical_ports"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        try:
            if kwargs.get("security") is False:    # `security = false` in a [nic] table: no stage
                kwargs["security"] = None
            if isinstance(kwargs.get("switch"), dict):
                kwargs["switch"] = SwitchSettings.from_dict(kwargs["switch"])
            if isinstance(kwargs.get("security"), dict):
                kwargs["security"] = SecuritySettings.from_dict(kwargs["security"])
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
