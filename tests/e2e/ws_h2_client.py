#!/usr/bin/python3
"""WebSocket over HTTP/2 (RFC 8441) client for w0001, on Debian's python3-h2.

usage: ws_h2_client.py PORT CASE
  echo     checks SETTINGS_ENABLE_CONNECT_PROTOCOL, opens /ws?hello=from-h2 with an extended
           CONNECT, reads the origin's hello, echoes a text, a 200 kB binary message and a ping,
           closes; prints "ok" or what went wrong.
  version  an extended CONNECT with sec-websocket-version 8; prints "status N".
  refused  an extended CONNECT to /nows/ws (websocket: false); prints "status N".
  other    an extended CONNECT for :protocol connect-udp; prints "status N".
"""
import os
import socket
import struct
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings

port, case = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
    client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
    normalize_outbound_headers=False))
conn.initiate_connection()
sock.sendall(conn.data_to_send())

events = []
received = bytearray()
state = {"ended": False, "reset": None, "status": None, "connect_protocol": None}


def pump():
    data = sock.recv(65536)
    if not data:
        raise SystemExit("closed")
    for e in conn.receive_data(data):
        if isinstance(e, h2.events.RemoteSettingsChanged):
            s = e.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
            if s is not None:
                state["connect_protocol"] = s.new_value
        elif isinstance(e, h2.events.ResponseReceived):
            state["status"] = dict(e.headers).get(":status")
        elif isinstance(e, h2.events.DataReceived):
            received.extend(e.data)
            conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, h2.events.StreamEnded):
            state["ended"] = True
        elif isinstance(e, h2.events.StreamReset):
            state["reset"] = e.error_code
        events.append(e)
    out = conn.data_to_send()
    if out:
        sock.sendall(out)


def until(predicate):
    while not predicate():
        pump()


def send_all(stream, data, end=False):
    view = memoryview(data)
    while view:
        window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
        if window <= 0:
            pump()
            continue
        conn.send_data(stream, bytes(view[:window]))
        sock.sendall(conn.data_to_send())
        view = view[window:]
    if end:
        conn.end_stream(stream)
        sock.sendall(conn.data_to_send())


def frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame():
    """One unmasked server frame from `received`: (opcode, payload)."""
    def need(n):
        until(lambda: len(received) >= n or state["reset"] is not None)
        if len(received) < n:
            raise SystemExit(f"reset {state['reset']}")
    need(2)
    opcode, n = received[0] & 0x0F, received[1] & 0x7F
    if received[1] & 0x80:
        raise SystemExit("server frame masked")
    at = 2
    if n == 126:
        need(4)
        n, at = struct.unpack(">H", received[2:4])[0], 4
    elif n == 127:
        need(10)
        n, at = struct.unpack(">Q", received[2:10])[0], 10
    need(at + n)
    payload = bytes(received[at:at + n])
    del received[:at + n]
    return opcode, payload


def connect(path, protocol="websocket", version="13"):
    until(lambda: state["connect_protocol"] is not None)
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "CONNECT"), (":protocol", protocol),
                               (":scheme", "http"), (":authority", "ws.test"), (":path", path),
                               ("sec-websocket-version", version)])
    sock.sendall(conn.data_to_send())
    until(lambda: state["status"] is not None or state["reset"] is not None)
    return stream


if case == "echo":
    try:
        until(lambda: state["connect_protocol"] is not None)
    except (SystemExit, socket.timeout):
        print("no SETTINGS_ENABLE_CONNECT_PROTOCOL")
        sys.exit(0)
    if state["connect_protocol"] != 1:
        print(f"SETTINGS_ENABLE_CONNECT_PROTOCOL {state['connect_protocol']}")
        sys.exit(0)
    stream = connect("/ws?hello=from-h2")
    if state["status"] != "200":
        print(f"status {state['status']} reset {state['reset']}")
        sys.exit(0)
    problems = []
    if read_frame() != (0x1, b"from-h2"):
        problems.append("hello")
    big = bytes((i * 7) & 0xFF for i in range(200000))
    for opcode, payload in [(0x1, b"hello over h2"), (0x2, big), (0x9, b"ping!")]:
        send_all(stream, frame(opcode, payload))
        want = 0xA if opcode == 0x9 else opcode
        got = read_frame()
        if got != (want, payload):
            problems.append(f"echo of opcode {opcode}: got opcode {got[0]}, {len(got[1])} bytes")
    send_all(stream, frame(0x8, b"\x03\xe8"))
    if read_frame() != (0x8, b"\x03\xe8"):
        problems.append("close")
    # The origin closes after its close frame: strata ends the stream's DATA.
    until(lambda: state["ended"] or state["reset"] is not None)
    if state["reset"] is not None:
        problems.append(f"reset {state['reset']}")
    send_all(stream, b"", end=True)
    print("ok" if not problems else "; ".join(problems))
elif case in ("version", "refused", "other"):
    path = "/nows/ws" if case == "refused" else "/ws"
    connect(path, protocol="connect-udp" if case == "other" else "websocket",
            version="8" if case == "version" else "13")
    print(f"status {state['status']}" if state["status"] else f"reset {state['reset']}")
