# Plots for tools/bench: gnuplot -e "dat='DIR'; out='DIR'; rate='400mbit'" plots.gp
# Each .dat row (written by results.py) is a quoted label followed by one (median, lowest run,
# highest run) triple per series; NaN leaves a bar out. Error bars span the lowest to the
# highest run.

set terminal pngcairo size 1000,520 font "DejaVu Sans,10" noenhanced
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics lc rgb "#dddddd"
set key top left reverse Left
set yrange [0:*]
set datafile missing "NaN"

c_ours = "#1f77b4"
c_qemu = "#ff7f0e"
c_nbdkit = "#9e9e9e"
c_perf = "#5e5e5e"
# A run with --only leaves some .dat files out: each plot is drawn only when its data is there.
have(name) = system("test -s '".dat."/".name."' && echo 1 || echo 0") eq "1"

if (have("throughput.dat")) {
  set output out."/throughput.png"
  set title "Sequential 1 MiB requests, QD8 (median of runs; bars span the runs)"
  set ylabel "MiB/s"
  plot dat."/throughput.dat" using 2:3:4:xtic(1) title "iscsi-mpio" lc rgb c_ours, \
       '' using 5:6:7 title "qemu-nbd (libiscsi)" lc rgb c_qemu, \
       '' using 8:9:10 title "nbdkit memory (NBD alone)" lc rgb c_nbdkit, \
       '' using 11:12:13 title "iscsi-perf (iSCSI alone)" lc rgb c_perf
}

if (have("iops.dat")) {
  set output out."/iops.png"
  set title "Random 4 KiB requests, QD32 (median of runs; bars span the runs)"
  set ylabel "IOPS"
  plot dat."/iops.dat" using 2:3:4:xtic(1) title "iscsi-mpio" lc rgb c_ours, \
       '' using 5:6:7 title "qemu-nbd (libiscsi)" lc rgb c_qemu, \
       '' using 8:9:10 title "nbdkit memory (NBD alone)" lc rgb c_nbdkit, \
       '' using 11:12:13 title "iscsi-perf (iSCSI alone)" lc rgb c_perf
}

if (have("latency.dat")) {
  set output out."/latency.png"
  set title "Random read 4 KiB, QD1: latency (lower is better)"
  set ylabel "µs"
  plot dat."/latency.dat" using 2:3:4:xtic(1) title "iscsi-mpio" lc rgb c_ours, \
       '' using 5:6:7 title "qemu-nbd (libiscsi)" lc rgb c_qemu, \
       '' using 8:9:10 title "nbdkit memory (NBD alone)" lc rgb c_nbdkit
}

if (have("cpu.dat")) {
  set output out."/cpu.png"
  set title "CPU time of the bridge process per GiB moved (lower is better)"
  set ylabel "CPU seconds per GiB (log scale)"
  set logscale y
  set yrange [*:*]
  plot dat."/cpu.dat" using 2:3:4:xtic(1) title "iscsi-mpio" lc rgb c_ours, \
       '' using 5:6:7 title "qemu-nbd (libiscsi)" lc rgb c_qemu, \
       '' using 8:9:10 title "nbdkit memory" lc rgb c_nbdkit
  unset logscale y
  set yrange [0:*]
}

if (have("targets.dat")) {
  set output out."/targets.png"
  set title "iscsi-mpio / qemu-nbd on each target (throughput: higher is better; latency, CPU: lower)"
  set ylabel "iscsi-mpio / qemu-nbd"
  set style histogram errorbars gap 2 lw 0
  set key top right
  plot dat."/targets.dat" using 2:3:4:xtic(1) title "default tgtd (with its allocator)" lc rgb c_qemu, \
       '' using 5:6:7 title "fair tgtd (the bridge)" lc rgb c_ours, \
       '' using 8:9:10 title "istgt (the bridge)" lc rgb c_nbdkit, \
       '' using 11:12:13 title "istgt, iscsi-mpio with 2 sessions" lc rgb c_perf, \
       1 notitle lc rgb "#000000" dt 2
  set style histogram errorbars gap 2 lw 1
  set key top left
}

set terminal pngcairo size 1000,480 font "DejaVu Sans,10" noenhanced
if (have("multipath-rate.dat") && have("multipath-unlimited.dat")) {
  set output out."/multipath.png"
  set multiplot layout 1,2 title "iscsi-mpio multipath scaling: seq read 1 MiB, QD16 (median of runs)"
  set ylabel "MiB/s"
  set title "every path rate-limited (tc tbf ".rate.")"
  plot dat."/multipath-rate.dat" using 2:3:4:xtic(1) title "measured" lc rgb c_ours, \
       '' using 5:6:7 title "paths × one path (linear)" lc rgb "#c6dbef"
  set title "unlimited veth paths"
  plot dat."/multipath-unlimited.dat" using 2:3:4:xtic(1) title "measured" lc rgb c_ours
  unset multiplot
}
