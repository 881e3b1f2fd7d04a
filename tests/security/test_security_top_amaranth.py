"""The security stage inside NicTop (amaranth.sim, the bump in the wire): frames through the real
parser, the stage, the gate and the packet buffer. Built with ``default_deny`` (the CONTROL
register's reset value), so no programming is needed: an outbound UDP exchange leaves both ways
(the answer is return traffic), an unsolicited inbound frame is dropped with DEFAULT_DENY and
never leaves, ARP passes, and the records carry the flow fields. Written out by hand from
docs/security.md."""

from __future__ import annotations

from amaranth.sim import Simulator
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from hdl.config import NicConfig
from hdl.flow.flow_table import Outcome
from hdl.packet.meta import DropReason, Verdict, make_verdict_record
from hdl.security.settings import SecuritySettings
from hdl.top import NicTop


def _udp(src, dst, sport, dport):
    return bytes(Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"p" * 30))


def test_default_deny_in_the_bump_in_the_wire():
    config = NicConfig(security=SecuritySettings(acl_entries=36, flow_sets=16, default_deny=True))
    dut = NicTop(config, reset_tree=False)
    inside, outside = "10.0.0.1", "192.168.1.10"
    # (port, frame): vm1 is the inside, phy0 the outside.
    frames = [("vm1", _udp(inside, outside, 5000, 53)),     # 0 new flow, to the server: denied
              ("phy0", _udp(outside, inside, 53, 5000)),    # 1 its answer: return traffic, forwarded
              ("vm1", _udp(inside, outside, 5000, 53)),     # 2 now established: forwarded
              ("phy0", _udp(outside, inside, 4444, 22)),    # 3 unsolicited inbound: denied
              ("phy0", bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=inside)).ljust(60, b"\0"))]  # 4 not IP
    records, egress = [], {"phy0": [], "vm1": []}

    async def send(ctx):
        for port, frame in frames:
            s = getattr(dut, f"s_axis_{port}")
            beats = [frame[i:i + 8] for i in range(0, len(frame), 8)]
            for i, beat in enumerate(beats):
                ctx.set(s.tdata, int.from_bytes(beat.ljust(8, b"\0"), "little"))
                ctx.set(s.tkeep, (1 << len(beat)) - 1)
                ctx.set(s.tlast, i == len(beats) - 1)
                ctx.set(s.tvalid, 1)
                await ctx.tick().until(s.tready)
            ctx.set(s.tvalid, 0)
            await ctx.tick().repeat(40)

    async def watch(ctx):
        layout = make_verdict_record(config.port_bits, 2, security=True)
        current = {"phy0": b"", "vm1": b""}
        for name in current:
            ctx.set(getattr(dut, f"m_axis_{name}").tready, 1)
        for _ in range(1500):
            await ctx.tick()
            if ctx.get(dut.record.valid):
                records.append(layout.from_bits(ctx.get(dut.record.payload.as_value())))
            for name in current:
                m = getattr(dut, f"m_axis_{name}")
                if ctx.get(m.tvalid):
                    keep = ctx.get(m.tkeep)
                    current[name] += ctx.get(m.tdata).to_bytes(8, "little")[:bin(keep).count("1")]
                    if ctx.get(m.tlast):
                        egress[name].append(current[name])
                        current[name] = b""

    sim = Simulator(dut)
    sim.add_clock(6.4e-9)
    sim.add_testbench(send)
    sim.add_testbench(watch, background=True)
    sim.run_until(1500 * 6.4e-9)

    assert len(records) == len(frames)
    got = [(int(r.in_port), Verdict(r.verdict), DropReason(r.reason), int(r.egress), int(r.flow_found),
            int(r.flow_established), int(r.flow_to_server), int(r.flow_outcome)) for r in records]
    new, existing = Outcome.NEW.value, Outcome.EXISTING.value
    assert got == [
        (1, Verdict.DROP, DropReason.DEFAULT_DENY, 0, 1, 0, 1, new),
        (0, Verdict.FORWARD, DropReason.NONE, 0b10, 1, 1, 0, existing),
        (1, Verdict.FORWARD, DropReason.NONE, 0b01, 1, 1, 1, existing),
        (0, Verdict.DROP, DropReason.DEFAULT_DENY, 0, 1, 0, 1, new),
        (0, Verdict.FORWARD, DropReason.NONE, 0b10, 0, 0, 0, 0),
    ]
    assert egress == {"vm1": [frames[1][1], frames[4][1]], "phy0": [frames[2][1]]}
