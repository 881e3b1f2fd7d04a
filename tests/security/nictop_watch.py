"""The NicTop testbenches' observer: every record and every port's egress frames (amaranth.sim)."""

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
