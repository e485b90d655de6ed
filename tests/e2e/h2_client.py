#!/usr/bin/python3
"""Frame-level HTTP/2 client for h0001: sends what a real client library refuses to send.

usage: h2_client.py PORT CASE [DIR]   prints one line: the first stream outcome seen
  ("reset CODE", "response STATUS", "goaway CODE", "closed").
  CASE reload: GET /h2reload/a, create DIR/ready, wait for DIR/go, GET /h2reload/b on the same
  connection; prints "response STATUS STATUS".
"""
import os
import socket
import struct
import sys
import time

import hpack

import h2.config
import h2.connection
import h2.events

port, case = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port), timeout=5)
config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                   validate_outbound_headers=False,
                                   normalize_outbound_headers=False)
conn = h2.connection.H2Connection(config=config)
conn.initiate_connection()


def request(path):
    return [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", path)]


base = request("/h2bad")
if case == "transfer-encoding":
    conn.send_headers(1, base + [("transfer-encoding", "chunked")], end_stream=True)
elif case == "connection":
    conn.send_headers(1, base + [("connection", "keep-alive")], end_stream=True)
elif case == "upper-case":
    conn.send_headers(1, base + [("X-Upper", "1")], end_stream=True)
elif case == "content-length":
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", "/h2bad"),
            ("content-length", "3")]
    conn.send_headers(1, post)
    conn.send_data(1, b"hello", end_stream=True)
elif case == "header-size":
    # One field larger than limits.max_header_bytes; the library splits it into CONTINUATIONs.
    conn.send_headers(1, base + [("x-big", "a" * 20000)], end_stream=True)
elif case == "continuation-flood":
    # A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames
    # (type 9) past http2.max_continuations. Written by hand: h2 never sends this.
    sock.sendall(conn.data_to_send())
    encoder = hpack.Encoder()
    block = encoder.encode(base)
    frames = struct.pack(">I", len(block))[1:] + bytes([1, 0x1]) + struct.pack(">I", 1) + block
    piece = encoder.encode([("x-flood", "b" * 64)])
    for _ in range(200):
        frames += struct.pack(">I", len(piece))[1:] + bytes([9, 0]) + struct.pack(">I", 1) + piece
    sock.sendall(frames)
elif case == "reload":
    directory = sys.argv[3]

    def get(stream_id, path):
        conn.send_headers(stream_id, request(path), end_stream=True)
        sock.sendall(conn.data_to_send())
        status = None
        while True:
            data = sock.recv(65536)
            if not data:
                return "closed"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[":status"]
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    sock.sendall(conn.data_to_send())
                    return status
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return "goaway %d" % event.error_code
            sock.sendall(conn.data_to_send())

    first = get(1, "/h2reload/a")
    open(os.path.join(directory, "ready"), "w").close()
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(directory, "go")) and time.monotonic() < deadline:
        time.sleep(0.01)  # waits on the test's signal file, not on strata
    print("response %s %s" % (first, get(3, "/h2reload/b")))
    sys.exit(0)
elif case == "slow-reader":
    # Stream 1 downloads 16 MiB but its stream window is never reopened (the connection's is):
    # stream 3, asked once stream 1's first DATA arrived, must still complete.
    # Prints "fast STATUS slow-bytes N".
    conn.send_headers(1, request("/bytes/16777216?slow"), end_stream=True)
    sock.sendall(conn.data_to_send())
    slow_bytes, asked, fast_status = 0, False, None
    while fast_status is None:
        data = sock.recv(65536)
        if not data:
            print("closed")
            sys.exit(0)
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                if event.stream_id == 1:
                    slow_bytes += len(event.data)
                    conn.increment_flow_control_window(event.flow_controlled_length)
                    if not asked:
                        asked = True
                        conn.send_headers(3, request("/bytes/1024?fast"), end_stream=True)
                else:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived) and event.stream_id == 3:
                fast_status = dict(event.headers)[":status"]
            elif isinstance(event, h2.events.ConnectionTerminated):
                print("goaway %d" % event.error_code)
                sys.exit(0)
        sock.sendall(conn.data_to_send())
    print("fast %s slow-bytes %d" % (fast_status, slow_bytes))
    sys.exit(0)
elif case == "rapid-reset":
    for i in range(400):
        sid = 1 + 2 * i
        conn.send_headers(sid, base, end_stream=True)
        conn.reset_stream(sid)
else:
    sys.exit("unknown case")
sock.sendall(conn.data_to_send())
outcome = None
try:
    while outcome is None:
        data = sock.recv(65536)
        if not data:
            outcome = "closed"
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.StreamReset) and case != "rapid-reset":
                outcome = "reset %d" % event.error_code
            elif isinstance(event, h2.events.ResponseReceived) and case != "rapid-reset":
                outcome = "response " + dict(event.headers)[":status"]
            elif isinstance(event, h2.events.ConnectionTerminated):
                outcome = "goaway %d" % event.error_code
            if outcome:
                break
        sock.sendall(conn.data_to_send())
except (socket.timeout, ConnectionError) as e:
    outcome = outcome or "error " + type(e).__name__
print(outcome)
