#!/usr/bin/env python3
"""Parsing and reporting for tools/bench (standard library only).

  results.py fio JSON [CPU_TICKS CLK_TCK]     metrics of one fio run, "NAME VALUE" per line
  results.py iscsi-perf LOG REQUEST_BYTES     metrics of one iscsi-perf run
  results.py report RESULTS MACHINE OUT DAT PLOTS
      RESULTS: one measurement a line, "section<TAB>subject<TAB>job<TAB>run<TAB>metric<TAB>value"
      MACHINE: "key<TAB>value" lines describing the machine and the run
      OUT: where README.md goes; DAT: where the gnuplot data files go; PLOTS: 1 to link the PNGs
      Prints the tables to stdout too.
"""

import json
import re
import statistics
import sys
from collections import defaultdict

GIB = 1 << 30
MIB = 1 << 20


def fio_metrics(path, cpu_ticks=None, clk_tck=None):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    job = data["jobs"][0]
    if job.get("error"):
        raise SystemExit(f"{path}: fio reported error {job['error']}")
    # A job is either all reads or all writes; sum both sides so either works.
    sides = [job[d] for d in ("read", "write") if job[d]["io_bytes"] > 0]
    if not sides:
        raise SystemExit(f"{path}: no I/O was done")
    io_bytes = sum(s["io_bytes"] for s in sides)
    out = {
        "mib_s": sum(s["bw_bytes"] for s in sides) / MIB,
        "iops": sum(s["iops"] for s in sides),
        "gib": io_bytes / GIB,
    }
    side = max(sides, key=lambda s: s["io_bytes"])
    lat = side["lat_ns"]
    out["lat_mean_us"] = lat["mean"] / 1000
    percentiles = lat.get("percentile") or side["clat_ns"].get("percentile", {})
    if "99.000000" in percentiles:
        out["lat_p99_us"] = percentiles["99.000000"] / 1000
    if cpu_ticks is not None:
        cpu_s = int(cpu_ticks) / int(clk_tck)
        out["cpu_s"] = cpu_s
        out["cpu_s_per_gib"] = cpu_s / (io_bytes / GIB)
    for name, value in out.items():
        print(f"{name} {value:.6g}")


def iscsi_perf_metrics(path, request_bytes):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    # The progress line is rewritten with \r; the last "iops average" is the whole run's.
    averages = re.findall(r"iops average (\d+)", text)
    if not averages:
        raise SystemExit(f"{path}: no 'iops average' in iscsi-perf output")
    iops = int(averages[-1])
    print(f"iops {iops}")
    print(f"mib_s {iops * int(request_bytes) / MIB:.6g}")


# --- report ----------------------------------------------------------------------------------

LOOP_JOBS = [
    ("seqread", "seq read 1 MiB QD8", "mib_s", "MiB/s"),
    ("seqwrite", "seq write 1 MiB QD8", "mib_s", "MiB/s"),
    ("randread", "rand read 4 KiB QD32", "iops", "IOPS"),
    ("randwrite", "rand write 4 KiB QD32", "iops", "IOPS"),
]
CPU_JOBS = [
    ("seqread", "seq read 1 MiB QD8"),
    ("seqwrite", "seq write 1 MiB QD8"),
    ("randread", "rand read 4 KiB QD32"),
    ("randwrite", "rand write 4 KiB QD32"),
    ("lat", "rand read 4 KiB QD1"),
]
# The extra attach with the opt-in nbd.busy_poll_us that tools/bench measures on the QD1 job.
POLLING = "iscsi-mpio-polling"
PLOT_LABEL = {"seqread": "seq read 1M QD8", "seqwrite": "seq write 1M QD8",
              "randread": "rand read 4K QD32", "randwrite": "rand write 4K QD32",
              "lat": "rand read 4K QD1"}


class Results:
    def __init__(self, path):
        self.values = defaultdict(list)
        self.by_run = defaultdict(dict)
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 6:
                    continue
                section, subject, job, run, metric, value = parts
                key = (section, subject, job, metric)
                self.values[key].append(float(value))
                self.by_run[key][run] = float(value)

    def median(self, section, subject, job, metric):
        v = self.values.get((section, subject, job, metric))
        return statistics.median(v) if v else None

    def spread(self, section, subject, job, metric):
        v = self.values.get((section, subject, job, metric))
        return (min(v), max(v)) if v else (None, None)

    def runs(self, section, subject, job, metric):
        return self.by_run.get((section, subject, job, metric), {})


def fmt(value, kind):
    if value is None:
        return "—"
    if kind in ("MiB/s", "IOPS"):
        return f"{value:,.0f}".replace(",", " ")
    if kind == "µs":
        return f"{value:.1f}" if value < 1000 else f"{value:,.0f}".replace(",", " ")
    if kind == "s/GiB":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if kind == "MiB":
        return f"{value:.1f}"
    if kind == "x":
        return f"{value:.2f}×"
    return f"{value:.4g}"


class Report:
    def __init__(self, results, machine):
        self.r = results
        self.m = machine
        self.many_runs = int(machine.get("runs", "1")) > 1

    def cell(self, section, subject, job, metric, kind):
        med = self.r.median(section, subject, job, metric)
        if med is None:
            return "—"
        text = fmt(med, kind)
        lo, hi = self.r.spread(section, subject, job, metric)
        if self.many_runs and lo != hi:
            text += f" <sub>{fmt(lo, kind)}–{fmt(hi, kind)}</sub>"
        return text

    def polling_label(self):
        return f"iscsi-mpio with `nbd.busy_poll_us: {self.m.get('busy_poll_us', '?')}`"

    @staticmethod
    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    def seq_cpu_per_gib(self, subject):
        """CPU seconds per GiB over seq read + seq write together, median over run indices."""
        per_run = []
        cpu_r = self.r.runs("loop", subject, "seqread", "cpu_s")
        cpu_w = self.r.runs("loop", subject, "seqwrite", "cpu_s")
        gib_r = self.r.runs("loop", subject, "seqread", "gib")
        gib_w = self.r.runs("loop", subject, "seqwrite", "gib")
        for run in cpu_r:
            if run in cpu_w and run in gib_r and run in gib_w:
                per_run.append((cpu_r[run] + cpu_w[run]) / (gib_r[run] + gib_w[run]))
        return statistics.median(per_run) if per_run else None

    # Issue 25: an idle attach (one LUN, one path, unix listener, no client) within this.
    IDLE_RSS_GOAL_MIB = 6.0

    def memory_at_rest(self):
        """The memory part's figures at rest: idle RSS split anonymous / file-backed, what an
        idle client and a second path add, and the two memory goals."""
        r = self.r

        def idle(subject, metric):
            return r.median("mem", subject, "idle", metric)

        out = ["At rest (2 s after start, no client; then 4 connected clients idle after one "
               "4 KiB read each). File-backed pages are mostly shared libraries and the "
               "binary's text, mapped by the kernel around each page touched; they count in "
               "RSS like the rest.", "",
               "| | iscsi-mpio | qemu-nbd |", "|---|---|---|"]
        for metric, label in (("rss_idle_mib", "VmRSS idle (MiB)"),
                              ("rss_anon_idle_mib", "of which anonymous (MiB)"),
                              ("rss_file_idle_mib", "of which file-backed (MiB)")):
            out.append(f"| {label} | {self.cell('mem', 'iscsi-mpio', 'idle', metric, 'MiB')}"
                       f" | {self.cell('mem', 'qemu-nbd', 'idle', metric, 'MiB')} |")
        def kib(value):
            return "—" if value is None else f"{value:.0f}"

        # qemu-nbd serves one client unless started with --shared: not measured there.
        out.append(f"| VmRSS per idle client (KiB) "
                   f"| {kib(idle('iscsi-mpio', 'rss_per_client_kib'))} | — |")
        extra = {}
        for metric in ("rss_idle_mib", "rss_anon_idle_mib"):
            two, one = idle("iscsi-mpio-2paths", metric), idle("iscsi-mpio", metric)
            extra[metric] = (two - one) * 1024 if two is not None and one is not None else None
        out.append(f"| VmRSS per extra path (KiB; its anonymous part) "
                   f"| {kib(extra['rss_idle_mib'])}; {kib(extra['rss_anon_idle_mib'])} | — |")
        out.append("")

        def verdict(ok):
            return "not measured" if ok is None else ("**PASS**" if ok else "**FAIL**")

        rss = idle("iscsi-mpio", "rss_idle_mib")
        ours = r.median("mem", "iscsi-mpio", "qd128", "vmhwm_mib")
        theirs = r.median("mem", "qemu-nbd", "qd128", "vmhwm_mib")
        out += [f"- Goal: idle VmRSS ≤ {self.IDLE_RSS_GOAL_MIB:g} MiB: {fmt(rss, 'MiB')} MiB "
                f"(anonymous {fmt(idle('iscsi-mpio', 'rss_anon_idle_mib'), 'MiB')}, "
                f"file-backed {fmt(idle('iscsi-mpio', 'rss_file_idle_mib'), 'MiB')}): "
                f"{verdict(None if rss is None else rss <= self.IDLE_RSS_GOAL_MIB)}",
                f"- Goal: VmHWM at QD128 × 1 MiB ≤ qemu-nbd's: {fmt(ours, 'MiB')} MiB against "
                f"{fmt(theirs, 'MiB')} MiB: "
                f"{verdict(None if ours is None or theirs is None else ours <= theirs)}", ""]
        return out

    def goals(self):
        r = self.r
        rows = []

        def add(goal, ours, theirs, op, bound, unit):
            ratio = self.ratio(ours, theirs)
            if ratio is None:
                verdict = "not measured"
            elif op == ">=":
                verdict = "**PASS**" if ratio >= bound else "**FAIL**"
            else:
                verdict = "**PASS**" if ratio <= bound else "**FAIL**"
            rows.append((goal, fmt(ours, unit), fmt(theirs, unit), fmt(ratio, "x"),
                         f"{'≥' if op == '>=' else '≤'} {bound:g}×", verdict))

        for job, label, metric, unit in LOOP_JOBS:
            bound = 1.3 if metric == "mib_s" else 1.15
            add(f"{label} ({unit}) vs qemu-nbd", r.median("loop", "iscsi-mpio", job, metric),
                r.median("loop", "qemu-nbd", job, metric), ">=", bound, unit)
        for metric, label in (("lat_mean_us", "mean"), ("lat_p99_us", "p99")):
            add(f"rand read 4 KiB QD1 {label} latency (µs) vs qemu-nbd",
                r.median("loop", "iscsi-mpio", "lat", metric),
                r.median("loop", "qemu-nbd", "lat", metric), "<=", 1.0, "µs")
        add("CPU per GiB, seq 1 MiB read + write (s/GiB) vs qemu-nbd",
            self.seq_cpu_per_gib("iscsi-mpio"), self.seq_cpu_per_gib("qemu-nbd"), "<=", 0.7,
            "s/GiB")
        rate = self.m.get("rate", "?")
        one = r.median("mp", "rate-1", "mpseq", "mib_s")
        add(f"2 paths vs 1 path, each {rate}, seq read 1 MiB QD16 (MiB/s)",
            r.median("mp", "rate-2", "mpseq", "mib_s"), one, ">=", 1.9, "MiB/s")
        add(f"4 paths vs 1 path, each {rate}, seq read 1 MiB QD16 (MiB/s)",
            r.median("mp", "rate-4", "mpseq", "mib_s"), one, ">=", 3.6, "MiB/s")
        add("2 unlimited paths vs 1 unlimited path, seq read 1 MiB QD16 (MiB/s)",
            r.median("mp", "unlimited-2", "mpseq", "mib_s"),
            r.median("mp", "unlimited-1", "mpseq", "mib_s"), ">=", 1.0, "MiB/s")
        return rows

    def markdown(self, plots):
        m = self.m
        out = ["# Benchmarks", ""]
        if m.get("quick") == "1":
            out += ["> **Smoke run (`tools/bench --quick`)**: one run of a few seconds per cell. "
                    "These figures only show that the harness works; they are not measurements.",
                    ""]
        out += [f"Generated by `{m.get('command', 'tools/bench')}` on {m.get('date', '?')}. "
                f"Each figure is the median of {m.get('runs', '?')} run{'s' if self.many_runs else ''} of "
                f"{m.get('runtime', '?')} s"
                + (" (smallest–largest run in small print)" if self.many_runs else "") + ".", ""]

        out += ["## Machine", "", "| | |", "|---|---|"]
        for key, label in (("cpu", "CPU"), ("cores", "cores"), ("kernel", "kernel"),
                           ("os", "OS"), ("memory", "memory"),
                           ("tgtd", "target: tgtd"), ("backing", "LUN backing file"),
                           ("qemu", "qemu-nbd"), ("libiscsi", "libiscsi"), ("fio", "fio"),
                           ("nbdkit", "nbdkit"), ("iscsi_mpio", "iscsi-mpio"),
                           ("im_commands", "iscsi-mpio SCSI commands"),
                           ("load_start", "load average at start"),
                           ("load_end", "load average at end"),
                           ("steal", "stolen by the hypervisor during the run")):
            if key in m:
                out.append(f"| {label} | {m[key]} |")
        out.append("")

        out += ["## Goals (issue #6)", "",
                "| goal | iscsi-mpio | reference | ratio | wanted | result |",
                "|---|---|---|---|---|---|"]
        for row in self.goals():
            out.append("| " + " | ".join(row) + " |")
        out += ["", "The reference is qemu-nbd over libiscsi for the single-path rows and "
                "iscsi-mpio itself with one path for the multipath rows.", ""]

        r = self.r
        out += ["## One path: iscsi-mpio and qemu-nbd on the same tgtd target", "",
                "The same target, LUN and fio job for every column; fio `--ioengine=nbd` on the "
                "NBD export (unix socket). The two right-hand columns are ceilings: each leaves "
                "out one half of the bridge.", "",
                "| workload | iscsi-mpio | qemu-nbd | iscsi-mpio / qemu-nbd "
                "| nbdkit memory (NBD alone) | iscsi-perf (iSCSI alone) |",
                "|---|---|---|---|---|---|"]
        for job, label, metric, unit in LOOP_JOBS:
            ratio = self.ratio(r.median("loop", "iscsi-mpio", job, metric),
                               r.median("loop", "qemu-nbd", job, metric))
            perf = (self.cell("perf", "iscsi-perf", job, metric, unit)
                    if job in ("seqread", "randread") else "reads only")
            out.append(f"| {label} ({unit}) | {self.cell('loop', 'iscsi-mpio', job, metric, unit)}"
                       f" | {self.cell('loop', 'qemu-nbd', job, metric, unit)}"
                       f" | {fmt(ratio, 'x')} | {self.cell('loop', 'nbdkit', job, metric, unit)}"
                       f" | {perf} |")
        measured_polling = r.median("loop", POLLING, "lat", "lat_mean_us") is not None
        # (subject, row label suffix, whether the nbdkit ceiling applies)
        lat_rows = [("iscsi-mpio", "", True)]
        if measured_polling:
            lat_rows.append((POLLING, f", {self.polling_label()}", False))
        for ours, suffix, with_ceiling in lat_rows:
            for metric, label in (("lat_mean_us", "mean"), ("lat_p99_us", "p99")):
                ratio = self.ratio(r.median("loop", ours, "lat", metric),
                                   r.median("loop", "qemu-nbd", "lat", metric))
                ceiling = self.cell('loop', 'nbdkit', 'lat', metric, 'µs') if with_ceiling else "—"
                out.append(f"| rand read 4 KiB QD1, {label} latency (µs){suffix} "
                           f"| {self.cell('loop', ours, 'lat', metric, 'µs')}"
                           f" | {self.cell('loop', 'qemu-nbd', 'lat', metric, 'µs')}"
                           f" | {fmt(ratio, 'x')} | {ceiling} | — |")
        if measured_polling:
            out += ["", "The last two rows are an opt-in setting (config/README.md): the bridge "
                    "polls for the next event instead of sleeping while at most 4 requests are "
                    "in flight, and pays for it in CPU (next table). The goals above are judged "
                    "on the default configuration."]
        out.append("")
        if plots:
            out += ["![sequential throughput](throughput.png) ![random IOPS](iops.png)", "",
                    "![QD1 latency](latency.png)", ""]

        out += ["## CPU time per GiB moved", "",
                "User + system time of the bridge process (`/proc/PID/stat`, all threads) over "
                "each fio run, divided by the data fio moved. Lower is better.", "",
                "| workload | iscsi-mpio (s/GiB) | qemu-nbd (s/GiB) | iscsi-mpio / qemu-nbd "
                "| nbdkit memory (s/GiB) |", "|---|---|---|---|---|"]
        cpu_rows = [(job, label, "iscsi-mpio") for job, label in CPU_JOBS]
        if r.median("loop", POLLING, "lat", "cpu_s_per_gib") is not None:
            cpu_rows.append(("lat", f"rand read 4 KiB QD1, {self.polling_label()}", POLLING))
        for job, label, ours in cpu_rows:
            ratio = self.ratio(r.median("loop", ours, job, "cpu_s_per_gib"),
                               r.median("loop", "qemu-nbd", job, "cpu_s_per_gib"))
            nbdkit = (self.cell('loop', 'nbdkit', job, 'cpu_s_per_gib', 's/GiB')
                      if ours == "iscsi-mpio" else "—")
            out.append(f"| {label} | {self.cell('loop', ours, job, 'cpu_s_per_gib', 's/GiB')}"
                       f" | {self.cell('loop', 'qemu-nbd', job, 'cpu_s_per_gib', 's/GiB')}"
                       f" | {fmt(ratio, 'x')} | {nbdkit} |")
        out.append("")
        if plots:
            out += ["![CPU per GiB](cpu.png)", ""]

        out += ["## Resident memory at QD128 with 1 MiB requests", "",
                "A fresh process per bridge; fio writes and then reads 1 MiB blocks at iodepth "
                "128, one run of each. Peak VmRSS is sampled every 0.2 s during the runs; "
                "VmHWM is the kernel's high-water mark at the end.", "",
                "| | iscsi-mpio | qemu-nbd |", "|---|---|---|"]
        for metric, label, unit in (("vmrss_idle_mib", "VmRSS before I/O (MiB)", "MiB"),
                                    ("vmrss_peak_mib", "VmRSS peak sampled (MiB)", "MiB"),
                                    ("vmhwm_mib", "VmHWM after (MiB)", "MiB"),
                                    ("vmrss_after_mib", "VmRSS 2 s after the clients left (MiB)",
                                     "MiB"),
                                    ("write_mib_s", "seq write 1 MiB QD128 (MiB/s)", "MiB/s"),
                                    ("read_mib_s", "seq read 1 MiB QD128 (MiB/s)", "MiB/s")):
            out.append(f"| {label} | {self.cell('mem', 'iscsi-mpio', 'qd128', metric, unit)}"
                       f" | {self.cell('mem', 'qemu-nbd', 'qd128', metric, unit)} |")
        out.append("")
        out += self.memory_at_rest()

        rate = m.get("rate", "?")
        out += ["## Multipath scaling", "",
                "iscsi-mpio in an initiator network namespace, tgtd in a target namespace, one "
                "veth pair per path (`tests/testbed/topology.sh`"
                + (f", MTU {m['mtu']}" if "mtu" in m else "") + "), path selector "
                f"`{m.get('selector', 'round-robin')}`; fio seq read 1 MiB QD16. Rate-limited "
                f"rows put tc tbf at {rate} on both ends of every path.", "",
                "| paths | iscsi-mpio (MiB/s) | vs 1 path | CPU (s/GiB) |", "|---|---|---|---|"]
        for group, label in (("rate", f"{rate} each"), ("unlimited", "unlimited")):
            base = r.median("mp", f"{group}-1", "mpseq", "mib_s")
            for n in ((1, 2, 4) if group == "rate" else (1, 2)):
                subject = f"{group}-{n}"
                ratio = self.ratio(r.median("mp", subject, "mpseq", "mib_s"), base)
                out.append(f"| {n} {'path' if n == 1 else 'paths'}, "
                           f"{label.replace(' each', '') if n == 1 else label}"
                           f" | {self.cell('mp', subject, 'mpseq', 'mib_s', 'MiB/s')}"
                           f" | {fmt(ratio, 'x')}"
                           f" | {self.cell('mp', subject, 'mpseq', 'cpu_s_per_gib', 's/GiB')} |")
        out.append("")
        if plots:
            out += ["![multipath scaling](multipath.png)", ""]

        if r.median("tls", "iscsi-mpio-tls", "seqread", "mib_s") is not None:
            out += ["## TLS on the NBD side", "",
                    "The whole LUN read through each bridge with and without TLS: `nbdcopy "
                    "--connections=1 --requests=8 --request-size=1048576 URI null:` (fio's nbd "
                    "engine refuses URIs naming local files such as `tls-psk-file`), pre-shared "
                    "key (`psktool`) over `nbds+unix://`; the first copy of each is not counted; "
                    "iscsi-mpio with `nbd.tls: {mode: require, psk_file}`, qemu-nbd with "
                    "`--object tls-creds-psk --tls-creds`. The target and the iSCSI side are "
                    "the same in both columns, so a bridge's with/without ratio is its own TLS "
                    "cost, not the target's.", "",
                    "| bridge | without TLS (MiB/s) | with TLS (MiB/s) | with / without "
                    "| CPU without (s/GiB) | CPU with (s/GiB) |", "|---|---|---|---|---|---|"]
            for bridge in ("iscsi-mpio", "qemu-nbd"):
                ratio = self.ratio(r.median("tls", f"{bridge}-tls", "seqread", "mib_s"),
                                   r.median("tls", bridge, "seqread", "mib_s"))
                out.append(f"| {bridge} | {self.cell('tls', bridge, 'seqread', 'mib_s', 'MiB/s')}"
                           f" | {self.cell('tls', f'{bridge}-tls', 'seqread', 'mib_s', 'MiB/s')}"
                           f" | {fmt(ratio, 'x')}"
                           f" | {self.cell('tls', bridge, 'seqread', 'cpu_s_per_gib', 's/GiB')}"
                           f" | {self.cell('tls', f'{bridge}-tls', 'seqread', 'cpu_s_per_gib', 's/GiB')} |")
            ours_tls = r.median("tls", "iscsi-mpio-tls", "seqread", "mib_s")
            theirs_tls = r.median("tls", "qemu-nbd-tls", "seqread", "mib_s")
            out += ["", f"With TLS on both, iscsi-mpio / qemu-nbd: "
                    f"{fmt(self.ratio(ours_tls, theirs_tls), 'x')}.", ""]

        out += ["## Method", "",
                "- One tgtd (`tests/testbed/tgtd-target.sh`) with its LUN backed by a file in "
                "tmpfs, filled with random data first, so the target's disk is not what is "
                "measured. Both bridges attach to it at the same time and stay attached; the "
                "runs of each job alternate between them, so a load change on the machine "
                "hits both alike.",
                "- iscsi-mpio: `iscsi-mpio attach` with one path to 127.0.0.1. qemu-nbd: "
                "`qemu-nbd --persistent -f raw --cache=none iscsi://127.0.0.1:PORT/IQN/1` "
                "(libiscsi). Both serve a unix socket. For the QD1 job only, a third attach "
                "with `nbd.busy_poll_us` set is started and measured in the same alternation.",
                "- fio: `--ioengine=nbd --time_based --lat_percentiles=1`, random jobs with "
                "`--norandommap --randrepeat=0`; latency is fio's total latency (submission to "
                "completion). Results are read from `--output-format=json --output=FILE`.",
                "- Ceilings: `nbdkit memory` runs the same fio jobs with no iSCSI behind the "
                "NBD server; libiscsi's `iscsi-perf` reads from the same target with no NBD in "
                "front (it only reads).",
                "- Raw per-run values: [results.tsv](results.tsv) (section, subject, job, run, "
                "metric, value).", ""]
        return "\n".join(out)


def dat_row(label, series):
    """series: list of (median, lo, hi) or None; NaN marks a missing bar."""
    cells = [f'"{label}"']
    for s in series:
        if s is None or s[0] is None:
            cells += ["NaN", "NaN", "NaN"]
        else:
            cells += [f"{s[0]:.6g}", f"{s[1]:.6g}", f"{s[2]:.6g}"]
    return " ".join(cells)


def write_dat(results, datdir):
    r = results

    def triple(section, subject, job, metric):
        med = r.median(section, subject, job, metric)
        lo, hi = r.spread(section, subject, job, metric)
        return None if med is None else (med, lo, hi)

    def loop_series(job, metric):
        return [triple("loop", s, job, metric) for s in ("iscsi-mpio", "qemu-nbd", "nbdkit")]

    def write_plot(name, rows):
        """rows: (label, series). A part that --only left out has no values at all: no file,
        so plots.gp skips that plot instead of failing on a plot without points."""
        if all(s is None for _, series in rows for s in series):
            return
        with open(f"{datdir}/{name}.dat", "w", encoding="utf-8") as f:
            for label, series in rows:
                f.write(dat_row(label, series) + "\n")

    write_plot("throughput", [(label, loop_series(job, "mib_s")
                               + [triple("perf", "iscsi-perf", job, "mib_s")])
                              for job, label in (("seqread", "seq read"),
                                                 ("seqwrite", "seq write"))])
    write_plot("iops", [(label, loop_series(job, "iops")
                         + [triple("perf", "iscsi-perf", job, "iops")])
                        for job, label in (("randread", "rand read"),
                                           ("randwrite", "rand write"))])
    write_plot("latency", [(label, loop_series("lat", metric))
                           for metric, label in (("lat_mean_us", "mean"),
                                                 ("lat_p99_us", "99th percentile"))])
    write_plot("cpu", [(PLOT_LABEL[job], loop_series(job, "cpu_s_per_gib"))
                       for job, _ in CPU_JOBS])
    for group, counts, name in (("rate", (1, 2, 4), "multipath-rate"),
                                ("unlimited", (1, 2), "multipath-unlimited")):
        one = r.median("mp", f"{group}-1", "mpseq", "mib_s")
        # Linear scaling is the yardstick only where the links, not the CPUs, limit.
        write_plot(name, [(f"{n} {'path' if n == 1 else 'paths'}",
                           [triple("mp", f"{group}-{n}", "mpseq", "mib_s"),
                            None if one is None or group != "rate"
                            else (n * one, n * one, n * one)])
                          for n in counts])


def report(results_path, machine_path, outdir, datdir, plots):
    machine = {}
    with open(machine_path, encoding="utf-8") as f:
        for line in f:
            if "\t" in line:
                key, value = line.rstrip("\n").split("\t", 1)
                machine[key] = value
    results = Results(results_path)
    text = Report(results, machine).markdown(plots == "1")
    with open(f"{outdir}/README.md", "w", encoding="utf-8") as f:
        f.write(text)
    write_dat(results, datdir)
    # The console gets the tables without image links.
    print("\n".join(line for line in text.splitlines() if not line.startswith("![")))


def main(argv):
    if len(argv) >= 2 and argv[1] == "fio" and len(argv) in (3, 5):
        fio_metrics(*argv[2:])
    elif len(argv) == 4 and argv[1] == "iscsi-perf":
        iscsi_perf_metrics(argv[2], argv[3])
    elif len(argv) == 7 and argv[1] == "report":
        report(*argv[2:])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
