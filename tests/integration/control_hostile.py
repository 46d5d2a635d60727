#!/usr/bin/env python3
"""Hostile local clients of the control socket and the metrics endpoint (issue 26, part 4),
for hostile-checks.sh. Standard library only.

  control_hostile.py --control SOCKET --metrics HOST:PORT

Each case prints "PASS: NAME DETAIL" or "FAIL: NAME DETAIL"; the exit status is 1 if any failed.
The limits it checks are the attach's (tools/iscsi-mpio/control.hpp and service.cpp): request
lines of at most 256 bytes, 16 control connections at once, 5 s per control exchange; request
heads of at most 8192 bytes, 16 metrics connections at once, 10 s per HTTP exchange.
"""

import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

MAX_REQUEST_LINE = 256
MAX_CONNECTIONS = 16
CONTROL_EXCHANGE_S = 5
HTTP_EXCHANGE_S = 10
MAX_REQUEST_HEAD = 8192

results = []
lock = threading.Lock()


def report(name, ok, detail):
    with lock:
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}: {name} {detail}", flush=True)


def control_socket(path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A blocking connect: a unix socket whose backlog is full makes a non-blocking one fail
    # with EAGAIN at once, where a blocking one waits for the server to accept.
    s.connect(path)
    s.settimeout(timeout)
    return s


def http_socket(address, timeout=15.0):
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_all(s, limit=1 << 20):
    """Everything until the server closes (or resets after its answer), at most `limit` bytes."""
    out = b""
    while len(out) < limit:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        out += chunk
    return out


def send_ignoring_close(s, data):
    """Sends what the server takes; a server that closes after its limit is what is tested."""
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass


def ask_control(path, request):
    with control_socket(path, 5) as s:
        s.sendall(request + b"\n")
        return read_all(s)


def scrape(address, request=b"GET /metrics HTTP/1.0\r\n\r\n"):
    with http_socket(address) as s:
        send_ignoring_close(s, request)
        return read_all(s)


def status_line(answer):
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


# ---------------------------------------------------------------- control socket


def control_long_line(path):
    with control_socket(path) as s:
        send_ignoring_close(s, b"a" * (64 << 10))
        answer = read_all(s).decode(errors="replace")
    want = f"error: request longer than {MAX_REQUEST_LINE} bytes"
    report("control-long-line", answer.startswith(want), f"64 KiB without a newline: {answer.strip()!r}")


def control_garbage(path):
    for name, junk in (("control-garbage", b"\x00\xff\x1b[2J\x7f\x80\x07"),
                       ("control-garbage-argument", b"fail-path \x1b]0;owned\x07\xff:3260")):
        answer = ask_control(path, junk).decode(errors="replace")
        # One line of printable ASCII: the client's bytes are quoted with '?' for the others.
        printable = all(0x20 <= ord(c) < 0x7F for c in answer[:-1])
        ok = answer.startswith("error: ") and answer.count("\n") == 1 and printable
        report(name, ok, f"{len(junk)} bytes of junk: {answer.strip()[:70]!r}...")


def control_http(path):
    with control_socket(path) as s:
        send_ignoring_close(s, b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: curl\r\n\r\n")
        answer = read_all(s).decode(errors="replace")
    # One answer to the first line, then the connection is closed: the rest is never a request.
    ok = answer.startswith("error: ") and answer.count("\n") == 1
    report("control-http", ok, f"an HTTP request: {answer.strip()[:60]!r}...")


def slowloris(name, connect, limit_s, payload):
    """One byte a second; passes when the server closes within limit_s + 3 s."""
    s = connect()
    s.settimeout(1.0)
    started = time.monotonic()
    closed_after = None
    for i in range(int(limit_s) + 10):
        try:
            s.send(payload[i % len(payload) : i % len(payload) + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - started
            break
        try:
            if s.recv(4096) == b"":
                closed_after = time.monotonic() - started
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed_after = time.monotonic() - started
            break
    s.close()
    ok = closed_after is not None and limit_s - 0.5 <= closed_after <= limit_s + 3
    shown = "not closed" if closed_after is None else f"closed after {closed_after:.1f} s"
    report(name, ok, f"one byte a second: {shown} (limit {limit_s} s)")


def idle_flood(name, connect, count, busy_prefix, probe):
    """`count` idle connections at once: those above the limit are answered busy at once."""
    held = []
    busy = 0
    other = 0
    try:
        for _ in range(count):
            s = connect()
            held.append(s)
        # Well inside the exchange time, after which the server closes the ones it holds.
        time.sleep(1.0)
        for s in held:
            s.setblocking(False)
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue  # held: waiting for its request
            except ConnectionResetError:
                data = b""
            if data.startswith(busy_prefix):
                busy += 1
            else:
                other += 1
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    answered = probe()
    ok = busy == count - MAX_CONNECTIONS and other == 0 and answered
    report(name, ok, f"{count} idle connections: {count - busy - other} held, {busy} answered busy, "
           f"{other} other; a request after them {'is' if answered else 'is NOT'} answered")


def disconnect_mid_reply(name, connect, request, rounds):
    """Asks and goes away without reading (an RST where TCP has one), `rounds` times."""
    for i in range(rounds):
        s = connect()
        if s.family != socket.AF_UNIX:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        send_ignoring_close(s, request)
        if i % 2:
            try:
                s.recv(7)  # half an answer, then gone
            except OSError:
                pass
        s.close()


def control_cases(path):
    control_long_line(path)
    control_garbage(path)
    control_http(path)
    disconnect_mid_reply("control-disconnect", lambda: control_socket(path), b"json\n", 300)
    alive = ask_control(path, b"stats").startswith(b"{")
    report("control-disconnect", alive, f"300 requests left unread or half read: stats {'answers' if alive else 'does NOT answer'}")


# ---------------------------------------------------------------- metrics endpoint


def http_cases(address):
    rng = random.Random(26)
    junk = bytes(rng.randrange(256) for _ in range(4000)) + b"\r\n\r\n"
    cases = [
        ("http-garbage", junk, "400"),
        ("http-bare-lf", b"GET /metrics HTTP/1.1\nHost: x\n\n", "400"),
        ("http-post", b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "405"),
        ("http-path", b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", "404"),
        ("http-huge-head", b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (1 << 20) + b"\r\n\r\n", "431"),
        ("http-nul", b"GET /metrics\x00 HTTP/1.1\r\n\r\n", "400"),
    ]
    for name, request, want in cases:
        answer = scrape(address, request)
        line = status_line(answer)
        ok = line.startswith("HTTP/1.0 " + want)
        report(name, ok, f"{len(request)} bytes: {line!r}")
    disconnect_mid_reply("http-disconnect", lambda: http_socket(address), b"GET /metrics HTTP/1.0\r\n\r\n", 300)
    answer = scrape(address)
    ok = status_line(answer).startswith("HTTP/1.0 200") and b"iscsi_mpio_path_state" in answer
    report("http-disconnect", ok, f"300 scrapes reset before or during the answer: the next one gets {status_line(answer)!r}")


def flood_cases(path, address):
    """After the other cases: the counts assume no other client holds a connection."""
    time.sleep(0.5)
    idle_flood("control-idle-flood", lambda: control_socket(path), 100, b"error: too many control",
               lambda: ask_control(path, b"stats").startswith(b"{"))
    idle_flood("http-idle-flood", lambda: http_socket(address), 100, b"HTTP/1.0 503",
               lambda: status_line(scrape(address)).startswith("HTTP/1.0 200"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", required=True)
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    # The two slow clients run beside the other cases: their time is the exchange limits.
    slow = [
        threading.Thread(target=slowloris, args=("control-slowloris", lambda: control_socket(args.control),
                                                 CONTROL_EXCHANGE_S, b"stats")),
        threading.Thread(target=slowloris, args=("http-slowloris", lambda: http_socket(args.metrics),
                                                 HTTP_EXCHANGE_S, b"GET /metrics HTTP/1.0\r\n")),
    ]
    for t in slow:
        t.start()
    control_cases(args.control)
    http_cases(args.metrics)
    for t in slow:
        t.join()
    flood_cases(args.control, args.metrics)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
