#!/usr/bin/python3
"""Verified writes and reads with a stamp in every block, on a region of an NBD export that the
other clients leave alone, for faults judged per request (tools/soak) and for late stale writes
(tests/integration/multipath-suite.sh).

  nbd_probe.py outage     URI BACKING --offset N --size N --stop-file F --seconds S --log LOG
      One connection, one request at a time: a 64 KiB block written with a stamp (block,
      generation), then read back, until --stop-file exists (at most --seconds). LOG gets one
      line per request, "START END OP BLOCK ok|ERRNO" (wall-clock seconds), for the caller to
      judge each error against the fault's timing (no_path_retry N: an error is expected only
      once N polling intervals have passed with no path). A failed write leaves its block
      unknown until it is written again. A second connection reads a block every 20 ms
      (logged as "probe-read"): a write in flight on a path when the last one died is held
      until it is proven dead or done, past no_path_retry (docs/architecture.md, "Held
      writes"), and would keep a lone client from asking anything else; requests that arrive
      during the outage are the ones no_path_retry fails.
  nbd_probe.py multi-conn URI BACKING ...the same options...
      Four connections to the export. When it advertises NBD_FLAG_CAN_MULTI_CONN (proto.md: a
      flush on any connection makes the writes every connection completed before it visible to
      all), each block is written on one connection, flushed on the next and read back on a
      third; without the flag each connection flushes and reads its own writes.
  nbd_probe.py hot        URI BACKING --offset N --size N --seconds S [--settle S] [--depth N]
      A hot region kept rewritten: --depth requests in flight on one connection, each block read
      and checked against the generation it must hold, then written with the next, in turn, for
      --seconds. A write that was held on a dead path and lands late puts an older generation
      back over a newer one: the next read of that block finds it, and a late write that lands
      after the last rewrite is found by the final check, made after --settle seconds.

At the end (every mode) each block it knows is read once more through NBD and, after a flush,
from the target's BACKING file: a mismatch there is a lost or misplaced write, or a stale write
that landed late. The last line is "nbd_probe: PASS|FAIL ..." with the counts. Exit status: 0
clean, 1 a mismatch (or, in hot mode, any error), 2 bad usage or setup. In outage and
multi-conn mode errors are only counted: the caller judges them from LOG.
"""

import argparse
import hashlib
import os
import sys
import threading
import time

import nbd

BLOCK = 64 * 1024


def pattern(block, generation):
    # The stamp first (so a mismatch says which write is there), then bytes that differ for
    # every (block, generation).
    stamp = b"SOAKPROBE %12d %12d " % (block, generation)
    fill = hashlib.sha256(stamp).digest() * (BLOCK // 32)
    return (stamp + fill)[:BLOCK]


def describe(data):
    head = bytes(data[:40])
    if head.startswith(b"SOAKPROBE "):
        fields = head.split()
        return "block %d generation %d" % (int(fields[1]), int(fields[2]))
    return "no stamp (%r...)" % head[:16]


def error_name(error):
    # libnbd gives the errno as its symbolic name when it has one.
    return str(error.errno) if error.errno is not None else "error"


class Probe:
    def __init__(self, args):
        self.args = args
        self.blocks = args.size // BLOCK
        self.generation = {}  # block -> generation it must hold; absent: never written or unknown
        self.writes = self.reads = self.errors = 0
        self.mismatches = []
        self.longest = 0.0

    def offset_of(self, block):
        return self.args.offset + block * BLOCK

    def check(self, block, data, where):
        want = self.generation.get(block)
        if want is None or bytes(data) == pattern(block, want):
            return
        self.mismatches.append("block %d (offset %d) %s: want generation %d, found %s"
                               % (block, self.offset_of(block), where, want, describe(data)))

    def final_check(self, handle):
        """Every known block through NBD, then (after a flush) in the backing file."""
        try:
            handle.flush()
            for block in sorted(self.generation):
                self.check(block, handle.pread(BLOCK, self.offset_of(block)), "final read through NBD")
        except nbd.Error as error:
            self.errors += 1
            self.mismatches.append("final check through NBD failed: %s" % error_name(error))
        with open(self.args.backing, "rb") as disk:
            for block in sorted(self.generation):
                self.check(block, os.pread(disk.fileno(), BLOCK, self.offset_of(block)),
                           "in the backing file")

    def summary(self, detail):
        for line in self.mismatches[:10]:
            print("nbd_probe: MISMATCH " + line)
        print("nbd_probe: %s %s, %s, %d writes, %d reads, %d errors, %d mismatches, "
              "longest request %d ms"
              % ("FAIL" if self.mismatches else "PASS", self.args.mode, detail, self.writes,
                 self.reads, self.errors, len(self.mismatches), self.longest * 1000))
        return 1 if self.mismatches else 0


def run_timed(probe):
    """outage and multi-conn: one request at a time, each one's time logged."""
    args = probe.args
    connections = 4 if args.mode == "multi-conn" else 1
    handles = []
    for _ in range(connections):
        handle = nbd.NBD()
        handle.connect_uri(args.uri)
        handles.append(handle)
    multi_conn = connections > 1 and handles[0].can_multi_conn()
    log = open(args.log, "w", buffering=1)
    lock = threading.Lock()

    def request(op, block, call):
        start = time.time()
        try:
            result, status = call(), "ok"
        except nbd.Error as error:
            result, status = None, error_name(error)
        end = time.time()
        with lock:
            probe.errors += status != "ok"
            probe.longest = max(probe.longest, end - start)
            log.write("%.3f %.3f %s %d %s\n" % (start, end, op, block, status))
        return status == "ok", result

    started = time.monotonic()

    def running():
        return not os.path.exists(args.stop_file) and time.monotonic() - started < args.seconds

    reader = None
    if args.mode == "outage":
        # New requests all through the outage, beside the writer's possibly held write.
        extra = nbd.NBD()
        extra.connect_uri(args.uri)
        handles.append(extra)

        def read_often():
            step = 0
            while running():
                block = step * 7 % probe.blocks
                ok, _ = request("probe-read", block, lambda: extra.pread(BLOCK, probe.offset_of(block)))
                with lock:
                    probe.reads += 1
                step += 1
                time.sleep(0.02)

        reader = threading.Thread(target=read_often)
        reader.start()
    step = 0
    while running():
        block = step % probe.blocks
        writer = handles[step % connections]
        flusher = handles[(step + 1) % connections] if multi_conn else writer
        reading = handles[(step + 2) % connections] if multi_conn else writer
        new = probe.generation.pop(block, 0) + 1  # unknown until the write is known done
        data = pattern(block, new)
        ok, _ = request("write", block, lambda: writer.pwrite(data, probe.offset_of(block)))
        with lock:
            probe.writes += 1
        if ok and connections > 1:
            ok, _ = request("flush", block, flusher.flush)
        if ok:
            probe.generation[block] = new
            ok, data = request("read", block, lambda: reading.pread(BLOCK, probe.offset_of(block)))
            with lock:
                probe.reads += 1
            if ok:
                probe.check(block, data, "read back through NBD")
        step += 1
        if not ok:
            time.sleep(0.05)  # once no_path_retry has run out an error comes at once
    if reader is not None:
        reader.join()
    probe.final_check(handles[0])
    for handle in handles:
        try:
            handle.shutdown()
        except nbd.Error:
            pass
    detail = "%d connection%s" % (len(handles), "s" if len(handles) > 1 else "")
    if connections > 1:
        detail += " (multi-conn)" if multi_conn else " (no multi-conn: each flushes its own)"
    return probe.summary(detail)


def run_hot(probe):
    """hot: --depth requests in flight, each block read and checked, then rewritten."""
    args = probe.args
    handle = nbd.NBD()
    handle.connect_uri(args.uri)
    pending = {}  # cookie -> (op, block, buffer, generation written, start)
    next_block = 0

    def start_write(block):
        new = probe.generation.pop(block, 0) + 1
        buffer = nbd.Buffer.from_bytearray(bytearray(pattern(block, new)))
        cookie = handle.aio_pwrite(buffer, probe.offset_of(block))
        pending[cookie] = ("write", block, buffer, new, time.monotonic())

    def start_next():
        nonlocal next_block
        # In turn: never two requests on one block at once (depth < blocks).
        block = next_block % probe.blocks
        next_block += 1
        if block in probe.generation:
            buffer = nbd.Buffer(BLOCK)
            cookie = handle.aio_pread(buffer, probe.offset_of(block))
            pending[cookie] = ("read", block, buffer, None, time.monotonic())
        else:
            start_write(block)

    end = time.monotonic() + args.seconds
    for _ in range(min(args.depth, probe.blocks // 2)):
        start_next()
    while pending:
        handle.poll(-1)
        for cookie in list(pending):
            try:
                if not handle.aio_command_completed(cookie):
                    continue
                ok = True
            except nbd.Error as error:
                ok = False
                probe.errors += 1
                print("nbd_probe: error: %s" % error_name(error))
            op, block, buffer, new, start = pending.pop(cookie)
            probe.longest = max(probe.longest, time.monotonic() - start)
            if op == "read":
                probe.reads += 1
                if ok:
                    probe.check(block, buffer.to_bytearray(), "read before its rewrite")
                start_write(block)
                continue
            probe.writes += 1
            if ok:
                probe.generation[block] = new
            if time.monotonic() < end:
                start_next()
    time.sleep(args.settle)
    probe.final_check(handle)
    handle.shutdown()
    status = probe.summary("depth %d over %d blocks" % (args.depth, probe.blocks))
    return 1 if probe.errors else status


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("outage", "multi-conn", "hot"))
    parser.add_argument("uri")
    parser.add_argument("backing", help="the target's backing file")
    parser.add_argument("--offset", type=int, required=True, help="region start (bytes)")
    parser.add_argument("--size", type=int, required=True, help="region length (bytes)")
    parser.add_argument("--seconds", type=float, required=True, help="time to run (at most)")
    parser.add_argument("--stop-file", default="/nonexistent", help="stop once this exists")
    parser.add_argument("--log", default="/dev/null", help="one line per request")
    parser.add_argument("--settle", type=float, default=0, help="hot: wait before the final check")
    parser.add_argument("--depth", type=int, default=16, help="hot: requests in flight")
    args = parser.parse_args()
    if args.offset % BLOCK or args.size < 2 * BLOCK or args.depth < 1:
        parser.error("--offset must be a multiple of 64 KiB and --size at least 128 KiB")
    probe = Probe(args)
    return run_hot(probe) if args.mode == "hot" else run_timed(probe)


if __name__ == "__main__":
    sys.exit(main())
