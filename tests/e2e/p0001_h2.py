#!/usr/bin/python3
"""HTTP/2 after a PROXY protocol header, for p0001.

usage: p0001_h2.py PORT HEADER_HEX plain|tls   prints the X-Forwarded-For the origin echoed
  (GET /headers), or "error ..." when no response came.
"""
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events

port, header, mode = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port), timeout=5)
sock.sendall(header)  # before the TLS ClientHello, before the HTTP/2 preface
if mode == "tls":
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(sock, server_hostname="a.test")
    if sock.selected_alpn_protocol() != "h2":
        print("error alpn", sock.selected_alpn_protocol())
        sys.exit(0)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
conn.send_headers(1, [(":method", "GET"), (":scheme", "https" if mode == "tls" else "http"),
                      (":authority", "pp.test"), (":path", "/headers")], end_stream=True)
sock.sendall(conn.data_to_send())
body = b""
done = False
while not done:
    try:
        data = sock.recv(65536)
    except OSError as e:
        print("error", e)
        sys.exit(0)
    if not data:
        print("error closed")
        sys.exit(0)
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.DataReceived):
            body += event.data
            conn.acknowledge_received_data(len(event.data), event.stream_id)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            done = True
    sock.sendall(conn.data_to_send())
for line in body.decode().splitlines():
    if line.lower().startswith("x-forwarded-for:"):
        print(line.split(":", 1)[1].strip())
        break
else:
    print("error no X-Forwarded-For")
