#!/usr/bin/env python3
"""TLS handshake load for bench/load/run: every request on a new TLS connection.

    tls_handshakes.py PORT PATH SECONDS CONCURRENCY {full|resume}

Each of CONCURRENCY threads loops: connect, handshake (offering the last session in "resume"
mode), GET PATH, read the response, close (with close_notify, so the session stays resumable).
The client does not verify the certificate (its CPU is not what is measured; the proxy's is).
Prints wrk-like lines that bench/load/run's parseWrk() reads:

    N requests in S s
    Requests/sec: R
    50% Xms / 99% Yms
    resumed: K            (handshakes the server resumed)
    Socket errors: connect E, read 0, write 0, timeout 0

Python's GIL caps the client near a few thousand handshakes/s; CPU per handshake of the pinned
proxy stays meaningful whatever the client's speed (the harness's method for every scenario).
"""
import socket
import ssl
import sys
import threading
import time


def main():
    port, path, seconds, concurrency, mode = (int(sys.argv[1]), sys.argv[2], float(sys.argv[3]),
                                              int(sys.argv[4]), sys.argv[5])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    request = f"GET {path} HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n".encode()
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies, counts = [], {"ok": 0, "resumed": 0, "errors": 0}

    def worker():
        session = None
        local, ok, resumed, errors = [], 0, 0, 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname="bench.test",
                                         session=session if mode == "resume" else None) as s:
                        s.sendall(request)
                        data = b""
                        while True:
                            chunk = s.recv(65536)
                            if not chunk:
                                break
                            data += chunk
                        if not data.startswith(b"HTTP/1.1 200"):
                            raise OSError("bad response")
                        resumed += 1 if s.session_reused else 0
                        if mode == "resume":
                            session = s.session  # TLS 1.3: the ticket arrived with the data
                        try:
                            s.unwrap()
                        except (OSError, ssl.SSLError):
                            pass
                ok += 1
                local.append(time.monotonic() - t0)
            except (OSError, ssl.SSLError):
                errors += 1
                session = None
        with lock:
            latencies.extend(local)
            counts["ok"] += ok
            counts["resumed"] += resumed
            counts["errors"] += errors

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    latencies.sort()

    def pct(p):
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    print(f"{counts['ok']} requests in {wall:.2f}s")
    print(f"Requests/sec: {counts['ok'] / wall:.2f}")
    print(f"     50%    {pct(0.50):.2f}ms")
    print(f"     99%    {pct(0.99):.2f}ms")
    print(f"resumed: {counts['resumed']}")
    print(f"Socket errors: connect {counts['errors']}, read 0, write 0, timeout 0")


if __name__ == "__main__":
    main()
