#!/usr/bin/python3
"""Frame-level HTTP/2 client for h0001: sends what a real client library refuses to send.

usage: h2_client.py PORT CASE   prints one line: the first stream outcome seen
  ("reset CODE", "response STATUS", "goaway CODE", "closed").
"""
import socket
import sys

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
base = [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/h2bad")]
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
