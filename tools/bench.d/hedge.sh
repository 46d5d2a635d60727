#!/usr/bin/env bash
# Hedged reads (multipath.hedged_reads) as figures: tgtd in a target namespace, two veth paths,
# iscsi-mpio over both with the default NOP-Out settings (5 s + 5 s), fio random reads at QD32
# (64 KiB) through NBD, and
#   - the longest read stall (fio's largest read latency) while path 1 is black-holed (nftables
#     DROP) for 8 s, with hedged reads on and off;
#   - the extra reads hedging sends on healthy paths: hedges sent per 100 reads the client
#     asked for, at QD32 with no fault.
# Prints one line per figure; nothing is asserted (tools/bench's `hedge` part runs it and
# judges them against issue 25's goals in its report).
#
#   sudo tools/bench.d/hedge.sh [--quick]     (--quick: 3 s of healthy reads instead of 10 s;
#                                              the black hole stays 8 s)
#
# Environment: BUILD (default build/), IM_BIN (default $BUILD/tools/iscsi-mpio/iscsi-mpio),
# RESULTS (tools/bench's results file: each figure is appended to it as a row of section hedge).
# Needs root (namespaces, tgtd), fio with its nbd engine, jq. Stops what it started and removes
# the namespaces and files on every exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
healthy_s=10
case ${1:-} in
  --quick) healthy_s=3 ;;
  '') ;;
  *) tb_die "usage: hedge.sh [--quick]" ;;
esac
readonly build=${BUILD:-$repo/build}
readonly im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
[[ -x $im_bin ]] || tb_die "iscsi-mpio binary not found: $im_bin"
((EUID == 0)) || tb_die "needs root (network namespaces, tgtd)"
for tool in fio jq tgtd; do command -v "$tool" >/dev/null || tb_die "missing $tool"; done

work=$(mktemp -d /tmp/im-hedge-bench.XXXXXX)
topo=hdg$$
topo=${topo:0:12}
im_pid='' tgt_up=0 fio_pid=''
cleanup() {
  set +e
  [[ -z $fio_pid ]] || tb_stop_child "$fio_pid"
  [[ -z $im_pid ]] || tb_stop_child "$im_pid"
  ((tgt_up)) && "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1
  "$repo/tests/testbed/topology.sh" down "$topo" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$repo/tests/testbed/topology.sh" up "$topo" 2)"
mkdir -p "$work/tgt"
eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 256M --netns "$TOPO_TGT_NS" \
  --portal 198.18.1.1 --portal 198.18.2.1 --dir "$work/tgt")"
tgt_up=1

# attach ENABLED: iscsi-mpio over both paths, hedged reads on (true) or off (false), the
# NOP-Out settings left at their defaults; waits until both paths are active.
attach() {
  cat >"$work/mp.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:hedge-bench}
target: {iqn: $TGT_IQN, lun: $TGT_LUN}
paths:
  - {portal: "198.18.1.1:$TGT_PORT", source: 198.18.1.2}
  - {portal: "198.18.2.1:$TGT_PORT", source: 198.18.2.2}
multipath: {hedged_reads: {enabled: $1}}
nbd: {listen: "unix:$work/lun.sock", export: lun}
control: {socket: "$work/control.sock"}
EOF
  rm -f "$work/lun.sock"
  ip netns exec "$TOPO_INI_NS" "$im_bin" attach "$work/mp.yaml" >"$work/attach.out" \
    2>"$work/attach.log" &
  im_pid=$!
  local _
  for _ in $(seq 100); do
    [[ -S $work/lun.sock ]] && (($(status | jq '[.paths[] | select(.state == "active")] | length') == 2)) &&
      return 0
    kill -0 "$im_pid" 2>/dev/null || break
    sleep 0.1
  done
  tb_die "iscsi-mpio did not bring both paths up: $(tail -n 5 "$work/attach.log")"
}
detach() {
  tb_stop_child "$im_pid"
  im_pid=''
}
status() { "$im_bin" status --json "$work/mp.yaml" 2>/dev/null || echo '{"paths":[]}'; }
sum() { status | jq "[.paths[].$1] | add"; }

# reads SECONDS JSON: fio random reads, QD32, 64 KiB, in the background (fio_pid).
reads() {
  fio --name=reads --ioengine=nbd --uri="nbd+unix:///lun?socket=$work/lun.sock" --rw=randread \
    --bs=64K --iodepth=32 --size=256M --time_based --runtime="$1" --output-format=json \
    --output="$2" >/dev/null 2>&1 &
  fio_pid=$!
}
finish_reads() {
  local rc=0
  wait "$fio_pid" || rc=$?
  fio_pid=''
  return "$rc"
}
# longest_ms JSON: fio's largest read latency in ms, and its read errors.
longest_ms() { jq -r '.jobs[0].read.lat_ns.max / 1e6 | floor' "$1"; }
read_errors() { jq -r '.jobs[0].error' "$1"; }
# record SUBJECT JOB METRIC VALUE: a row of tools/bench's results (one run), when RESULTS is set.
record() {
  [[ -z ${RESULTS:-} ]] || printf 'hedge\t%s\t%s\t1\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}

for enabled in true false; do
  attach "$enabled"
  reads 14 "$work/hole-$enabled.json"
  sleep 3
  "$repo/tests/testbed/topology.sh" blackhole "$topo" 1 on
  sleep 8
  "$repo/tests/testbed/topology.sh" blackhole "$topo" 1 off
  finish_reads || echo "hedge: fio failed with hedged reads $enabled"
  stall=$(longest_ms "$work/hole-$enabled.json") errors=$(read_errors "$work/hole-$enabled.json")
  sent=$(sum hedges_sent) won=$(sum hedges_won)
  echo "hedge: longest read stall, 8 s black hole on 1 of 2 paths, hedged reads $enabled:" \
    "$stall ms (fio errors $errors, hedges sent $sent, won $won)"
  record "hedging-$enabled" blackhole stall_ms "$stall"
  record "hedging-$enabled" blackhole fio_errors "$errors"
  record "hedging-$enabled" blackhole hedges_sent "$sent"
  record "hedging-$enabled" blackhole hedges_won "$won"
  detach
done

attach true
sent_before=$(sum hedges_sent)
reads "$healthy_s" "$work/healthy.json"
finish_reads || echo "hedge: fio failed on healthy paths"
sent=$(($(sum hedges_sent) - sent_before))
asked=$(jq -r '.jobs[0].read.total_ios' "$work/healthy.json")
longest=$(longest_ms "$work/healthy.json")
echo "hedge: extra reads at QD32 on healthy paths, ${healthy_s} s: $sent hedges for $asked reads" \
  "($(awk -v s="$sent" -v a="$asked" 'BEGIN {printf "%.3f", (a > 0 ? 100 * s / a : 0)}') %)," \
  "longest read $longest ms"
record hedging-true healthy hedges_sent "$sent"
record hedging-true healthy reads "$asked"
record hedging-true healthy longest_ms "$longest"
detach
