#!/usr/bin/python3
"""Memory bound of HTTP/2 flow control (issue #9): STREAMS concurrent streams on one h2c
connection, each downloading SIZE bytes through strata, from a client that reads slowly.

Starts strata-origin and strata (1 worker, h2c listener, pass-through route), records strata's
RSS before the connection, opens the streams, lets the client take only --read-rate bytes per
second in all (so every stream stalls on its window and strata's buffers fill), samples strata's
RSS for --hold seconds and prints the growth beside the bound the design documents:
per stream http2.window_bytes of request window (unused here) plus the transaction's 256 KiB
output high watermark plus one 64 KiB upstream read, i.e. about 320 KiB a stream.

  bench/load/h2_slow_readers.py [--strata-bin build-bench/strata] [--streams 100] [--size 16MiB]
stdlib + python3-h2 only.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import h2.config
import h2.connection
import h2.events


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} never opened")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata-bin", default="build-bench/strata")
    ap.add_argument("--origin-bin", default="build-bench/tools/strata-origin")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--size", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--read-rate", type=int, default=256 * 1024, help="bytes/s taken in all")
    ap.add_argument("--hold", type=float, default=10.0)
    args = ap.parse_args()

    work = tempfile.mkdtemp()
    origin_port, proxy_port = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen([args.origin_bin, "--listen", f"127.0.0.1:{origin_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(origin_port)
        conf = os.path.join(work, "strata.yaml")
        with open(conf, "w") as f:
            f.write(f"""workers: 1
listeners: [{{name: h2c, bind: "127.0.0.1:{proxy_port}", protocols: [h2]}}]
upstreams: {{app: {{servers: ["127.0.0.1:{origin_port}"]}}}}
routes: [{{upstream: app}}]
logging: {{access_log: "off"}}
limits: {{send_timeout: 5m}}
""")
        strata = subprocess.Popen([args.strata_bin, "-c", conf],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(strata)
        wait_port(proxy_port)
        time.sleep(0.5)
        base = rss_kib(strata.pid)

        sock = socket.create_connection(("127.0.0.1", proxy_port))
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        ids = []
        for i in range(args.streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                    (":authority", "bench"), (":path", f"/bytes/{args.size}")],
                              end_stream=True)
            ids.append(sid)
        sock.sendall(conn.data_to_send())
        sock.settimeout(0.1)
        received = {sid: 0 for sid in ids}
        statuses = {}
        peak = base
        credit = 0.0
        last = time.time()
        start = last
        owed = []  # (stream, bytes) received but not yet acknowledged: the slow reader's backlog
        while time.time() - start < args.hold:
            try:
                data = sock.recv(65536)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        statuses[ev.stream_id] = dict(ev.headers).get(b":status")
                    elif isinstance(ev, h2.events.DataReceived):
                        received[ev.stream_id] += len(ev.data)
                        owed.append((ev.stream_id, ev.flow_controlled_length))
            except socket.timeout:
                pass
            now = time.time()
            credit += (now - last) * args.read_rate
            last = now
            while owed and owed[0][1] <= credit:  # window reopened only as fast as we "read"
                sid, n = owed.pop(0)
                credit -= n
                conn.acknowledge_received_data(n, sid)
            sock.sendall(conn.data_to_send())
            peak = max(peak, rss_kib(strata.pid))
        ok = sum(1 for s in statuses.values() if s == b"200")
        growth = peak - base
        bound_kib = args.streams * (256 + 64)
        print(f"streams {args.streams} x {args.size} bytes, {ok} answered 200, "
              f"client took {sum(received.values())} bytes in {args.hold:.0f}s")
        print(f"strata RSS: idle {base} KiB, peak {peak} KiB, growth {growth} KiB "
              f"({growth / args.streams:.1f} KiB per stream); documented bound {bound_kib} KiB")
        sock.close()
        return 0 if growth <= bound_kib and ok == args.streams else 1
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
