"""The NicTop testbenches' driver and observer: frames in, every record and every port's egress frames out
(amaranth.sim)."""

from __future__ import annotations

from hdl.packet.meta import verdict_record_of


async def watch_nictop(ctx, dut, config, records: list, egress: dict[str, list[bytes]]) -> None:
    """Background testbench: holds every egress port ready, appends each record (decoded with the
    build's layout) to ``records`` and each whole frame leaving port ``name`` to ``egress[name]``."""
    layout = verdict_record_of(config)
    ports = list(egress)
    current = dict.fromkeys(ports, b"")
    outs = [getattr(dut, f"m_axis_{name}") for name in ports]
    for o in outs:
        ctx.set(o.tready, 1)
    sampled = [dut.record.valid, dut.record.payload.as_value()]
    for o in outs:
        sampled += [o.tvalid, o.tdata, o.tkeep, o.tlast]
    async for _, _, valid, payload, *beats in ctx.tick().sample(*sampled):
        if valid:
            records.append(layout.from_bits(payload))
        for i, name in enumerate(ports):
            tvalid, tdata, tkeep, tlast = beats[4 * i:4 * i + 4]
            if tvalid:
                current[name] += tdata.to_bytes(8, "little")[:bin(tkeep).count("1")]
                if tlast:
                    egress[name].append(current[name])
                    current[name] = b""


async def send_frame(ctx, dut, port: str, frame: bytes, rx_error: bool = False) -> None:
    """Drive one whole ``frame`` into ``dut``'s 64-bit ingress ``s_axis_<port>``, a beat per cycle
    while the port is ready, with ``rx_error`` on the last beat's ``tuser``; leaves ``tvalid`` low."""
    s = getattr(dut, f"s_axis_{port}")
    beats = [frame[i:i + 8] for i in range(0, len(frame), 8)]
    for i, beat in enumerate(beats):
        last = i == len(beats) - 1
        ctx.set(s.tdata, int.from_bytes(beat.ljust(8, b"\0"), "little"))
        ctx.set(s.tkeep, (1 << len(beat)) - 1)
        ctx.set(s.tlast, last)
        ctx.set(s.tuser, rx_error and last)
        ctx.set(s.tvalid, 1)
        await ctx.tick().until(s.tready)
    ctx.set(s.tvalid, 0)
