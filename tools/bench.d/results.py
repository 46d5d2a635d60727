#!/usr/bin/env python3
"""Parsing and reporting for tools/bench (standard library only).

  results.py fio JSON [CPU_TICKS CLK_TCK [TARGET_TICKS TARGET_THREAD_TICKS]]
      metrics of one fio run (all its jobs together), "NAME VALUE" per line; TARGET_*: the
      target's CPU ticks over the run, all threads and its busiest thread
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


def fio_metrics(path, cpu_ticks=None, clk_tck=None, target_ticks=None, target_thread_ticks=None):
    """One fio run; a run of several jobs (one per LUN) is summed into one aggregate. The target
    figures: its CPU per GiB and its busiest thread's share of one core over fio's runtime."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    sides = []
    runtime_s = 0.0
    for job in data["jobs"]:
        if job.get("error"):
            raise SystemExit(f"{path}: fio reported error {job['error']} in job {job['jobname']}")
        # A job is either all reads or all writes; sum both sides so either works.
        job_sides = [job[d] for d in ("read", "write") if job[d]["io_bytes"] > 0]
        if not job_sides:
            raise SystemExit(f"{path}: job {job['jobname']} did no I/O")
        sides += job_sides
        runtime_s = max(runtime_s, job.get("job_runtime", 0) / 1000)
    io_bytes = sum(s["io_bytes"] for s in sides)
    out = {
        "mib_s": sum(s["bw_bytes"] for s in sides) / MIB,
        "iops": sum(s["iops"] for s in sides),
        "gib": io_bytes / GIB,
    }
    # Latency: the mean over all requests of all jobs; the 99th percentile of the worst job.
    requests = sum(s["lat_ns"]["N"] for s in sides)
    if requests:
        weighted = sum(s["lat_ns"]["mean"] * s["lat_ns"]["N"] for s in sides)
        out["lat_mean_us"] = weighted / requests / 1000
    p99 = [(s["lat_ns"].get("percentile") or s["clat_ns"].get("percentile", {})).get("99.000000")
           for s in sides]
    if all(p is not None for p in p99):
        out["lat_p99_us"] = max(p99) / 1000
    if cpu_ticks is not None:
        cpu_s = int(cpu_ticks) / int(clk_tck)
        out["cpu_s"] = cpu_s
        out["cpu_s_per_gib"] = cpu_s / (io_bytes / GIB)
        if runtime_s > 0:
            out["cores"] = cpu_s / runtime_s
    if target_ticks is not None:
        target_s = int(target_ticks) / int(clk_tck)
        out["target_cpu_s_per_gib"] = target_s / (io_bytes / GIB)
        if runtime_s > 0:
            out["target_busiest_thread"] = int(target_thread_ticks) / int(clk_tck) / runtime_s
            out["target_cores"] = target_s / runtime_s
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
# The loopback targets, as tools/bench names their sections: (section, short name, what it is).
TARGETS = [
    ("loop", "default tgtd", "tgtd as installed"),
    ("loop-fair", "fair tgtd",
     "tgtd with the malloc mmap threshold above every command size and no heap trimming"),
    ("loop-istgt", "istgt", "istgt, a thread per connection (malloc set as the fair tgtd)"),
]
# iscsi-mpio with two sessions to the one istgt portal (4 KiB QD32 jobs only).
TWO_SESSIONS = "iscsi-mpio-2-sessions"
# A tgtd's 4 KiB QD32 jobs again with every tgtd thread on CPU 0 and the bridges and fio on the
# other CPUs: does the target fill a core of its own? Section of the pinned runs per section,
# with its machine entry.
PINNED = {"loop": ("loop-pinned", "target_pinned"),
          "loop-fair": ("loop-fair-pinned", "target_fair_pinned")}
PINNED_JOBS = ("randread", "randwrite")
# A target thread busier than this share of one core over a run, or the machine's cores busier
# than MACHINE_BUSY of their time, is taken as the ceiling.
CEILING_BUSY = 0.9
MACHINE_BUSY = 0.95
LUN_JOBS = [
    ("seqread", "seq read 1 MiB QD8 on each LUN", "mib_s", "MiB/s"),
    ("randread", "rand read 4 KiB QD32 on each LUN", "iops", "IOPS"),
]
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
                try:
                    number = float(value)
                except ValueError:
                    sys.stderr.write(f"{path}: not a number, line skipped: {line}")
                    continue
                key = (section, subject, job, metric)
                self.values[key].append(number)
                self.by_run[key][run] = number

    def median(self, section, subject, job, metric):
        v = self.values.get((section, subject, job, metric))
        return statistics.median(v) if v else None

    def spread(self, section, subject, job, metric):
        v = self.values.get((section, subject, job, metric))
        return (min(v), max(v)) if v else (None, None)

    def runs(self, section, subject, job, metric):
        return self.by_run.get((section, subject, job, metric), {})


def verdict(met):
    """A goal's result from whether it was met (None: not measured)."""
    return "not measured" if met is None else ("**PASS**" if met else "**FAIL**")


def fmt(value, kind):
    if value is None:
        return "—"
    if kind in ("MiB/s", "IOPS", "n", "ms"):  # n: a count; ms: whole milliseconds
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

    def metric_rows(self, section, subjects, job, metrics):
        """A table row per (metric, label, unit): the label, then a cell per subject."""
        return [f"| {label} | "
                + " | ".join(self.cell(section, subject, job, metric, unit) for subject in subjects)
                + " |" for metric, label, unit in metrics]

    def polling_label(self):
        return f"iscsi-mpio with `nbd.busy_poll_us: {self.m.get('busy_poll_us', '?')}`"

    @staticmethod
    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    def seq_cpu_per_gib(self, subject, section="loop"):
        """CPU seconds per GiB over seq read + seq write together, median over run indices."""
        per_run = []
        cpu_r = self.r.runs(section, subject, "seqread", "cpu_s")
        cpu_w = self.r.runs(section, subject, "seqwrite", "cpu_s")
        gib_r = self.r.runs(section, subject, "seqread", "gib")
        gib_w = self.r.runs(section, subject, "seqwrite", "gib")
        for run in cpu_r:
            if run in cpu_w and run in gib_r and run in gib_w:
                per_run.append((cpu_r[run] + cpu_w[run]) / (gib_r[run] + gib_w[run]))
        return statistics.median(per_run) if per_run else None

    def goal_row(self, goal, ours, theirs, op, bound, unit, miss_note=None):
        """One row of a goals table; miss_note explains a FAIL (a measured ceiling)."""
        ratio = self.ratio(ours, theirs)
        met = None if ratio is None else ((ratio >= bound) if op == ">=" else (ratio <= bound))
        result = verdict(met)
        if met is False and miss_note:
            result += f": {miss_note}"
        return (goal, fmt(ours, unit), fmt(theirs, unit), fmt(ratio, "x"),
                f"{'≥' if op == '>=' else '≤'} {bound:g}×", result)

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
        out += self.metric_rows("mem", ("iscsi-mpio", "qemu-nbd"), "idle",
                                (("rss_idle_mib", "VmRSS idle (MiB)", "MiB"),
                                 ("rss_anon_idle_mib", "of which anonymous (MiB)", "MiB"),
                                 ("rss_file_idle_mib", "of which file-backed (MiB)", "MiB")))
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

        def add(*args):
            rows.append(self.goal_row(*args))

        for job, label, metric, unit in LOOP_JOBS:
            bound = 1.3 if metric == "mib_s" else 1.15
            add(f"{label} ({unit}) vs qemu-nbd", r.median("loop", "iscsi-mpio", job, metric),
                r.median("loop", "qemu-nbd", job, metric), ">=", bound, unit,
                self.ceiling_note("loop", job, extra=self.pinned_note("loop", job)))
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
            r.median("mp", "unlimited-1", "mpseq", "mib_s"), ">=", 1.0, "MiB/s",
            self.ceiling_note("mp", "mpseq", "unlimited-2"))
        return rows

    def percent(self, section, subject, job, metric="machine_busy"):
        value = self.r.median(section, subject, job, metric)
        return "—" if value is None else f"{value * 100:.0f} %"

    def target_busy(self, section, subject, job):
        return self.r.median(section, subject, job, "target_busiest_thread")

    def pinned_note(self, section, job):
        """SECTION's JOB with the target on a core of its own: (text, whether the target
        filled that core), or None when the run has no pinned layout of it."""
        r = self.r
        pinned = PINNED.get(section, (None,))[0]
        ours = r.median(pinned, "iscsi-mpio", job, "iops")
        theirs = r.median(pinned, "qemu-nbd", job, "iops")
        core = r.median(pinned, "iscsi-mpio", job, "target_cores")
        if ours is None or core is None:
            return None
        full = core >= CEILING_BUSY
        return (f"with tgtd's threads on a core of their own (bridge and fio on the other CPUs): "
                f"iscsi-mpio {fmt(ours, 'IOPS')} IOPS against {fmt(theirs, 'IOPS')}, "
                f"{fmt(self.ratio(ours, theirs), 'x')}, tgtd at {core * 100:.0f} % of its core"
                + (" (the ceiling)" if full else ""), full)

    def ceiling_note(self, section, job, subject="iscsi-mpio", extra=None):
        """Why a goal on SECTION's target may be out of reach: its busiest thread's load while
        SUBJECT ran JOB and the machine's, each named the ceiling when it is (nearly) full.
        EXTRA, (text, ceiling), adds another measurement of the same job (the pinned layout)."""
        busy = self.target_busy(section, subject, job)
        machine = self.r.median(section, subject, job, "machine_busy")
        notes = []
        if busy is not None:
            names = dict([(t[0], t[1]) for t in TARGETS] + [("luns", "tgtd"), ("mp", "tgtd")])
            name = names.get(section, "the target")
            notes.append(f"{name}'s busiest thread at {busy * 100:.0f} % of a core"
                         + (" (the ceiling)" if busy >= CEILING_BUSY else ""))
        target_cores = self.r.median(section, subject, job, "target_cores")
        bridge_cores = self.r.median(section, subject, job, "cores")
        if target_cores is not None and bridge_cores is not None:
            # Where the machine's time went: a target busier than the bridge leaves it less.
            notes.append(f"the target used {target_cores:.2f} cores (all threads), the bridge "
                         f"{bridge_cores:.2f}")
        if machine is not None:
            notes.append(f"the machine's cores {machine * 100:.0f} % busy"
                         + (" (the ceiling)" if machine >= MACHINE_BUSY else ""))
        ceiling = ((busy or 0) >= CEILING_BUSY) or ((machine or 0) >= MACHINE_BUSY)
        text = ", ".join(notes)
        if extra is not None:
            text += ("; " if text else "") + extra[0]
            ceiling = ceiling or extra[1]
        if not text:
            return None
        return text + ("" if ceiling else ": no ceiling reached")

    # Issue 25, hedged reads: the longest read stall while one of two paths is black-holed for
    # 8 s (default NOP-Out settings), and the extra reads hedging sends on healthy paths.
    HEDGE_STALL_GOAL_MS = 300
    HEDGE_EXTRA_GOAL_PCT = 1.0

    def hedged_reads(self):
        """The hedge part's two goals (tools/bench.d/hedge.sh, one run each), or nothing when
        the part did not run."""
        r = self.r

        def figure(subject, job, metric):
            return r.median("hedge", subject, job, metric)

        stall = figure("hedging-true", "blackhole", "stall_ms")
        if stall is None:
            return []
        errors = figure("hedging-true", "blackhole", "fio_errors")
        sent = figure("hedging-true", "healthy", "hedges_sent")
        reads = figure("hedging-true", "healthy", "reads")
        extra = None if sent is None or not reads else 100 * sent / reads

        stall_met = None if errors is None else (stall <= self.HEDGE_STALL_GOAL_MS and errors == 0)
        extra_met = None if extra is None else extra <= self.HEDGE_EXTRA_GOAL_PCT
        return ["## Goals (issue #25): hedged reads through a black hole", "",
                "`tools/bench.d/hedge.sh`: tgtd in a namespace, two veth paths, iscsi-mpio over "
                "both with the default NOP-Out settings, fio random reads of 64 KiB at QD32 "
                "through NBD; path 1 black-holed (nftables DROP) for 8 s, with hedged reads on "
                "and off, then on healthy paths (10 s; 3 s with `--quick`). One run each; fio "
                "does not check data here (the multipath suite's hedged-blackhole scenario "
                "does, against the backing file).", "",
                "- Goal: longest read stall in an 8 s black hole "
                f"≤ {self.HEDGE_STALL_GOAL_MS} ms, no read error: {fmt(stall, 'ms')} ms, "
                f"fio errors {fmt(errors, 'n')} "
                f"({fmt(figure('hedging-false', 'blackhole', 'stall_ms'), 'ms')} ms with hedged "
                f"reads off); {fmt(figure('hedging-true', 'blackhole', 'hedges_sent'), 'n')} "
                f"hedges sent, {fmt(figure('hedging-true', 'blackhole', 'hedges_won'), 'n')} won: "
                f"{verdict(stall_met)}",
                "- Goal: extra reads at QD32 on healthy paths "
                f"≤ {self.HEDGE_EXTRA_GOAL_PCT:g} %: "
                f"{fmt(sent, 'n')} hedges for {fmt(reads, 'n')} reads "
                f"({'—' if extra is None else f'{extra:.3f}'} %), longest read "
                f"{fmt(figure('hedging-true', 'healthy', 'longest_ms'), 'ms')} ms: "
                f"{verdict(extra_met)}", ""]

    def goals_second_round(self):
        """The goals of issue #25: the fair tgtd, istgt with two sessions, many LUNs."""
        r = self.r
        rows = []
        fair = "loop-fair"
        for job, label, metric, unit in LOOP_JOBS:
            bound = 1.5 if metric == "mib_s" else 1.3
            rows.append(self.goal_row(
                f"fair tgtd: {label} ({unit})", r.median(fair, "iscsi-mpio", job, metric),
                r.median(fair, "qemu-nbd", job, metric), ">=", bound, unit,
                self.ceiling_note(fair, job, extra=self.pinned_note(fair, job))))
        rows.append(self.goal_row(
            "fair tgtd: rand read 4 KiB QD1 mean latency (µs), no polling",
            r.median(fair, "iscsi-mpio", "lat", "lat_mean_us"),
            r.median(fair, "qemu-nbd", "lat", "lat_mean_us"), "<=", 0.85, "µs",
            self.ceiling_note(fair, "lat")))
        rows.append(self.goal_row(
            "fair tgtd: CPU per GiB, seq 1 MiB read + write (s/GiB)",
            self.seq_cpu_per_gib("iscsi-mpio", fair), self.seq_cpu_per_gib("qemu-nbd", fair),
            "<=", 0.35, "s/GiB"))
        for job, label, metric, unit in LOOP_JOBS:
            if job.startswith("rand"):
                rows.append(self.goal_row(
                    f"istgt: {label} ({unit}), iscsi-mpio with 2 sessions vs qemu-nbd's 1",
                    r.median("loop-istgt", TWO_SESSIONS, job, metric),
                    r.median("loop-istgt", "qemu-nbd", job, metric), ">=", 1.3, unit,
                    self.ceiling_note("loop-istgt", job, TWO_SESSIONS)))
        for job, label, metric, unit in LUN_JOBS:
            rows.append(self.goal_row(
                f"8 LUNs: {label}, aggregate ({unit})", r.median("luns", "iscsi-mpio", job, metric),
                r.median("luns", "qemu-nbd", job, metric), ">=", 1.3, unit,
                self.ceiling_note("luns", job)))
        rows.append(self.goal_row(
            "8 LUNs: total RSS, peak during seq read (MiB)",
            r.median("luns", "iscsi-mpio", "seqread", "vmrss_peak_mib"),
            r.median("luns", "qemu-nbd", "seqread", "vmrss_peak_mib"), "<=", 0.3, "MiB"))
        for job, label, _, _ in LUN_JOBS:
            rows.append(self.goal_row(
                f"8 LUNs: total CPU per GiB, {label} (s/GiB)",
                r.median("luns", "iscsi-mpio", job, "cpu_s_per_gib"),
                r.median("luns", "qemu-nbd", job, "cpu_s_per_gib"), "<=", 0.5, "s/GiB"))
        return rows

    def target_ratios(self, section, job, metric):
        if metric == "cpu_seq":
            return self.ratio(self.seq_cpu_per_gib("iscsi-mpio", section),
                              self.seq_cpu_per_gib("qemu-nbd", section))
        return self.ratio(self.r.median(section, "iscsi-mpio", job, metric),
                          self.r.median(section, "qemu-nbd", job, metric))

    def bridge_or_target(self, plots):
        """The report's first lines: which figure is the bridge's and which the target's."""
        r = self.r
        measured = [t for t in TARGETS if r.median(t[0], "iscsi-mpio", "seqread", "mib_s")]
        if not measured:
            return []
        allocator = f"`GLIBC_TUNABLES={self.m.get('fair_tunables', '?')}`"
        if [t[0] for t in measured] == ["loop"]:
            return ["**Bridge or target?** This run measured the default tgtd only (no "
                    "`targets` part), so each iscsi-mpio / qemu-nbd ratio is the bridge and "
                    "tgtd's allocator together: tgtd munmaps every command buffer of 128 KiB or "
                    "more, which qemu-nbd's 1 MiB commands pay and iscsi-mpio's 120 KiB ones do "
                    "not. Run the `targets` part to separate the two.", ""]
        out = ["**Bridge or target?** Every ratio is iscsi-mpio / qemu-nbd (over libiscsi) on "
               "the same target with the same fio job. On the **fair tgtd** (tgtd started with "
               f"{allocator}, so no command buffer is mmapped and munmapped and the heap is not "
               "trimmed, so no buffer lands on fresh pages) and on **istgt** (started with the "
               "same setting: by default each of its connection threads' heaps is trimmed and "
               "refaulted, more with two connections), no command size costs the target extra: "
               "those columns are **the bridge**. On "
               "the **default tgtd**, **the target's allocator** adds to it: tgtd munmaps every "
               "command buffer of 128 KiB or more, which qemu-nbd's 1 MiB commands pay and "
               "iscsi-mpio's 120 KiB ones do not, and it trims its heap, so the 120 KiB buffers "
               "land on fresh pages, which iscsi-mpio's commands pay (a ratio below 1 in the "
               "last column); the last column, default ÷ fair, is that allocator's share.", ""]
        head = "| iscsi-mpio / qemu-nbd | " + " | ".join(t[1] for t in TARGETS)
        head += " | istgt, iscsi-mpio with 2 sessions | default ÷ fair (the allocator) |"
        out += [head, "|---" * (len(TARGETS) + 3) + "|"]
        rows = [(job, f"{label} ({unit})", metric) for job, label, metric, unit in LOOP_JOBS]
        rows += [("lat", "rand read 4 KiB QD1 mean latency (µs)", "lat_mean_us"),
                 (None, "CPU per GiB, seq 1 MiB read + write", "cpu_seq")]
        for job, label, metric in rows:
            ratios = [self.target_ratios(t[0], job, metric) for t in TARGETS]
            two = (self.ratio(r.median("loop-istgt", TWO_SESSIONS, job, metric),
                              r.median("loop-istgt", "qemu-nbd", job, metric))
                   if job in ("randread", "randwrite") else None)
            out.append(f"| {label} | " + " | ".join(fmt(x, "x") for x in ratios)
                       + f" | {fmt(two, 'x')} | {fmt(self.ratio(ratios[0], ratios[1]), 'x')} |")
        out += ["", "Higher is better for throughput, lower for latency and CPU.", ""]
        if plots:
            out += ["![iscsi-mpio / qemu-nbd on three targets](targets.png)", ""]
        return out

    def other_targets(self):
        """The single-path matrix on the fair tgtd and istgt, and the CPU of bridge and target
        on every target."""
        r = self.r
        out = []
        for section, name, what in TARGETS[1:]:
            if r.median(section, "iscsi-mpio", "seqread", "mib_s") is None:
                continue
            two = r.median(section, TWO_SESSIONS, "randread", "iops") is not None
            # iscsi-perf on this target (the fair tgtd): the iSCSI half's ceiling.
            perf = "perf" + section[len("loop"):]
            with_perf = r.median(perf, "iscsi-perf", "seqread", "mib_s") is not None
            article = "the " if name.endswith("tgtd") else ""
            out += [f"## One path on {article}{name}: {what}", "",
                    "| workload | iscsi-mpio | qemu-nbd | iscsi-mpio / qemu-nbd"
                    + (" | iscsi-mpio, 2 sessions | 2 sessions / qemu-nbd" if two else "")
                    + (" | iscsi-perf (iSCSI alone)" if with_perf else "") + " |",
                    "|---|---|---|---" + ("|---|---" if two else "")
                    + ("|---" if with_perf else "") + "|"]
            for job, label, metric, unit in LOOP_JOBS + [
                    ("lat", "rand read 4 KiB QD1, mean latency", "lat_mean_us", "µs"),
                    ("lat", "rand read 4 KiB QD1, p99 latency", "lat_p99_us", "µs")]:
                line = (f"| {label} ({unit}) | {self.cell(section, 'iscsi-mpio', job, metric, unit)}"
                        f" | {self.cell(section, 'qemu-nbd', job, metric, unit)}"
                        f" | {fmt(self.target_ratios(section, job, metric), 'x')} |")
                if two:
                    ratio = self.ratio(r.median(section, TWO_SESSIONS, job, metric),
                                       r.median(section, "qemu-nbd", job, metric))
                    line += (f" {self.cell(section, TWO_SESSIONS, job, metric, unit)}"
                             f" | {fmt(ratio, 'x')} |")
                if with_perf:
                    line += (f" {self.cell(perf, 'iscsi-perf', job, metric, unit)} |"
                             if job in ("seqread", "randread") and metric in ("mib_s", "iops")
                             else " — |")
                out.append(line)
            out.append("")

        rows = []
        for section, name, _ in TARGETS:
            for job, label in CPU_JOBS:
                for subject in ("iscsi-mpio", TWO_SESSIONS, "qemu-nbd"):
                    busy = self.target_busy(section, subject, job)
                    if busy is not None:
                        rows.append(
                            f"| {name} | {label} | {subject}"
                            f" | {self.cell(section, subject, job, 'cpu_s_per_gib', 's/GiB')}"
                            f" | {self.cell(section, subject, job, 'target_cpu_s_per_gib', 's/GiB')}"
                            f" | {busy * 100:.0f} % | {self.percent(section, subject, job)} |")
        if rows:
            out += ["## CPU of the bridge and of the target", "",
                    "For each run, the CPU time of the bridge process and of the target process "
                    "(`/proc/PID/stat`, all threads) per GiB moved, and the busiest target "
                    "thread's CPU time over fio's runtime as a share of one core "
                    "(`/proc/PID/task/TID/stat`, median of the runs): near 100 % that thread is "
                    "the ceiling, whatever the bridge does (tgtd serves every connection from "
                    "one event-loop thread; istgt has a thread per connection). The last "
                    "column is the share of all the machine's cores in use (`/proc/stat`): near "
                    "100 % the machine is the ceiling.", "",
                    "| target | workload | bridge | bridge CPU (s/GiB) | target CPU (s/GiB) "
                    "| target's busiest thread | machine's cores busy |",
                    "|---|---|---|---|---|---|---|"]
            out += rows + [""]
        return out

    def pinned_target(self):
        """Each tgtd's 4 KiB QD32 jobs with the target on a core of its own."""
        r = self.r
        out = []
        for section, name, _ in TARGETS:
            if section not in PINNED:
                continue
            pinned, key = PINNED[section]
            if r.median(pinned, "iscsi-mpio", "randread", "iops") is None:
                continue
            layout = self.m.get(key, f"the {name} pinned to CPU 0")
            out += [f"## The {name} on a core of its own", "",
                    f"{layout[:1].upper() + layout[1:]}. On shared cores the target, the bridge "
                    "and fio take turns, so a target that limits the rate need not show a full "
                    "thread or a full machine. Pinned, tgtd's CPU time over fio's runtime (all its "
                    "threads, `/proc/PID/stat`) is the share of its one core in use: at "
                    f"{CEILING_BUSY * 100:.0f} % or more the target is the ceiling, and the "
                    "bridge that reaches it has done all the target lets it.", "",
                    "| workload | iscsi-mpio | qemu-nbd | iscsi-mpio / qemu-nbd "
                    "| tgtd's core busy, iscsi-mpio | tgtd's core busy, qemu-nbd "
                    "| bridge CPU (cores), iscsi-mpio | bridge CPU (cores), qemu-nbd |",
                    "|---|---|---|---|---|---|---|---|"]
            for job, label, metric, unit in LOOP_JOBS:
                if job not in PINNED_JOBS:
                    continue
                ours = r.median(pinned, "iscsi-mpio", job, metric)
                theirs = r.median(pinned, "qemu-nbd", job, metric)
                cores = [r.median(pinned, s, job, "cores") for s in ("iscsi-mpio", "qemu-nbd")]
                out.append(
                    f"| {label} ({unit}) | {self.cell(pinned, 'iscsi-mpio', job, metric, unit)}"
                    f" | {self.cell(pinned, 'qemu-nbd', job, metric, unit)}"
                    f" | {fmt(self.ratio(ours, theirs), 'x')}"
                    f" | {self.percent(pinned, 'iscsi-mpio', job, 'target_cores')}"
                    f" | {self.percent(pinned, 'qemu-nbd', job, 'target_cores')}"
                    " | " + " | ".join("—" if c is None else f"{c:.2f}" for c in cores) + " |")
            out.append("")
        return out

    def many_luns(self):
        r = self.r
        out = []
        if r.median("luns", "iscsi-mpio", "seqread", "mib_s") is not None:
            out += ["## Many LUNs in one process", "",
                    f"{self.m.get('luns', '8 LUNs on one tgtd')}; one `iscsi-mpio attach` with "
                    "`target.luns` (one listener, an export per LUN) against a `qemu-nbd` "
                    "process per LUN, both attached at once and measured in turn. One fio runs "
                    "a job per LUN, all at once; the figures are the sum over the LUNs, the CPU "
                    "and RSS the sum over the bridge's processes (RSS sampled every 0.2 s).", "",
                    "| | iscsi-mpio (1 process) | qemu-nbd (8 processes) | iscsi-mpio / qemu-nbd |",
                    "|---|---|---|---|"]
            rows = []
            for job, label, metric, unit in LUN_JOBS:
                rows += [(job, f"{label}, aggregate ({unit})", metric, unit),
                         (job, f"{label}, CPU per GiB (s/GiB)", "cpu_s_per_gib", "s/GiB"),
                         (job, f"{label}, total RSS peak (MiB)", "vmrss_peak_mib", "MiB")]
            rows += [("all", "total RSS before I/O (MiB)", "vmrss_idle_mib", "MiB"),
                     ("all", "total VmHWM after (MiB)", "vmhwm_mib", "MiB")]
            for job, label, metric, unit in rows:
                ratio = self.ratio(r.median("luns", "iscsi-mpio", job, metric),
                                   r.median("luns", "qemu-nbd", job, metric))
                out.append(f"| {label} | {self.cell('luns', 'iscsi-mpio', job, metric, unit)}"
                           f" | {self.cell('luns', 'qemu-nbd', job, metric, unit)}"
                           f" | {fmt(ratio, 'x')} |")
            busy = [(s, self.target_busy("luns", s, "randread")) for s in ("iscsi-mpio", "qemu-nbd")]
            if all(b is not None for _, b in busy):
                out += ["", "tgtd's busiest thread during rand read: "
                        + ", ".join(f"{b * 100:.0f} % of a core with {s}" for s, b in busy) + "."]
            out.append("")
        if r.median("luns64", "iscsi-mpio", "attach", "attach_s") is not None:
            out += ["### 64 LUNs over 2 paths", "",
                    "`tools/bench.d/many-luns.sh 64`: tgtd with 64 sparse 16 MiB LUNs, one "
                    "attach with `luns: all` over two paths (source 127.0.0.1 and 127.0.0.2); "
                    "the time from start until the NBD listener lists every export, and the "
                    "attach's memory 2 s later. Reported, no goal.", "",
                    "| | iscsi-mpio |", "|---|---|"]
            out += self.metric_rows("luns64", ("iscsi-mpio",), "attach",
                                    (("attach_s", "attach until 64 exports listed (s)", "s"),
                                     ("vmrss_mib", "VmRSS (MiB)", "MiB"),
                                     ("vmhwm_mib", "VmHWM (MiB)", "MiB"),
                                     ("sessions", "sessions at the target", "n")))
            out.append("")
        return out

    def markdown(self, plots):
        m = self.m
        out = ["# Benchmarks", ""]
        out += self.bridge_or_target(plots)
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
                           ("tgtd", "target: tgtd"), ("target_fair", "target: fair tgtd"),
                           ("target_pinned", "target: tgtd, pinned layout"),
                           ("target_fair_pinned", "target: fair tgtd, pinned layout"),
                           ("target_istgt", "target: istgt"), ("backing", "LUN backing file"),
                           ("qemu", "qemu-nbd"), ("libiscsi", "libiscsi"), ("fio", "fio"),
                           ("nbdkit", "nbdkit"), ("iscsi_mpio", "iscsi-mpio"),
                           ("im_commands", "iscsi-mpio SCSI commands"),
                           ("im_commands_fair", "iscsi-mpio SCSI commands, fair tgtd"),
                           ("im_commands_istgt", "iscsi-mpio SCSI commands, istgt"),
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
                "iscsi-mpio itself with one path for the multipath rows. All on the default "
                "tgtd. A miss names the load of the target and the machine, as below.", ""]
        second = self.goals_second_round()
        if any(row[-1] != "not measured" for row in second):
            out += ["## Goals (issue #25)", "",
                    "| goal | iscsi-mpio | qemu-nbd | ratio | wanted | result |",
                    "|---|---|---|---|---|---|"]
            out += ["| " + " | ".join(row) + " |" for row in second]
            out += ["", "A throughput or latency miss names the load of the target's busiest "
                    "thread and of the machine's cores while iscsi-mpio ran: a target thread at "
                    f"{CEILING_BUSY * 100:.0f} % of a core or more, or the cores "
                    f"{MACHINE_BUSY * 100:.0f} % busy or more, is the ceiling; so is, for "
                    "a tgtd's 4 KiB QD32 rows, tgtd at that share of a core of its own "
                    "(all its threads pinned to one CPU, bridge and fio on the others: below). "
                    "The istgt rows "
                    "with two sessions show what multipath makes of a target with a thread per "
                    "connection.", ""]
        out += self.hedged_reads()

        r = self.r
        out += ["## One path: iscsi-mpio and qemu-nbd on the same tgtd target (default)", "",
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

        out += self.other_targets()
        out += self.pinned_target()

        out += ["## Resident memory at QD128 with 1 MiB requests", "",
                "A fresh process per bridge; fio writes and then reads 1 MiB blocks at iodepth "
                "128, one run of each. Peak VmRSS is sampled every 0.2 s during the runs; "
                "VmHWM is the kernel's high-water mark at the end.", "",
                "| | iscsi-mpio | qemu-nbd |", "|---|---|---|"]
        out += self.metric_rows("mem", ("iscsi-mpio", "qemu-nbd"), "qd128",
                                (("vmrss_idle_mib", "VmRSS before I/O (MiB)", "MiB"),
                                 ("vmrss_peak_mib", "VmRSS peak sampled (MiB)", "MiB"),
                                 ("vmhwm_mib", "VmHWM after (MiB)", "MiB"),
                                 ("vmrss_after_mib", "VmRSS 2 s after the clients left (MiB)",
                                  "MiB"),
                                 ("write_mib_s", "seq write 1 MiB QD128 (MiB/s)", "MiB/s"),
                                 ("read_mib_s", "seq read 1 MiB QD128 (MiB/s)", "MiB/s")))
        out.append("")
        out += self.memory_at_rest()

        out += self.many_luns()

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
                "- Other targets (`targets` part): the same five jobs, both bridges attached at "
                "once and alternating, on a second tgtd started with "
                f"`GLIBC_TUNABLES={m.get('fair_tunables', '?')}` (glibc then takes every command "
                "buffer from the heap, never munmaps one per command and never trims the heap) "
                "and on istgt (`tests/testbed/istgt-target.sh`, data on LUN 0, started with the "
                "same setting); on istgt a third attach, "
                "iscsi-mpio with two paths to the one portal from source addresses 127.0.0.1 "
                "and 127.0.0.2 (two sessions, so two istgt connection threads), runs the 4 KiB "
                "QD32 jobs. The target's CPU time is read around every run as the bridge's is. "
                "With the `ceilings` part, `iscsi-perf` also reads from the fair tgtd: its "
                "1 MiB commands pay the munmap on the default tgtd too. Then the fair "
                "tgtd's (and, in the `loopback` part, the default tgtd's) 4 KiB QD32 jobs run "
                "once more with `taskset -a -p -c 0` on tgtd and "
                "the bridges and fio started under `taskset -c 1-N`: the target's CPU time "
                "is then the load of a core of its own.",
                "- Many LUNs (`luns` part): a tgtd with the fair setting and 8 LUNs, one "
                "iscsi-mpio attach with `target.luns` against 8 `qemu-nbd` processes; one fio "
                "with a job per LUN.",
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


def write_dat(results, datdir, rep):
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

    def ratio_bar(value):
        return None if value is None else (value, value, value)

    # Only when a second target was measured: the default tgtd alone is in the tables above.
    if any(r.median(t[0], "iscsi-mpio", "seqread", "mib_s") for t in TARGETS[1:]):
        target_rows = [(job, PLOT_LABEL[job], metric) for job, _, metric, _ in LOOP_JOBS]
        target_rows += [("lat", "QD1 mean latency", "lat_mean_us"),
                        (None, "CPU per GiB, seq", "cpu_seq")]
        write_plot("targets", [
            (label, [ratio_bar(rep.target_ratios(t[0], job, metric)) for t in TARGETS]
             + [ratio_bar(rep.ratio(r.median("loop-istgt", TWO_SESSIONS, job, metric),
                                    r.median("loop-istgt", "qemu-nbd", job, metric)))
                if job in ("randread", "randwrite") else None])
            for job, label, metric in target_rows])
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
    rep = Report(results, machine)
    text = rep.markdown(plots == "1")
    with open(f"{outdir}/README.md", "w", encoding="utf-8") as f:
        f.write(text)
    write_dat(results, datdir, rep)
    # The console gets the tables without image links.
    print("\n".join(line for line in text.splitlines() if not line.startswith("![")))


def main(argv):
    if len(argv) >= 2 and argv[1] == "fio" and len(argv) in (3, 5, 7):
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
