#!/usr/bin/env bash
# Hostile NBD clients against an attach of a tgtd LUN on loopback (issue 26, part 3), while a
# well-behaved libnbd client does verified I/O on the first 16 MiB (nbd_hostile verified: write,
# read back, and the backing file compared at the end; its latency printed):
#   bad requests   one connection each (nbd_hostile cases): reads and writes past the end, an
#                  offset that overflows, length 0, misaligned, above the maximum block size,
#                  an unknown flag, an unknown command, a flush with a length: the error
#                  proto.md names (EINVAL, ENOSPC for writes past the end) and the connection
#                  goes on serving; a write above the maximum block size gets EINVAL or a
#                  disconnect; 1 MiB of option data gets NBD_REP_ERR_TOO_BIG and the
#                  handshake goes on; 2,000 options in a row are cut at the server's limit;
#                  garbage after or in the handshake, a write whose payload stops
#                  short: a close and no reply; 64 reads in flight, then a reset: the next
#                  client is served
#   slow-client    one handshake byte per second: closed at nbd.handshake_timeout (4 s here)
#   flood          1,000 connections at once against nbd.max_clients 100 (the default) with
#                  the attach's RLIMIT_NOFILE at 1024: the ones above the limit are refused in
#                  the handshake with the limit's message, the accept pauses keep the fd
#                  reserve, the fd count and RSS stay within budget (below) and come back down
#   no-read        4 clients that send 1 MiB reads and never read a reply: the server stops
#                  reading each at its own budget (nbd.client_buffer_mib) or at the one all
#                  clients share (nbd.total_buffer_mib), the verified client goes on,
#                  RSS stays within budget
#   control and metrics  hostile local clients of the control socket and the metrics endpoint
#                  (control_hostile.py): a 64 KiB request line, binary junk, an HTTP request,
#                  one byte a second, 300 requests left unread, 100 idle connections at once on
#                  each; junk, a bare-LF head, POST, a path outside /metrics, a 1 MiB head and a
#                  NUL on the metrics port: each gets its error (the line limit named, 400, 405,
#                  404, 431), the slow ones are closed at the exchange limit (5 s, 10 s), the
#                  connections above 16 are answered "too many" / 503 at once, a normal request
#                  is answered after each; the attach's fds and RSS stay within budget (below)
#   alive          the attach is still running after all of it
#   idle-rss       before any client, the attach's VmRSS is within its budget (below)
#
# Budgets (asserted loosely; they are bounds, not timings): file descriptors at most
# RLIMIT_NOFILE (1024) - 32: accepting pauses while fewer than 64 + 2 per path are left;
# RSS growth under the flood at most 1000 x 256 KiB; under the clients that never read, at most
# 3 x 32 MiB each (twice the byte budget of a connection, plus socket buffers). All of them
# share nbd.total_buffer_mib (16 MiB by default) beyond one request each, so nbd.max_clients
# such clients hold about total_buffer_mib + max_clients x their request size. Control socket and
# metrics endpoint: at most 16 connections each at once, so at most base + 2 x 16 + 4 fds, and
# RSS growth at most 16 MiB (a request is at most 256 bytes, a request head 8 KiB). Before any
# client (check idle-rss, plain build only): VmRSS at most 10 MiB, about 8 MiB measured on the
# test machine (issue 25: 11.4 MiB when GnuTLS and libsystemd were linked, whose pages alone
# would cross the bound again); tools/bench reports the figure against the 6 MiB goal.
#
# Environment: BUILD (build tree), IM_BIN, HOSTILE (nbd_hostile). Needs root (tgtd). About 65 s.
# Every wait is bounded; everything started here is stopped by PID on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
hostile=${HOSTILE:-$build/tests/integration/nbd_hostile}

command -v tgtd >/dev/null || { echo "missing tgtd"; echo "0 passed, 1 failed"; exit 1; }
for binary in "$im_bin" "$hostile"; do
  [[ -x $binary ]] || { echo "not found: $binary"; echo "0 passed, 1 failed"; exit 1; }
done

readonly handshake_timeout=4 fd_limit=1024 noread_clients=4
work=$(mktemp -d /tmp/im-hostile.XXXXXX)
im_pid=''
tgt_started=0
bg_pids=()
passed=0
failed=0

cleanup() {
  local rc=$? pid
  trap - EXIT
  for pid in "${bg_pids[@]}"; do tb_stop_child "$pid"; done
  tb_stop_child "$im_pid"
  tb_remove_testbed
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

fd_count() { find "/proc/$im_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$im_pid/status" 2>/dev/null || echo 0; }

# sample_while PID SECONDS: the largest fd count and RSS (KiB) of the attach while PID runs,
# sampled every 0.2 s for at most SECONDS; sets max_fds and max_rss.
max_fds=0
max_rss=0
sample_while() {
  local pid=$1 deadline=$((SECONDS + $2)) fds rss
  max_fds=0
  max_rss=0
  while tb_running "$pid" && ((SECONDS < deadline)); do
    fds=$(fd_count)
    rss=$(rss_kib)
    ((fds <= max_fds)) || max_fds=$fds
    ((rss <= max_rss)) || max_rss=$rss
    sleep 0.2
  done
}

# run_sampled LOG ARGS...: nbd_hostile ARGS with its output in LOG, sampled by sample_while
# until it exits (at most 60 s); its exit status in run_rc.
run_rc=0
run_sampled() {
  local log=$1 pid
  shift
  "$hostile" "$@" >"$log" 2>&1 &
  pid=$!
  bg_pids+=("$pid")
  sample_while "$pid" 60
  run_rc=0
  wait "$pid" || run_rc=$?
}

eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 64M --dir "$work/tgt")"
tgt_started=1

metrics_port=$(tb_free_port "" 127.0.0.1)
cat >"$work/hostile.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:hostile-checks}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths: [{portal: "127.0.0.1:$TGT_PORT"}]
nbd: {listen: "unix:$work/nbd.sock", handshake_timeout: $handshake_timeout}
control: {socket: "$work/control.sock"}
metrics: {listen: "127.0.0.1:$metrics_port"}
EOF
# The descriptor limit the budget is stated against, whatever the caller's is.
(ulimit -n "$fd_limit" && exec "$im_bin" attach "$work/hostile.yaml") \
  >"$work/attach.out" 2>"$work/attach.log" &
im_pid=$!
has_uri() { [[ -s $work/attach.out ]]; }
if ! tb_wait_until 30 has_uri; then
  tb_report attach 0 "the attach did not come up"
  echo "$passed passed, $failed failed"
  exit 1
fi
uri=$(head -n 1 "$work/attach.out")
base_fds=$(fd_count)
base_rss=$(rss_kib)
echo "attach $im_pid: $base_fds fds, RSS $base_rss KiB before the clients; $uri"
# Under ASan (tools/run-tests.sh sets ASAN_OPTIONS) shadow memory and the runtime make RSS say
# nothing about the program's own.
if [[ -z ${ASAN_OPTIONS:-} ]]; then
  split=$(awk '/^(RssAnon|RssFile):/ {printf "%s %s KiB ", $1, $2}' "/proc/$im_pid/status")
  tb_report idle-rss "$((base_rss <= 10 * 1024))" \
    "VmRSS $base_rss KiB with no client ($split), above 10 MiB"
fi

# It stops once the clients below are done (verified.stop), having run through all of them.
# 240 s is only a bound under CTest's 300: with a fixed 60 s, the clients outlasted it on a busy
# machine (ASan, a load of 19 on 2 cores: 141 s in all) and control-budget failed for it.
"$hostile" verified --uri "$uri" --backing "$TGT_BACKING" --span $((16 << 20)) --seconds 240 \
  --seed "${SEED:-$RANDOM}" --stop-file "$work/verified.stop" >"$work/verified.log" 2>&1 &
verified_pid=$!
bg_pids+=("$verified_pid")

# ---------------------------------------------------------------- bad requests
"$hostile" cases --socket "$work/nbd.sock" >"$work/cases.log" 2>&1 || true
sed -n 's/^export: /  export: /p' "$work/cases.log"
while read -r verdict name detail; do
  tb_report "${name%:}" "$([[ $verdict == PASS: ]] && echo 1 || echo 0)" "$detail"
  [[ $verdict != PASS: ]] || echo "    ${detail}"
done < <(grep -E '^(PASS|FAIL):' "$work/cases.log")
grep -qE '^(PASS|FAIL):' "$work/cases.log" || tb_report cases 0 "$(cat "$work/cases.log")"

# ---------------------------------------------------------------- slow client
"$hostile" slow --socket "$work/nbd.sock" --limit 30 >"$work/slow.log" 2>&1 || true
closed_after=$(sed -nE 's/.*closed by the server after ([0-9.]+) s.*/\1/p' "$work/slow.log")
ok=0
if [[ -n $closed_after ]] &&
  awk -v s="$closed_after" -v t="$handshake_timeout" 'BEGIN {exit !(s >= t - 0.5 && s <= t + 3)}'; then
  ok=1
fi
tb_report slow-client "$ok" "$(cat "$work/slow.log")" "handshake_timeout is $handshake_timeout s"
((ok == 0)) || echo "    $(cat "$work/slow.log")"

# ---------------------------------------------------------------- 1,000 connections
run_sampled "$work/flood.log" flood --socket "$work/nbd.sock" --count 1000 --hold 3 --deadline 40
flood_rc=$run_rc
flood_fds=$max_fds
flood_rss=$max_rss
ok=1
notes=()
((flood_rc == 0)) || { ok=0; notes+=("nbd_hostile flood exited $flood_rc"); }
grep -q 'refusal message: too many clients.*nbd.max_clients.*NBD_REP_ERR_POLICY' "$work/flood.log" ||
  { ok=0; notes+=("no refusal naming nbd.max_clients"); }
served=$(sed -nE 's/.* ([0-9]+) served.*/\1/p' "$work/flood.log")
# The verified client holds one of the 100 places.
[[ ${served:-0} -ge 90 && ${served:-0} -le 100 ]] || { ok=0; notes+=("served ${served:-?}, not 90-100"); }
((flood_fds <= fd_limit - 32)) ||
  { ok=0; notes+=("$flood_fds fds open: the reserve below RLIMIT_NOFILE $fd_limit was not kept"); }
((flood_rss - base_rss <= 1000 * 256)) ||
  { ok=0; notes+=("RSS grew by $((flood_rss - base_rss)) KiB, above 1000 x 256 KiB"); }
tb_running "$im_pid" || { ok=0; notes+=("the attach died"); }
tb_report flood "$ok" "$(cat "$work/flood.log")" "${notes[@]}"
sed -n 's/^flood: /    /p' "$work/flood.log" | grep -v holding
echo "    attach during the flood: at most $flood_fds fds (RLIMIT_NOFILE $fd_limit), RSS at most $flood_rss KiB (+$((flood_rss - base_rss)) KiB)"
fds_back() { (($(fd_count) <= base_fds + 2)); }
if tb_wait_until $((handshake_timeout + 10)) fds_back; then
  tb_report flood-fds-released 1
  echo "    $(fd_count) fds after the flood"
else
  tb_report flood-fds-released 0 "$(fd_count) fds after the flood, $base_fds before"
fi

# ---------------------------------------------------------------- a client that never reads
before_rss=$(rss_kib)
run_sampled "$work/no-read.log" no-read --socket "$work/nbd.sock" --hold 4 --offset $((32 << 20)) \
  --connections "$noread_clients"
noread_rc=$run_rc
ok=1
notes=()
((noread_rc == 0)) || { ok=0; notes+=("nbd_hostile no-read exited $noread_rc"); }
((max_rss - before_rss <= noread_clients * 3 * 32 * 1024)) ||
  { ok=0; notes+=("RSS grew by $((max_rss - before_rss)) KiB, above $noread_clients x 3 x 32 MiB"); }
tb_running "$im_pid" || { ok=0; notes+=("the attach died"); }
tb_report no-read "$ok" "$(cat "$work/no-read.log")" "${notes[@]}"
sed -n 's/^no-read: /    /p' "$work/no-read.log" | grep -v holding
echo "    attach RSS at most $max_rss KiB (+$((max_rss - before_rss)) KiB," \
  "$(((max_rss - before_rss) / noread_clients)) KiB per connection), $max_fds fds"

# ---------------------------------------------------------------- control socket and metrics
# While the verified client goes on: neither listener may block the data path.
before_fds=$(fd_count)
before_rss=$(rss_kib)
python3 "$repo/tests/integration/control_hostile.py" --control "$work/control.sock" \
  --metrics "127.0.0.1:$metrics_port" >"$work/control.log" 2>&1 &
control_pid=$!
bg_pids+=("$control_pid")
sample_while "$control_pid" 90
wait "$control_pid" || true
while read -r verdict name detail; do
  tb_report "$name" "$([[ $verdict == PASS: ]] && echo 1 || echo 0)" "$detail"
  [[ $verdict != PASS: ]] || echo "    ${detail}"
done < <(grep -E '^(PASS|FAIL):' "$work/control.log")
grep -qE '^[0-9]+ passed, [0-9]+ failed$' "$work/control.log" ||
  tb_report control-hostile 0 "control_hostile.py did not finish:" "$(tail -n 8 "$work/control.log")"
ok=1
notes=()
((max_fds <= before_fds + 2 * 16 + 4)) ||
  { ok=0; notes+=("$max_fds fds open, above $before_fds + 2 x 16 + 4"); }
# Under ASan (tools/run-tests.sh sets ASAN_OPTIONS) the allocator's quarantine keeps what the
# data path frees meanwhile (up to 256 MiB by default): this budget holds in the plain build only.
if [[ -z ${ASAN_OPTIONS:-} ]]; then
  ((max_rss - before_rss <= 16 * 1024)) ||
    { ok=0; notes+=("RSS grew by $((max_rss - before_rss)) KiB, above 16 MiB"); }
fi
tb_running "$im_pid" || { ok=0; notes+=("the attach died"); }
# The verified client's latency then covers these clients too: it must still be running.
tb_running "$verified_pid" || { ok=0; notes+=("the verified client ended before these clients"); }
tb_report control-budget "$ok" "${notes[@]}"
echo "    attach under the control and metrics clients: at most $max_fds fds ($before_fds before)," \
  "RSS at most $max_rss KiB (+$((max_rss - before_rss)) KiB)"

# ---------------------------------------------------------------- the verified client
verified_rc=0
touch "$work/verified.stop"
tb_wait_gone "$verified_pid" 60 || true
wait "$verified_pid" || verified_rc=$?
tb_report verified-io "$((verified_rc == 0))" "$(cat "$work/verified.log")"
echo "    $(cat "$work/verified.log")"

tb_report alive "$(tb_running "$im_pid" && echo 1 || echo 0)" "the attach is gone"
echo "attach at the end: $(fd_count) fds, RSS $(rss_kib) KiB"
echo "$passed passed, $failed failed"
((failed == 0))
