#!/usr/bin/env bash
# Crash safety (issue 26, part 2): SIGKILL of the attach at a random moment under writes, ROUNDS
# times (default 20), against a tgtd LUN on loopback. In each round nbd_crash writes 4 KiB blocks
# with contents unique to (seed, block, generation) over the first 16 MiB, some with FUA and a
# FLUSH after every 8 acknowledged writes; the attach is killed 0.3-2.0 s in (seeded delay),
# started again, and nbd_crash checks the target's backing file: every write acknowledged
# durable (FUA, or acknowledged before an acknowledged FLUSH) is there or overwritten by a newer
# one, and every block holds one complete version (zeros, the previous round's, or one written
# in this round): no torn block, no foreign data. Prints the seed and the totals.
#
# Environment: BUILD (build tree), IM_BIN, CRASHER (nbd_crash), SEED (default random, printed),
# ROUNDS. Needs root (tgtd). About 40 s for 20 rounds. Every wait is bounded; everything
# started here is stopped by PID on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
crasher=${CRASHER:-$build/tests/integration/nbd_crash}
command -v tgtd >/dev/null || { echo "missing tgtd"; echo "0 passed, 1 failed"; exit 1; }
for binary in "$im_bin" "$crasher"; do
  [[ -x $binary ]] || { echo "not found: $binary"; echo "0 passed, 1 failed"; exit 1; }
done

readonly rounds=${ROUNDS:-20} blocks=4096
seed=${SEED:-$((RANDOM * 32768 + RANDOM))}
echo "crash-checks: seed $seed, $rounds rounds (SEED=$seed ROUNDS=$rounds to repeat)"
RANDOM=$seed  # the kill delays follow from the seed too

work=$(mktemp -d /tmp/im-crash.XXXXXX)
im_pid=''
writer_pid=''
tgt_started=0
passed=0
failed=0

cleanup() {
  local rc=$?
  trap - EXIT
  tb_stop_child "$writer_pid"
  tb_stop_child "$im_pid"
  tb_remove_testbed
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 32M --dir "$work/tgt")"
tgt_started=1
cat >"$work/crash.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:crash-checks}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths: [{portal: "127.0.0.1:$TGT_PORT"}]
nbd: {listen: "unix:$work/nbd.sock"}
control: {socket: "$work/control.sock"}
EOF

has_uri() { [[ -s $work/attach.out ]]; }
start_attach() {
  : >"$work/attach.out"
  "$im_bin" attach "$work/crash.yaml" >"$work/attach.out" 2>>"$work/attach.log" &
  im_pid=$!
  tb_wait_until 30 has_uri
}

# check: nbd_crash check of the last round's writes; adds its counts to the totals.
checked_blocks=0
durable_blocks=0
torn=0
foreign=0
lost=0
check_ok=1
check() {
  local out rc=0
  out=$("$crasher" check --backing "$TGT_BACKING" --blocks "$blocks" --seed "$seed" \
    --baseline "$work/baseline" --state "$work/state" 2>&1) || rc=$?
  if ((rc != 0)); then
    check_ok=0
    local output_line
    while IFS= read -r output_line; do echo "    $output_line"; done <<<"$out"
  fi
  local line
  line=$(grep 'nbd_crash check:' <<<"$out") || { check_ok=0; return 0; }
  checked_blocks=$((checked_blocks + $(sed -nE 's/.*: ([0-9]+) blocks checked.*/\1/p' <<<"$line")))
  durable_blocks=$((durable_blocks + $(sed -nE 's/.* ([0-9]+) blocks with a durable.*/\1/p' <<<"$line")))
  torn=$((torn + $(sed -nE 's/.*torn ([0-9]+).*/\1/p' <<<"$line")))
  foreign=$((foreign + $(sed -nE 's/.*foreign ([0-9]+).*/\1/p' <<<"$line")))
  lost=$((lost + $(sed -nE 's/.*lost durable ([0-9]+).*/\1/p' <<<"$line")))
}

kills=0
durable_acks=0
acked=0
: >"$work/baseline"
for ((round = 0; round < rounds; round++)); do
  if ! start_attach; then
    tb_report "round-$round-attach" 0 "the attach did not come up"
    break
  fi
  ((round == 0)) || check
  delay_ms=$((300 + RANDOM % 1700))
  "$crasher" write --uri "$(head -n 1 "$work/attach.out")" --blocks "$blocks" --seed "$seed" \
    --round "$round" --state "$work/state" --seconds 20 >"$work/writer.log" 2>&1 &
  writer_pid=$!
  sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
  kill -KILL "$im_pid"
  wait "$im_pid" 2>/dev/null || true
  kills=$((kills + 1))
  tb_wait_gone "$writer_pid" 30 || kill -TERM "$writer_pid" 2>/dev/null || true
  wait "$writer_pid" || { check_ok=0; cat "$work/writer.log"; }
  writer_pid=''
  line=$(grep 'nbd_crash write:' "$work/writer.log" || true)
  echo "  round $round: killed after $delay_ms ms; ${line#*: round "$round": }"
  acked=$((acked + $(sed -nE 's/.* ([0-9]+) acknowledged \(.*/\1/p' <<<"$line")))
  durable_acks=$((durable_acks + $(sed -nE 's/.* ([0-9]+) acknowledged durable.*/\1/p' <<<"$line")))
done
if start_attach; then
  check
  tb_stop_child "$im_pid"
else
  check_ok=0
  echo "    the attach did not come up after the last kill"
fi
im_pid=''

echo "crash-checks: seed $seed: $kills kills, $acked writes acknowledged, $durable_acks of them" \
  "acknowledged durable; $durable_blocks blocks with a durable write checked, $checked_blocks" \
  "blocks checked; torn $torn, foreign $foreign, lost durable $lost"
tb_report crash-safety "$((check_ok && kills == rounds && torn + foreign + lost == 0))" \
  "seed $seed: torn $torn, foreign $foreign, lost durable $lost, $kills of $rounds kills"
tb_report durable-writes-happened "$((durable_acks > 0))" \
  "no write was acknowledged durable: nothing was checked"
echo "$passed passed, $failed failed"
((failed == 0))
