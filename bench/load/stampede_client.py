#!/usr/bin/python3
"""Stampede client for bench/load/run: N clients ask for one (cold) URL at the same instant.

    stampede_client.py PORT[,PORT...] PATH [CLIENTS] [HOST]

With several ports (bench/load/cluster: one per proxy instance), CLIENTS clients go to each, in
one burst, all with the same Host (HOST, default "bench.test") so every instance uses one cache
key; with one port the Host is 127.0.0.1:PORT.

All N connections are opened first; then one tight loop sends `GET PATH` (with
`Connection: close`) on every one of them, and a single epoll loop reads the answers. A client's
latency runs from just before its request was sent to the end of its answer (the server closing
the connection after the response). One thread and non-blocking sockets, so the burst leaves
within a few milliseconds and slow answers never delay reading fast ones (a thread per client
spreads a 200-request burst over 30+ ms under the GIL). Each answer is then parsed by
http.client (status, full body). Prints one JSON line: {"clients", "ok", "errors",
"first_error", "statuses", "latencies_ms" (sorted), "spread_ms" (time to send the burst)}.
stdlib only.
"""

import http.client
import io
import json
import selectors
import socket
import sys
import time


class _Recorded:
    """A socket stand-in so http.client can parse bytes we already read."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def makefile(self, *_args, **_kwargs):
        return self._f


def main():
    ports, path = [int(p) for p in sys.argv[1].split(",")], sys.argv[2]
    per_port = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    host = sys.argv[4] if len(sys.argv) > 4 else (
        f"127.0.0.1:{ports[0]}" if len(ports) == 1 else "bench.test")
    n = per_port * len(ports)
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
           "User-Agent: strata-bench-stampede\r\nConnection: close\r\n\r\n").encode()
    socks = []
    # Interleaved over the ports, so no instance gets its burst first.
    for _ in range(per_port):
        for port in ports:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            socks.append(s)
    sel = selectors.DefaultSelector()
    sent, done, data, errors = [0.0] * n, [None] * n, [bytearray() for _ in range(n)], []
    for i, s in enumerate(socks):
        sent[i] = time.monotonic()
        s.send(req)  # ~100 bytes into an empty socket buffer: never partial
    spread = (time.monotonic() - sent[0]) * 1000.0
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    left = n
    deadline = time.monotonic() + 60
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            i = key.data
            try:
                chunk = socks[i].recv(1 << 20)
            except OSError as e:
                chunk = b""
                errors.append(f"{type(e).__name__}: {e}")
            if chunk:
                data[i] += chunk
                continue
            done[i] = time.monotonic()
            sel.unregister(socks[i])
            socks[i].close()
            left -= 1
    statuses, lat = {}, []
    for i in range(n):
        if done[i] is None:
            errors.append("no complete answer within 60 s")
            socks[i].close()
            continue
        try:
            r = http.client.HTTPResponse(_Recorded(bytes(data[i])))
            r.begin()
            r.read()
        except (http.client.HTTPException, ValueError) as e:
            errors.append(f"bad answer ({type(e).__name__}: {e}): {bytes(data[i][:80])!r}")
            continue
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        lat.append((done[i] - sent[i]) * 1000.0)
    print(json.dumps({
        "clients": n,
        "ok": statuses.get("200", 0),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "statuses": statuses,
        "latencies_ms": sorted(lat),
        "spread_ms": spread,
    }), flush=True)


if __name__ == "__main__":
    main()
