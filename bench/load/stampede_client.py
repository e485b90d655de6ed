#!/usr/bin/python3
"""Stampede client for bench/load/run: N clients ask for one (cold) URL at the same instant.

    stampede_client.py PORT PATH [CLIENTS]

Every client opens its keep-alive connection first; when all are connected a barrier releases
them and each sends one `GET PATH` and reads the whole answer. Prints one JSON line:
{"clients", "ok", "errors", "statuses", "latencies_ms" (sorted), "spread_ms"} where a latency is
measured by each client from just before its request is sent to the last body byte, and
spread_ms is how long it took the clients to send all requests (how "instant" the burst was).
stdlib only; threads so that slow answers do not delay reading the fast ones.
"""

import http.client
import json
import sys
import threading
import time


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    conns = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.connect()
        conns.append(c)
    barrier = threading.Barrier(n)
    lat = [None] * n
    sent = [None] * n
    status = [None] * n
    errors = []

    def one(i):
        c = conns[i]
        try:
            barrier.wait()
            t0 = time.monotonic()
            sent[i] = t0
            c.request("GET", path, headers={"User-Agent": "strata-bench-stampede"})
            r = c.getresponse()
            r.read()
            lat[i] = (time.monotonic() - t0) * 1000.0
            status[i] = r.status
        except Exception as e:  # report, never hang the benchmark
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = {}
    for s in status:
        if s is not None:
            statuses[str(s)] = statuses.get(str(s), 0) + 1
    ts = [t for t in sent if t is not None]
    print(json.dumps({
        "clients": n,
        "ok": statuses.get("200", 0),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "statuses": statuses,
        "latencies_ms": sorted(x for x in lat if x is not None),
        "spread_ms": (max(ts) - min(ts)) * 1000.0 if ts else 0.0,
    }), flush=True)


if __name__ == "__main__":
    main()
