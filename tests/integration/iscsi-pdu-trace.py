#!/usr/bin/env python3
"""Watch one iSCSI target port on loopback and check the write data flow against the login.

    iscsi-pdu-trace.py --port PORT --out FILE [--ready FILE] [--interface lo]

Captures the TCP streams to and from PORT (AF_PACKET, root only, a kernel BPF filter so that
other traffic never reaches us), reassembles them, and walks the iSCSI PDUs (RFC 7143 §11):

- the Login Request / Response text gives the operational values in effect (§13: InitialR2T
  is an OR, ImmediateData an AND, FirstBurstLength / MaxBurstLength / MaxOutstandingR2T the
  minimum; MaxRecvDataSegmentLength is declared by the target for what it receives, §13.12);
- every WRITE's data is checked against them: immediate data only with ImmediateData=Yes,
  unsolicited Data-Out only with InitialR2T=No, immediate plus unsolicited data at most
  FirstBurstLength (§13.14), no data segment above the target's MaxRecvDataSegmentLength,
  solicited Data-Out only inside an R2T's window with the F bit on its last PDU (§11.7,
  §11.8), and the command's data complete when its SCSI Response arrives.
  R2Ts above MaxBurstLength (§13.13) or more R2Ts outstanding than MaxOutstandingR2T (§13.17)
  are the target's doing: reported as notes, not as initiator violations.

Runs until SIGTERM or SIGINT, drains what the kernel still holds, then writes FILE as bash
assignments (trace_*) for the caller to source, and prints violations and notes on stdout.
Digests are assumed off (iscsi-mpio offers None unless configured otherwise).
"""

import argparse
import ctypes
import os
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
RESERVED_TTT = 0xFFFFFFFF
MAX_MESSAGES = 20
PENDING_LIMIT = 32 << 20  # bytes held out of order before a hole counts as lost

# Opcodes (RFC 7143 §11.2.1.2), immediate bit masked off.
OP_SCSI_COMMAND = 0x01
OP_LOGIN_REQUEST = 0x03
OP_DATA_OUT = 0x05
OP_SCSI_RESPONSE = 0x21
OP_LOGIN_RESPONSE = 0x23
OP_R2T = 0x31


def bpf_tcp_port(port):
    """Classic BPF: IPv4 TCP to or from `port`, not the outgoing copy loopback shows too."""
    drop, accept = 14, 13
    prog = [
        (0x20, 0, 0, 0xFFFFF004),          # 0: A = pkttype (SKF_AD_OFF + SKF_AD_PKTTYPE)
        (0x15, drop - 2, 0, PACKET_OUTGOING),  # 1
        (0x28, 0, 0, 12),                  # 2: ethertype
        (0x15, 0, drop - 4, 0x0800),       # 3
        (0x30, 0, 0, 23),                  # 4: IP protocol
        (0x15, 0, drop - 6, 6),            # 5
        (0x28, 0, 0, 20),                  # 6: fragment offset
        (0x45, drop - 8, 0, 0x1FFF),       # 7
        (0xB1, 0, 0, 14),                  # 8: X = IP header length
        (0x48, 0, 0, 14),                  # 9: source port
        (0x15, accept - 11, 0, port),      # 10
        (0x48, 0, 0, 16),                  # 11: destination port
        (0x15, 0, 1, port),                # 12
        (0x06, 0, 0, 0x40000),             # 13: accept
        (0x06, 0, 0, 0),                   # 14: drop
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog), len(prog)


def parse_text(data):
    keys = {}
    for item in bytes(data).split(b"\0"):
        if b"=" in item:
            key, value = item.split(b"=", 1)
            keys[key.decode(errors="replace")] = value.decode(errors="replace")
    return keys


class Trace:
    def __init__(self):
        self.stats = dict(writes=0, large_writes=0, immediate_bytes=0, unsolicited_pdus=0,
                          unsolicited_bytes=0, r2ts=0, solicited_pdus=0, solicited_bytes=0,
                          max_r2t_outstanding=0, largest_r2t=0, largest_data_segment=0,
                          completed_writes=0, logins=0)
        self.violations = []
        self.violation_count = 0
        self.notes = []
        self.note_count = 0
        self.gaps = 0
        self.gap_lines = []
        self.negotiated = None
        self.login_lines = []

    def violation(self, text):
        self.violation_count += 1
        if len(self.violations) < MAX_MESSAGES:
            self.violations.append(text)

    def note(self, text):
        self.note_count += 1
        if len(self.notes) < MAX_MESSAGES:
            self.notes.append(text)


class Direction:
    """One direction of one TCP connection: reassembly and PDU framing."""

    def __init__(self):
        self.next_seq = None
        self.buf = bytearray()
        self.skip = 0       # data bytes of the current PDU we do not need to keep
        self.broken = False
        self.gap_detail = ""
        # Segments ahead of next_seq. Loopback delivers through per-CPU backlogs, so the
        # capture sees a sender's segments out of order when its threads send from different
        # CPUs (istgt does): TCP puts them back in order, and so do we.
        self.pending = {}
        self.pending_bytes = 0
        self.reordered = 0

    def feed(self, seq, payload, on_pdu):
        if self.broken or not payload:
            return
        if self.next_seq is None:
            self.broken = True  # joined mid-stream: PDU boundaries unknown
            self.gap_detail = "joined mid-stream"
            return
        ahead = (seq - self.next_seq) & 0xFFFFFFFF
        if 0 < ahead < 0x80000000:
            self.reordered += 1
            if len(payload) > len(self.pending.get(seq, b"")):
                self.pending_bytes += len(payload) - len(self.pending.get(seq, b""))
                self.pending[seq] = bytes(payload)
            if self.pending_bytes > PENDING_LIMIT:
                self.broken = True  # the hole never filled: the capture lost a segment
                self.gap_detail = f"{ahead} bytes missing at seq {self.next_seq}"
                self.pending.clear()
            return
        self.consume(seq, payload, on_pdu)
        while self.pending:
            # Anything now at or behind next_seq continues the stream (or is a duplicate).
            ready = [s for s in self.pending
                     if (s - self.next_seq) & 0xFFFFFFFF == 0 or
                     (s - self.next_seq) & 0xFFFFFFFF >= 0x80000000]
            if not ready:
                break
            for s in ready:
                data = self.pending.pop(s)
                self.pending_bytes -= len(data)
                self.consume(s, data, on_pdu)

    def unfilled(self):
        """At the end: a hole that never filled means the capture lost data."""
        if self.pending and not self.broken:
            self.broken = True
            self.gap_detail = f"{self.pending_bytes} bytes captured beyond a hole at seq " \
                              f"{self.next_seq}"
        return self.broken

    def consume(self, seq, payload, on_pdu):
        behind = (self.next_seq - seq) & 0xFFFFFFFF  # retransmitted or overlapping data
        if behind:
            if behind >= len(payload):
                return
            payload = payload[behind:]
        self.next_seq = (self.next_seq + len(payload)) & 0xFFFFFFFF
        view = memoryview(payload)
        if self.skip:
            n = min(self.skip, len(view))
            self.skip -= n
            view = view[n:]
        self.buf += view
        self.frame(on_pdu)

    def frame(self, on_pdu):
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 48 and not self.skip:
            bhs = bytes(buf[pos:pos + 48])
            ahs = bhs[4] * 4
            dsl = int.from_bytes(bhs[5:8], "big")
            padded = (dsl + 3) & ~3
            opcode = bhs[0] & 0x3F
            wants_data = opcode in (OP_LOGIN_REQUEST, OP_LOGIN_RESPONSE)
            total = 48 + ahs + padded
            if wants_data:
                if len(buf) - pos < total:
                    break
                on_pdu(bhs, buf[pos + 48 + ahs:pos + 48 + ahs + dsl])
                pos += total
            else:
                on_pdu(bhs, None)
                have = len(buf) - pos
                if have >= total:
                    pos += total
                else:
                    self.skip = total - have
                    pos = len(buf)
        del buf[:pos]


class Connection:
    def __init__(self, trace):
        self.trace = trace
        self.to_target = Direction()
        self.to_initiator = Direction()
        self.offer = {}
        self.answer = {}
        self.params = None
        self.tasks = {}  # ITT -> write task

    # --- login -------------------------------------------------------------------------------

    def settle_login(self):
        offer, answer, t = self.offer, self.answer, self.trace

        def boolean(key, rule):
            if key not in offer or key not in answer:
                t.note(f"{key} not negotiated (offer {offer.get(key)}, answer {answer.get(key)})")
                return offer.get(key, answer.get(key, "Yes")) == "Yes"
            mine, theirs = offer[key] == "Yes", answer[key] == "Yes"
            return (mine or theirs) if rule == "or" else (mine and theirs)

        def minimum(key, default):
            values = [int(d[key]) for d in (offer, answer) if d.get(key, "").isdigit()]
            if len(values) < 2:
                t.note(f"{key} not negotiated (offer {offer.get(key)}, answer {answer.get(key)})")
            return min(values) if values else default

        self.params = {
            "InitialR2T": boolean("InitialR2T", "or"),
            "ImmediateData": boolean("ImmediateData", "and"),
            "FirstBurstLength": minimum("FirstBurstLength", 65536),
            "MaxBurstLength": minimum("MaxBurstLength", 262144),
            "MaxOutstandingR2T": minimum("MaxOutstandingR2T", 1),
            # §13.12: declared by the target, the largest segment it accepts; default 8192.
            "TargetMaxRecvDataSegmentLength": int(answer.get("MaxRecvDataSegmentLength", 8192)),
            "InitiatorMaxRecvDataSegmentLength": int(offer.get("MaxRecvDataSegmentLength", 8192)),
        }
        if answer.get("HeaderDigest", "None") != "None" or answer.get("DataDigest", "None") != "None":
            t.note("digests negotiated: PDU framing here assumes none")
        t.negotiated = self.params
        t.stats["logins"] += 1
        keys = ("InitialR2T", "ImmediateData", "FirstBurstLength", "MaxBurstLength",
                "MaxOutstandingR2T", "MaxRecvDataSegmentLength")
        for side, text in (("offer", offer), ("answer", answer)):
            t.login_lines.append(f"login {side}: " +
                                 " ".join(f"{k}={text.get(k, '-')}" for k in keys))

    # --- PDUs --------------------------------------------------------------------------------

    def from_initiator(self, bhs, data):
        opcode = bhs[0] & 0x3F
        dsl = int.from_bytes(bhs[5:8], "big")
        if opcode == OP_LOGIN_REQUEST:
            self.offer.update(parse_text(data))
            return
        p, t = self.params, self.trace
        if p is None:
            return
        if opcode == OP_SCSI_COMMAND and bhs[1] & 0x20:  # W bit (§11.3.1)
            itt = bhs[16:20]
            edtl = int.from_bytes(bhs[20:24], "big")
            t.stats["writes"] += 1
            t.stats["immediate_bytes"] += dsl
            if edtl > p["MaxBurstLength"]:
                t.stats["large_writes"] += 1
            self.check_segment(dsl, "immediate data")
            if dsl and not p["ImmediateData"]:
                t.violation(f"write ITT {itt.hex()}: {dsl} bytes of immediate data with "
                            "ImmediateData=No (§13.11)")
            if dsl > min(p["FirstBurstLength"], edtl):
                t.violation(f"write ITT {itt.hex()}: {dsl} immediate bytes exceed "
                            f"min(FirstBurstLength, EDTL {edtl})")
            final = bool(bhs[1] & 0x80)
            if p["InitialR2T"] and not final:
                t.violation(f"write ITT {itt.hex()}: F=0 (unsolicited Data-Out announced) "
                            "with InitialR2T=Yes (§13.10)")
            self.tasks[itt] = dict(edtl=edtl, received=dsl, unsolicited=dsl,
                                   unsolicited_open=not final, r2ts={})
        elif opcode == OP_DATA_OUT:
            itt, ttt = bhs[16:20], int.from_bytes(bhs[20:24], "big")
            offset = int.from_bytes(bhs[40:44], "big")
            final = bool(bhs[1] & 0x80)
            self.check_segment(dsl, "Data-Out")
            task = self.tasks.get(itt)
            if task is None:
                t.violation(f"Data-Out for ITT {itt.hex()}, which has no write in flight")
                return
            task["received"] += dsl
            if ttt == RESERVED_TTT:
                t.stats["unsolicited_pdus"] += 1
                t.stats["unsolicited_bytes"] += dsl
                if p["InitialR2T"]:
                    t.violation(f"write ITT {itt.hex()}: unsolicited Data-Out with "
                                "InitialR2T=Yes (§13.10)")
                if not task["unsolicited_open"]:
                    t.violation(f"write ITT {itt.hex()}: unsolicited Data-Out after the "
                                "sequence ended (F bit) or none announced")
                if offset != task["unsolicited"]:
                    t.violation(f"write ITT {itt.hex()}: unsolicited Data-Out at offset "
                                f"{offset}, expected {task['unsolicited']} (DataPDUInOrder)")
                task["unsolicited"] += dsl
                limit = min(p["FirstBurstLength"], task["edtl"])
                if task["unsolicited"] > limit:
                    t.violation(f"write ITT {itt.hex()}: {task['unsolicited']} unsolicited "
                                f"bytes exceed min(FirstBurstLength, EDTL) = {limit} (§13.14)")
                if final:
                    task["unsolicited_open"] = False
                    if task["unsolicited"] != limit:
                        t.violation(f"write ITT {itt.hex()}: unsolicited burst ended at "
                                    f"{task['unsolicited']} bytes, not {limit}")
                return
            t.stats["solicited_pdus"] += 1
            t.stats["solicited_bytes"] += dsl
            r2t = task["r2ts"].get(ttt)
            if r2t is None:
                t.violation(f"write ITT {itt.hex()}: Data-Out for TTT {ttt:#x}, no such R2T")
                return
            if offset != r2t["next"]:
                t.violation(f"write ITT {itt.hex()} TTT {ttt:#x}: Data-Out at offset {offset}, "
                            f"expected {r2t['next']}")
            r2t["next"] = offset + dsl
            end = r2t["offset"] + r2t["length"]
            if r2t["next"] > end:
                t.violation(f"write ITT {itt.hex()} TTT {ttt:#x}: data up to {r2t['next']} "
                            f"beyond the R2T's window ending at {end} (§11.8)")
            if final:
                if r2t["next"] != end:
                    t.violation(f"write ITT {itt.hex()} TTT {ttt:#x}: F bit at {r2t['next']}, "
                                f"the R2T asked up to {end}")
                del task["r2ts"][ttt]
            elif r2t["next"] == end:
                t.violation(f"write ITT {itt.hex()} TTT {ttt:#x}: last Data-Out of the burst "
                            "without the F bit (§11.7.1)")

    def check_segment(self, dsl, what):
        t, p = self.trace, self.params
        t.stats["largest_data_segment"] = max(t.stats["largest_data_segment"], dsl)
        if dsl > p["TargetMaxRecvDataSegmentLength"]:
            t.violation(f"{what} segment of {dsl} bytes exceeds the target's "
                        f"MaxRecvDataSegmentLength {p['TargetMaxRecvDataSegmentLength']} (§13.12)")

    def from_target(self, bhs, data):
        opcode = bhs[0] & 0x3F
        t = self.trace
        if opcode == OP_LOGIN_RESPONSE:
            if bhs[36] != 0:
                t.note(f"login refused: status {bhs[36]:#04x}{bhs[37]:02x}")
            self.answer.update(parse_text(data))
            transit, next_stage = bhs[1] & 0x80, bhs[1] & 0x03
            if transit and next_stage == 3 and bhs[36] == 0:  # full feature phase (§11.13)
                self.settle_login()
            return
        p = self.params
        if p is None:
            return
        if opcode == OP_R2T:
            itt, ttt = bhs[16:20], int.from_bytes(bhs[20:24], "big")
            offset = int.from_bytes(bhs[40:44], "big")
            length = int.from_bytes(bhs[44:48], "big")
            t.stats["r2ts"] += 1
            t.stats["largest_r2t"] = max(t.stats["largest_r2t"], length)
            task = self.tasks.get(itt)
            if task is None:
                t.note(f"R2T for ITT {itt.hex()}, which has no write in flight")
                return
            if length > p["MaxBurstLength"]:
                t.note(f"target: R2T of {length} bytes above MaxBurstLength "
                       f"{p['MaxBurstLength']} (§13.13)")
            task["r2ts"][ttt] = dict(offset=offset, length=length, next=offset)
            outstanding = len(task["r2ts"])
            t.stats["max_r2t_outstanding"] = max(t.stats["max_r2t_outstanding"], outstanding)
            if outstanding > p["MaxOutstandingR2T"]:
                t.note(f"target: {outstanding} R2Ts outstanding on one task, "
                       f"MaxOutstandingR2T={p['MaxOutstandingR2T']} (§13.17)")
        elif opcode == OP_SCSI_RESPONSE:
            itt = bhs[16:20]
            task = self.tasks.pop(itt, None)
            if task is None:
                return
            t.stats["completed_writes"] += 1
            status = bhs[3]
            if status == 0 and task["received"] != task["edtl"]:
                t.violation(f"write ITT {itt.hex()}: GOOD status after {task['received']} of "
                            f"{task['edtl']} bytes were sent")
            if task["r2ts"]:
                t.violation(f"write ITT {itt.hex()}: completed with R2Ts still unanswered")


def run(args):
    trace = Trace()
    connections = {}
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # receives nothing yet
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    code, count = bpf_tcp_port(args.port)
    program = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", count, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    sock.bind((args.interface, ETH_P_ALL))
    sock.setblocking(False)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(f"{os.getpid()}\n")

    def handle(packet):
        ihl = (packet[14] & 0x0F) * 4
        ip_total = int.from_bytes(packet[16:18], "big")
        tcp = 14 + ihl
        sport, dport = struct.unpack_from("!HH", packet, tcp)
        seq = int.from_bytes(packet[tcp + 4:tcp + 8], "big")
        flags = packet[tcp + 13]
        data_start = tcp + (packet[tcp + 12] >> 4) * 4
        payload = packet[data_start:14 + ip_total]
        client = dport if sport == args.port else sport
        conn = connections.get(client)
        if conn is None or (flags & 0x02 and dport == args.port):  # a SYN starts afresh
            conn = connections[client] = Connection(trace)
        direction = conn.to_initiator if sport == args.port else conn.to_target
        if flags & 0x02:
            direction.next_seq = (seq + 1) & 0xFFFFFFFF
            return
        if conn.to_initiator.broken or conn.to_target.broken:
            return  # one direction lost its place: the other's checks need it (R2T / Data-Out)
        direction.feed(seq, payload,
                       conn.from_target if sport == args.port else conn.from_initiator)
        if direction.broken:
            note_gap(direction, "target" if sport == args.port else "initiator")

    def note_gap(direction, side):
        trace.gaps += 1
        trace.gap_lines.append(f"capture lost data from the {side} ({direction.gap_detail}) "
                               f"after {trace.stats['writes']} writes: checks stopped there")

    draining = False
    while True:
        try:
            packet = sock.recv(1 << 18)
        except BlockingIOError:
            if stop:
                if draining:
                    break
                draining = True  # one more pass: the kernel may still be queueing
                select.select([sock], [], [], 0.2)
                continue
            select.select([sock], [], [], 0.2)
            continue
        except InterruptedError:
            continue
        draining = False
        handle(packet)

    for conn in connections.values():
        if conn.to_initiator.broken or conn.to_target.broken:
            continue
        for direction, side in ((conn.to_initiator, "target"), (conn.to_target, "initiator")):
            if direction.unfilled():
                note_gap(direction, side)
                break
    # struct tpacket_stats: packets seen and dropped for want of buffer space since the start.
    seen, dropped = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    p = trace.negotiated or {}
    yes_no = lambda v: "Yes" if v else "No"  # noqa: E731
    lines = {
        "trace_logins": trace.stats["logins"],
        "trace_initial_r2t": yes_no(p["InitialR2T"]) if p else "?",
        "trace_immediate_data": yes_no(p["ImmediateData"]) if p else "?",
        "trace_first_burst": p.get("FirstBurstLength", "?"),
        "trace_max_burst": p.get("MaxBurstLength", "?"),
        "trace_max_outstanding_r2t": p.get("MaxOutstandingR2T", "?"),
        "trace_target_mrdsl": p.get("TargetMaxRecvDataSegmentLength", "?"),
        "trace_complete": "no" if trace.gaps else "yes",
        "trace_violations": trace.violation_count,
        "trace_notes": trace.note_count,
        "trace_packets": seen,
        "trace_dropped": dropped,
    }
    lines.update({f"trace_{k}": v for k, v in trace.stats.items()})
    with open(args.out, "w") as f:
        for key, value in lines.items():
            f.write(f"{key}={value}\n")
    for text in trace.login_lines:
        print(text)
    for text in trace.violations:
        print(f"violation: {text}")
    for text in trace.notes:
        print(f"note: {text}")
    for text in trace.gap_lines:
        print(f"note: {text}")
    reordered = sum(d.reordered for c in connections.values()
                    for d in (c.to_initiator, c.to_target))
    print(f"capture: {seen} packets, {dropped} dropped by the kernel, {reordered} segments "
          "seen ahead of their turn")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ready")
    parser.add_argument("--interface", default="lo")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
