"""Random flow traffic for the flow table tests: scripted TCP conversations (handshakes, half-open,
RST, FIN, midstream pickup, port reuse), UDP/ICMP exchanges, IPv4 and IPv6, both directions,
interleaved, with noise packets and time steps past the timeouts."""

from __future__ import annotations

import random

from host_driver.model.flow import TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, FlowPacket

S, A, F, R, P = TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST, 0x08
# (from client?, flags) steps of TCP conversations.
TCP_SCRIPTS = [
    [(1, S), (0, S | A), (1, A), (1, P | A), (0, A), (0, P | A), (1, F | A), (0, A), (0, F | A), (1, A)],
    [(1, S), (0, S | A), (1, A), (1, P | A), (0, R | A), (1, A)],
    [(1, S), (1, S)],                          # half-open: no answer
    [(1, S), (0, S | A), (0, S | A)],           # half-open: no final ACK
    [(1, P | A), (0, A), (1, A)],               # midstream: never established
    [(1, S), (0, S | A), (1, A), (0, F | A), (1, A), (1, F | A), (0, A), (1, S), (0, S | A), (1, A)],
    [(0, R)],                                   # a RST out of nowhere
]
OTHER_SCRIPT = [(1, 0), (0, 0), (1, 0), (0, 0)]
PROTOS = (TCP, TCP, TCP, 17, 1, 58)


def endpoints(rng: random.Random, n: int) -> list[tuple[int, bool]]:
    """``n`` addresses, a third of them IPv6; equal addresses in both families are avoided."""
    out = []
    for i in range(n):
        if i % 3 == 2:
            out.append((0x20010DB8 << 96 | rng.getrandbits(64), True))
        else:
            out.append((0x0A000000 | rng.getrandbits(16), False))
    return out


def traffic(rng: random.Random, count: int, *, flows: int, time_step=(0, 0, 1, 2, 5), jumps=(0,),
            start: int = 0):
    """``count`` (packet, now) pairs over about ``flows`` concurrent conversations."""
    hosts = endpoints(rng, max(4, flows // 2))
    v4 = [h for h in hosts if not h[1]]
    v6 = [h for h in hosts if h[1]]

    def new_conv():
        fam = v6 if rng.random() < 0.3 else v4
        (c, ipv6), (s, _) = rng.choice(fam), rng.choice(fam)
        proto = rng.choice(PROTOS)
        cport = rng.choice([1024, 40000, 80, rng.randrange(65536)])
        sport = rng.choice([80, 443, 53, rng.randrange(65536)])
        if proto == 1 or proto == 58:
            cport, sport = 8, 0
        script = rng.choice(TCP_SCRIPTS) if proto == TCP else OTHER_SCRIPT
        return {"c": (c, cport), "s": (s, sport), "proto": proto, "ipv6": ipv6, "script": list(script)}

    convs = [new_conv() for _ in range(flows)]
    now = start
    for _ in range(count):
        now += rng.choice(time_step)
        if rng.random() < 0.01:
            now += rng.choice(jumps)
        i = rng.randrange(len(convs))
        conv = convs[i]
        if not conv["script"] or rng.random() < 0.03:
            # Finished (or abandoned): sometimes reuse the same 5-tuple, else a new conversation.
            if rng.random() < 0.3 and conv["proto"] == TCP:
                conv["script"] = list(rng.choice(TCP_SCRIPTS))
            else:
                convs[i] = conv = new_conv()
        if rng.random() < 0.1:    # noise: a random direction and flags
            from_client, flags = rng.random() < 0.5, rng.choice([S, S | A, A, F | A, R, P | A, 0])
        else:
            from_client, flags = conv["script"].pop(0)
        (sa, sp), (da, dp) = (conv["c"], conv["s"]) if from_client else (conv["s"], conv["c"])
        yield FlowPacket(conv["proto"], sa, da, sp, dp, flags if conv["proto"] == TCP else 0, conv["ipv6"]), now
