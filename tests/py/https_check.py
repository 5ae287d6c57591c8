"""Over TLS (trusting the CA file given): GET /healthz, then a /ws upgrade and its
first frame. Prints the health status line, the upgrade status line and the frame."""
import base64
import json
import os
import socket
import ssl
import sys

port, ca = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=ca)


def connect():
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="localhost")


with connect() as tls:
    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    print(tls.recv(4096).split(b"\r\n")[0].decode())

with connect() as tls:
    key = base64.b64encode(os.urandom(16)).decode()
    tls.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(4096)
    head, rest = data.split(b"\r\n\r\n", 1)
    print(head.split(b"\r\n")[0].decode())
    while len(rest) < 2:
        rest += tls.recv(4096)
    length, start = rest[1] & 0x7F, 2
    if length == 126:
        while len(rest) < 4:
            rest += tls.recv(4096)
        length, start = int.from_bytes(rest[2:4], "big"), 4
    while len(rest) < start + length:
        rest += tls.recv(4096)
    print(json.loads(rest[start : start + length])["type"])
