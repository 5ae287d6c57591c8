"""Holds many HTTP requests open without finishing their headers, as an attacker
would, from one source address.

Usage: half_requests.py PORT BIND_IP COUNT HOLD_SECS
Prints "ready OPENED" once every connection was tried, then, after HOLD_SECS (or as
soon as the server has closed them all), one JSON line:
{"opened": N, "refused_at_connect": N, "closed_by_server": N}.
"""
import json
import resource
import selectors
import socket
import sys
import time

port, bind_ip, count, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

sel = selectors.DefaultSelector()
opened = refused = 0
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((bind_ip, 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        opened += 1
    except OSError:
        refused += 1
        s.close()
print(f"ready {opened}", flush=True)

closed = 0
deadline = time.monotonic() + hold
while closed < opened and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            closed += 1
print(json.dumps({"opened": opened, "refused_at_connect": refused, "closed_by_server": closed}), flush=True)
