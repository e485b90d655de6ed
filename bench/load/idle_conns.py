#!/usr/bin/python3
"""Open N keep-alive client connections to a proxy, send one request on each, keep them open.

Used by bench/load/run to measure a proxy's memory per idle keep-alive client connection.

Connections are opened in batches: a batch is connected, one GET is sent on each connection and
every response is read completely before the next batch starts. That bounds how many requests are
in flight at once, so the proxy never needs more than `--batch` upstream connections and the
origin is never flooded. After the last batch the script prints one line to stdout

    READY <open> <failed>

and then holds every connection open until stdin closes (or SIGTERM), then closes them and exits.
A connection the proxy closed while we held it is reported on stderr at exit ("closed-by-peer N").

stdlib only. The response check is deliberately minimal: status line must be 200 and the body is
read by Content-Length (the peers in this benchmark all answer with Content-Length); it is not an
HTTP parser and is only used against the benchmark's own origins.
"""

import argparse
import resource
import selectors
import signal
import socket
import ssl
import sys
import time


def raiseNofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        # We are root in the bench environment; try to raise the hard limit as well.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError):
            sys.exit(f"idle_conns: RLIMIT_NOFILE is {soft}, need {need}; raise ulimit -n")


class Conn:
    __slots__ = ("sock", "buf", "sent", "done", "need")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.sent = 0
        self.done = False
        self.need = None  # total bytes (head + body) once the head is complete


def responseComplete(conn):
    """True once a full 200 response with Content-Length has been read; raises on anything else."""
    if conn.need is None:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = conn.buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            raise ValueError(f"unexpected status line: {lines[0]!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise ValueError("response without Content-Length")
        conn.need = end + 4 + length
    return len(conn.buf) >= conn.need


def runBatch(host, port, count, request, timeout):
    sel = selectors.DefaultSelector()
    conns = []
    failed = 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((host, port))
        if err not in (0, 115):  # 115 = EINPROGRESS
            s.close()
            failed += 1
            continue
        c = Conn(s)
        conns.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
    pending = len(conns)
    deadline = time.monotonic() + timeout
    while pending > 0:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, mask in sel.select(timeout=left):
            c = key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    c.sent += c.sock.send(request[c.sent:])
                    if c.sent == len(request):
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed before the response was complete")
                c.buf += data
                if responseComplete(c):
                    c.done = True
                    c.buf = b""
                    sel.unregister(c.sock)
                    pending -= 1
            except (OSError, ValueError) as e:
                print(f"idle_conns: connection failed: {e}", file=sys.stderr)
                sel.unregister(c.sock)
                c.sock.close()
                c.sock = None
                pending -= 1
    sel.close()
    kept = []
    for c in conns:
        if c.done:
            kept.append(c.sock)
        else:
            failed += 1
            if c.sock is not None:
                c.sock.close()
    return kept, failed


def openH2(host, port, path, tls, timeout):
    """One HTTP/2 connection (TLS with ALPN h2, or prior-knowledge h2c) that completed one GET.

    Sequential and blocking: the h2 library is sans-I/O, and the memory scenario only needs the
    connections to exist, not to be opened fast."""
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection((host, port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        if sock.selected_alpn_protocol() != "h2":
            raise ConnectionError("the proxy did not choose h2 by ALPN")
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "https" if tls else "http"),
                          (":authority", f"{host}:{port}"), (":path", path),
                          ("user-agent", "strata-bench-idle")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status = None
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the response was complete")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers).get(b":status")
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                sock.sendall(conn.data_to_send())
                if status != b"200":
                    raise ConnectionError(f"status {status}")
                return sock, conn
        sock.sendall(conn.data_to_send())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    # 64 = the proxies' upstream keep-alive pool: the burst never needs extra upstream conns.
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per batch")
    ap.add_argument("--h2", action="store_true", help="HTTP/2 connections (python3-h2)")
    ap.add_argument("--tls", action="store_true", help="with --h2: TLS with ALPN h2, else h2c")
    args = ap.parse_args()

    raiseNofile(args.count + 64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               f"User-Agent: strata-bench-idle\r\n\r\n").encode()

    held = []
    failed = 0
    h2_sessions = []  # keep the h2 state objects alive beside their sockets
    while args.h2 and len(held) + failed < args.count:
        try:
            sock, conn = openH2(args.host, args.port, args.path, args.tls, args.timeout)
            held.append(sock)
            h2_sessions.append(conn)
        except (OSError, ConnectionError) as e:
            print(f"idle_conns: connection failed: {e}", file=sys.stderr)
            failed += 1
    while len(held) + failed < args.count:
        n = min(args.batch, args.count - len(held) - failed)
        kept, bad = runBatch(args.host, args.port, n, request, args.timeout)
        held.extend(kept)
        failed += bad
    print(f"READY {len(held)} {failed}", flush=True)

    try:
        sys.stdin.read()  # hold until the harness closes our stdin
    finally:
        # Count connections the proxy dropped while they were idle (EOF is readable at once).
        closed = 0
        for s in held:
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    closed += 1
            except (BlockingIOError, ssl.SSLWantReadError):
                pass  # nothing to read: still open (a TLS socket says so with WantRead)
            except OSError:
                closed += 1
            s.close()
        print(f"closed-by-peer {closed}", file=sys.stderr)


if __name__ == "__main__":
    main()
