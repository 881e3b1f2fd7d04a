"""The security stage inside NicTop (amaranth.sim, the bump in the wire): frames through the real
parser, the stage, the gate and the packet buffer. Built with ``default_deny`` (the CONTROL
register's reset value), so no programming is needed: an outbound UDP exchange leaves both ways
(the answer is return traffic), an unsolicited inbound frame is dropped with DEFAULT_DENY and
never leaves, ARP passes, and the records carry the flow fields. Written out by hand from
docs/security.md."""

from __future__ import annotations

from amaranth.sim import Simulator
from nictop_watch import send_frame, watch_nictop
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from hdl.config import NicConfig
from hdl.flow.flow_table import Outcome
from hdl.packet.meta import DropReason, Verdict, verdict_record_of
from hdl.security.settings import SecuritySettings
from hdl.top import NicTop


def _udp(src, dst, sport, dport):
    return bytes(Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / (b"p" * 30))


def test_default_deny_in_the_bump_in_the_wire():
    # Without the payload matcher (test_matcher_in_nic_amaranth.py has it): it costs simulation time.
    config = NicConfig(security=SecuritySettings(acl_entries=36, flow_sets=16, default_deny=True,
                                                 matcher_index_bits=0))
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
            await send_frame(ctx, dut, port, frame)
            await ctx.tick().repeat(40)

    async def watch(ctx):
        await watch_nictop(ctx, dut, config, records, egress)

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


class Axil:
    """Minimal AXI4-Lite master on NicTop's ``s_axil`` (one transaction at a time)."""

    def __init__(self, ctx, bus):
        self.ctx, self.bus = ctx, bus

    async def write(self, addr, data):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, data)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.bready, 1)
        aw = w = False
        for _ in range(50):
            aw |= bool(ctx.get(bus.awready))
            w |= bool(ctx.get(bus.wready))
            await ctx.tick()
            ctx.set(bus.awvalid, not aw)
            ctx.set(bus.wvalid, not w)
            if aw and w:
                break
        for _ in range(50):
            if ctx.get(bus.bvalid):
                resp = ctx.get(bus.bresp)
                await ctx.tick()
                ctx.set(bus.bready, 0)
                assert resp == 0, f"write {addr:#x}: bresp {resp}"
                return
            await ctx.tick()
        raise AssertionError(f"write {addr:#x}: no response")

    async def read(self, addr):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.rready, 1)
        for _ in range(50):
            if ctx.get(bus.arready):
                await ctx.tick()
                break
            await ctx.tick()
        ctx.set(bus.arvalid, 0)
        for _ in range(50):
            if ctx.get(bus.rvalid):
                data, resp = ctx.get(bus.rdata), ctx.get(bus.rresp)
                await ctx.tick()
                assert resp == 0, f"read {addr:#x}: rresp {resp}"
                return data
            await ctx.tick()
        raise AssertionError(f"read {addr:#x}: no response")


def test_command_engine_programs_the_stage():
    """The SECURITY block's commands through the CSR bus (hdl/security/control.py): an exact-match
    ACL entry written row by row (ACL_ROW: only the rows the key reads, the RAMs start empty) and
    its action (ACL_ACTION), a commit (ACL_COMMIT: the generation bit flips), an established flow
    written into the flow table (FLOW_WRITE) and read back after its frame (FLOW_READ: the stamp
    and state the table wrote), default deny switched on through CONTROL, the rule's hit counter
    (ACL_COUNTER) and the SECURITY / SECPORT counters. Expectations from the contract and the
    golden models' encodings (FlowEntry.to_bits, AclTable's action word)."""
    from hdl.acl.layouts import KEY_BITS, AclAction, AclKey, TcamGeometry
    from hdl.flow.flow_table import FlowState
    from hdl.security.regs import ARG_WORDS, CYCLES_PER_KEY, FLOW_WAY_SHIFT, ROW_WORDS, SECPORT, SECURITY, Command
    from host_driver.model.acl import acl_key
    from host_driver.model.flow import FlowEntry, FlowPacket, flow_hash
    from host_driver.model.nic import parse_frame
    from host_driver.rules.program import action_word

    config = NicConfig(security=SecuritySettings(acl_entries=36, flow_sets=16))
    dut = NicTop(config, reset_tree=False)
    regs = dut.regmap
    sec = regs.block(SECURITY)
    inside, outside = "10.0.0.1", "192.168.1.10"
    dropped = _udp(inside, outside, 6000, 53)          # the ACL entry's exact key (first frame of its flow)
    admitted = _udp(outside, inside, 4000, 7000)       # of the flow the driver writes as established
    denied = _udp(outside, inside, 4001, 7000)         # no flow: default deny

    meta = parse_frame(dropped, physical=False, header_window=128, max_frame=9216)
    key = AclKey.const(acl_key(meta, 1, False, True)).as_value().value
    geo = TcamGeometry(36, CYCLES_PER_KEY)
    rows = {a: w for a, w in geo.rows([(key, (1 << KEY_BITS) - 1)]).items() if w}
    pkt = FlowPacket.of(inside, outside, 17, 7000, 4000)          # the inside host opened it
    flow_set = flow_hash(pkt, 4)
    entry = FlowEntry(True, FlowState.ESTABLISHED, client_hi=False, ipv6=False, proto=17,
                      lo_addr=int(pkt.src), hi_addr=int(pkt.dst), lo_port=7000, hi_port=4000, stamp=0)
    assert (pkt.src, pkt.sport) < (pkt.dst, pkt.dport)             # the inside host is "lo"
    records, seq = [], [0]

    async def command(bus, op, *args):
        for i, a in enumerate(args):
            await bus.write(sec.addr(f"ARG{i}"), a)
        seq[0] = (seq[0] + 1) & 0xFF
        await bus.write(sec.addr("CMD"), seq[0] << 24 | op)
        for _ in range(100):
            if await bus.read(sec.addr("CMD_DONE")) >> 24 == seq[0]:
                return
        raise AssertionError(f"command {op!r} never finished")

    async def result(bus, words):
        value = 0
        for i in range(words):
            value |= await bus.read(sec.addr(f"RESULT{i}")) << (32 * i)
        return value

    async def send(ctx, port, frame):
        await send_frame(ctx, dut, port, frame)

    async def main(ctx):
        bus = Axil(ctx, dut.s_axil)
        for (col, row), word in sorted(rows.items()):
            words = [word >> (32 * i) & 0xFFFFFFFF for i in range(ROW_WORDS)]
            await command(bus, Command.ACL_ROW, col << 9 | row, *words)
        await command(bus, Command.ACL_ACTION, 0, action_word(AclAction.DROP, 5))
        assert await bus.read(sec.addr("STATUS")) & 1 == 0
        await command(bus, Command.ACL_COMMIT)
        assert await bus.read(sec.addr("STATUS")) == 1                 # generation 1, not busy
        bits = entry.to_bits()
        await command(bus, Command.FLOW_WRITE, flow_set, *[bits >> (32 * i) & 0xFFFFFFFF
                                                           for i in range(ARG_WORDS - 1)])
        await bus.write(sec.addr("CONTROL"), 1)                          # default deny on
        for port, frame in (("vm1", dropped), ("phy0", admitted), ("phy0", denied)):
            await send(ctx, port, frame)
            await ctx.tick().repeat(80)
        await command(bus, Command.ACL_COUNTER, 5)
        hits = await result(bus, 2)
        await command(bus, Command.FLOW_READ, flow_set | 0 << FLOW_WAY_SHIFT)
        back = FlowEntry.from_bits(await result(bus, 11))
        counts = {}
        for block, name in ((sec, "FLOW_NEW"), (sec, "FLOW_EXISTING"), (sec, "ACL_DROP"), (sec, "DEFAULT_DENY"),
                            (regs.block(SECPORT, 1), "DROP_ACL"), (regs.block(SECPORT, 1), "ALERTS"),
                            (regs.block(SECPORT, 0), "DROP_DEFAULT_DENY")):
            counts[f"{block.type.name}{block.instance}.{name}"] = await bus.read(block.addr(name))
        records.append((hits, back, counts))

    async def watch(ctx):
        layout = verdict_record_of(config)
        async for _, _, valid, payload in ctx.tick().sample(dut.record.valid, dut.record.payload.as_value()):
            if valid:
                records.append(layout.from_bits(payload))

    sim = Simulator(dut)
    sim.add_clock(6.4e-9)
    sim.add_testbench(main)
    sim.add_testbench(watch, background=True)
    sim.run()

    frames = [r for r in records if not isinstance(r, tuple)]
    hits, back, counts = records[-1]
    got = [(int(r.in_port), Verdict(r.verdict), DropReason(r.reason), int(r.acl_hit), int(r.acl_index),
            int(r.acl_slot), int(r.flow_found), int(r.flow_established), int(r.flow_outcome)) for r in frames]
    assert got == [
        (1, Verdict.DROP, DropReason.ACL_DROP, 1, 0, 5, 1, 0, Outcome.NEW.value),
        (0, Verdict.FORWARD, DropReason.NONE, 0, 0, 0, 1, 1, Outcome.EXISTING.value),
        (0, Verdict.DROP, DropReason.DEFAULT_DENY, 0, 0, 0, 1, 0, Outcome.NEW.value),
    ]
    assert hits == 1
    assert (back.valid, back.state, back.key(), back.client_hi) == (True, FlowState.ESTABLISHED, entry.key(), False)
    assert counts == {"SECURITY0.FLOW_NEW": 2, "SECURITY0.FLOW_EXISTING": 1, "SECURITY0.ACL_DROP": 1,
                      "SECURITY0.DEFAULT_DENY": 1, "SECPORT1.DROP_ACL": 1, "SECPORT1.ALERTS": 1,
                      "SECPORT0.DROP_DEFAULT_DENY": 1}


def test_default_deny_in_the_switch():
    """The switch build: the switch learns from every frame, the denied one too (so the answer is
    unicast to the inside port), a security drop overrides the switch's forward, and a frame
    re-injected on the host port (the bypass port) is not inspected."""
    from hdl.switch.settings import SwitchPort, SwitchSettings

    ports = ("phy0", "vm1", "host")
    config = NicConfig(ports=ports, switch=SwitchSettings(ports=(SwitchPort(),) * 3, mac_sets=16, recorder_depth=16),
                       security=SecuritySettings(acl_entries=36, flow_sets=16, default_deny=True,
                                                 matcher_index_bits=0))     # (the matcher: its own test)
    assert config.security.bypass_port == 2
    dut = NicTop(config, reset_tree=False)
    mac_in, mac_out = "02:00:00:00:00:01", "02:00:00:00:00:02"
    inside, outside = "10.0.0.1", "192.168.1.10"

    def udp(src_mac, dst_mac, src, dst, sport, dport):
        return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport)
                     / (b"p" * 30))

    frames = [("vm1", udp(mac_in, mac_out, inside, outside, 5000, 53)),     # 0 denied (flooded otherwise)
              ("phy0", udp(mac_out, mac_in, outside, inside, 53, 5000)),    # 1 return traffic: unicast to vm1
              ("host", udp(mac_in, mac_out, inside, outside, 6000, 53)),    # 2 bypass: forwarded to phy0
              ("phy0", udp(mac_out, mac_in, outside, inside, 4444, 22))]    # 3 unsolicited: denied
    records = []

    async def send(ctx):
        for port, frame in frames:
            await send_frame(ctx, dut, port, frame)
            await ctx.tick().repeat(60)
        await ctx.tick().repeat(200)

    egress = {name: [] for name in ports}

    async def watch(ctx):
        await watch_nictop(ctx, dut, config, records, egress)

    sim = Simulator(dut)
    sim.add_clock(6.4e-9)
    sim.add_testbench(send)
    sim.add_testbench(watch, background=True)
    sim.run()
    got = [(int(r.in_port), Verdict(r.verdict), DropReason(r.reason), int(r.egress), int(r.flow_found),
            int(r.flow_outcome)) for r in records]
    assert got == [(1, Verdict.DROP, DropReason.DEFAULT_DENY, 0, 1, Outcome.NEW.value),
                   (0, Verdict.FORWARD, DropReason.NONE, 0b010, 1, Outcome.EXISTING.value),
                   (2, Verdict.FORWARD, DropReason.NONE, 0b001, 0, 0),
                   (0, Verdict.DROP, DropReason.DEFAULT_DENY, 0, 1, Outcome.NEW.value)]
    assert egress == {"phy0": [frames[2][1]], "vm1": [frames[1][1]], "host": []}
