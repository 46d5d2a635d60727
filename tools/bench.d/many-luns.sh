#!/usr/bin/env bash
# Many LUNs over shared sessions, as a figure: tgtd on loopback with N data LUNs (default 64,
# sparse 16 MiB files), an attach of `luns: all` over two paths (source addresses 127.0.0.1 and
# 127.0.0.2 to one portal), and what it costs: seconds from start until every export is listed
# by the NBD listener, the attach's resident memory (VmRSS, VmHWM) and descriptor count, the
# sessions tgtd counts, and the size of `status` and `status --json`. Prints one line per figure;
# nothing is asserted.
#
#   sudo tools/bench.d/many-luns.sh [N]
#
# Environment: BUILD (default build/), IM_BIN (default $BUILD/tools/iscsi-mpio/iscsi-mpio).
# Needs root (tgtd), nbdinfo, jq. Stops what it started and removes its files on every exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
readonly luns=${1:-64}
readonly build=${BUILD:-$repo/build}
readonly im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
[[ -x $im_bin ]] || tb_die "iscsi-mpio binary not found: $im_bin"
((luns >= 1 && luns <= 255)) || tb_die "N must be 1..255"

work=$(mktemp -d /tmp/im-many-luns.XXXXXX)
im_pid=''
cleanup() {
  set +e
  [[ -z $im_pid ]] || tb_stop_child "$im_pid"
  [[ -z ${TGT_PID:-} ]] || "$repo/tests/testbed/tgtd-target.sh" stop
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$repo/tests/testbed/tgtd-target.sh" start --dir "$work/tgt" --size 16M)"
for ((n = 2; n <= luns; n++)); do
  truncate -s 16M "$work/tgt/lun$n.img"
  tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun "$n" \
    -b "$work/tgt/lun$n.img"
done
cat >"$work/luns.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:many-luns-bench}
target: {iqn: $TGT_IQN, luns: all}
paths:
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.1}
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.2}
multipath: {polling_interval: 5}
nbd: {listen: "unix:$work/luns.sock"}
control: {socket: "$work/luns.control"}
EOF

listed() {
  nbdinfo --list --json "nbd+unix://?socket=$work/luns.sock" 2>/dev/null |
    jq '.exports | length' 2>/dev/null || echo 0
}
started=$(date +%s.%N)
"$im_bin" attach "$work/luns.yaml" >"$work/attach.out" 2>"$work/attach.log" &
im_pid=$!
up=0
for _ in $(seq 1200); do
  tb_running "$im_pid" || break
  [[ $(listed) == "$luns" ]] && { up=1; break; }
  sleep 0.1
done
ready=$(date +%s.%N)
((up)) || { tail -n 20 "$work/attach.log"; tb_die "the attach did not serve $luns exports"; }
sleep 2  # the rescan timer and the last path events settle
status_bytes=$("$im_bin" status "$work/luns.yaml" | wc -c)
json_bytes=$("$im_bin" status --json "$work/luns.yaml" | wc -c)
maps=$("$im_bin" status --json "$work/luns.yaml" | jq 'length')
sessions=$(tgtadm -C "$TGT_CTL" --lld iscsi --mode target --op show |
  awk '/^Target 1:/ {t = 1; next} /^Target / {t = 0} t && /I_T nexus:/ {n++} END {print n + 0}')
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$im_pid/status")
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$im_pid/status")
fds=$(find "/proc/$im_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
# Of those, netlink sockets (route watching): their inodes as /proc/PID/net/netlink lists them.
netlink=$(awk 'NR > 1 {print $NF}' "/proc/$im_pid/net/netlink" | sort -u |
  comm -12 - <(find "/proc/$im_pid/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' |
    sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | sort -u) | wc -l)

echo "data LUNs on tgtd:             $luns (16 MiB each), 2 paths on loopback"
echo "attach until $luns exports listed: $(awk -v a="$started" -v b="$ready" 'BEGIN {printf "%.2f s", b - a}')"
echo "maps in status --json:         $maps"
echo "sessions at the target:        $sessions"
echo "resident memory:               VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB"
echo "open descriptors:              $fds ($netlink netlink)"
echo "status output:                 $status_bytes bytes (tree), $json_bytes bytes (--json)"
