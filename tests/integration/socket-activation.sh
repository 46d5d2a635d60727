#!/usr/bin/env bash
# Socket activation (issue 22, part 2): the NBD unix socket is bound by a stand-in for systemd
# (systemd-socket-activate, then socket-restarter.sh keeping the listener across restarts of the
# attach), against a tgtd on loopback:
#   first-client    the first client's connection starts the attach (as a .socket unit does)
#                   and is served once the login is done: nbdinfo gets the LUN's size
#   socket-kept     across a restart the socket file stays, the same inode (the attach never
#                   unlinks what systemd owns)
#   backlog         a client connecting while no attach runs waits in the backlog instead of
#                   getting ECONNREFUSED, and is served by the next attach
#   reconnect       qemu-io with reconnect-delay reads through a restart between its reads and
#                   through one in the middle of a run of reads: every read succeeds and
#                   matches the backing file's pattern
#   clean-stop      each stopped attach exited 0 (drained, logged out)
#   mismatch        a socket at another path than nbd.listen: exit 2 before any login, the
#                   error naming both paths
#
# Environment: BUILD (build tree), IM_BIN. Needs root (tgtd), qemu-io, nbdinfo,
# systemd-socket-activate (package systemd). Every wait is bounded; everything started here is
# stopped by PID on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
# shellcheck source=tests/integration/check-lib.sh
source "$repo/tests/integration/check-lib.sh"
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
restarter=$repo/tests/integration/socket-restarter.sh

for tool in tgtd qemu-io nbdinfo systemd-socket-activate; do
  command -v "$tool" >/dev/null || { echo "missing $tool"; echo "0 passed, 1 failed"; exit 1; }
done
[[ -x $im_bin ]] || { echo "iscsi-mpio not found: $im_bin"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/im-sockact.XXXXXX)
activate_pid=''  # systemd-socket-activate, later the restarter it execs
client_pid=''    # a background client
tgt_started=0
passed=0
failed=0
report_log=$work/attach.log

cleanup() {
  local rc=$?
  trap - EXIT
  rm -f "$work/hold"
  [[ -z $client_pid ]] || { kill -TERM "$client_pid" 2>/dev/null || true; wait "$client_pid" 2>/dev/null || true; }
  if [[ -n $activate_pid ]] && tb_running "$activate_pid"; then
    kill -TERM "$activate_pid" 2>/dev/null || true
    tb_wait_gone "$activate_pid" 70 || kill -KILL "$activate_pid" 2>/dev/null || true
  fi
  [[ -z $activate_pid ]] || wait "$activate_pid" 2>/dev/null || true
  if ((tgt_started)); then "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1 || true; fi
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---------------------------------------------------------------- target, pattern, config

eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 64M --dir "$work/tgt")"
tgt_started=1
# The first 32 MiB of the LUN all 0x5a, so qemu-io's `read -P 0x5a` checks the data it reads.
readonly pattern_mib=32
fill_pattern "$TGT_BACKING" "$pattern_mib"

sock=$work/nbd.sock
config=$work/lun.yaml
cat >"$config" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:socket-activation}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths:
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.1}
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.2}
multipath: {polling_interval: 1, noop_out_interval: 1, noop_out_timeout: 2}
nbd: {listen: "unix:$sock", export: disk}
control: {socket: "$work/control.sock"}
EOF
uri="nbd+unix:///disk?socket=$sock"
qemu_image="driver=nbd,server.type=unix,server.path=$sock,export=disk,reconnect-delay=30"

attach_pid() { cat "$work/attach.pid" 2>/dev/null; }
answers() { timeout 5 "$im_bin" status "$config" >/dev/null 2>&1; }
restarts() { cat "$work/restarts" 2>/dev/null || echo 0; }
inode() { stat -c %i "$sock" 2>/dev/null || echo none; }

systemd-socket-activate -l "$sock" "$restarter" "$im_bin" "$config" "$work" \
  </dev/null >"$work/activate.log" 2>&1 &
activate_pid=$!
if ! tb_wait_until 10 test -S "$sock"; then
  tb_report first-client 0 "systemd-socket-activate did not create $sock: $(cat "$work/activate.log")"
  echo "$passed passed, $failed failed"
  exit 1
fi
inode_before=$(inode)

# ---------------------------------------------------------------- first-client

ok=1
[[ ! -e $work/attach.pid ]] || ok=0  # nothing runs before a client comes
size=$(timeout 60 nbdinfo --size "$uri" 2>"$work/nbdinfo.err") || ok=0
[[ $size == $((64 << 20)) ]] || ok=0
tb_report first-client "$ok" "nbdinfo --size: '$size' (wanted $((64 << 20))): $(cat "$work/nbdinfo.err")" \
  "attach started before the client: $([[ -e $work/attach.pid ]] && echo yes || echo no)"
tb_wait_until 30 answers || tb_report ready 0 "the attach's control socket did not answer"

# ---------------------------------------------------------------- backlog and reconnect

# qemu_reads PAUSE_MS GAP_MS: qemu-io reading the pattern (pattern_reads): every read must
# succeed, reconnecting within reconnect-delay when the restart comes in a pause or a gap.
qemu_reads() {
  pattern_reads "$pattern_mib" "$2" "$1"
  timeout 120 qemu-io --image-opts "$qemu_image" "${qemu_args[@]}"
}
read_ok() { pattern_reads_ok "$1" "$pattern_mib"; }

# Clients the attaches have served so far (qemu-io's own output is only flushed at its exit).
clients_served() { grep -c "using export 'disk'" "$work/attach.log" || true; }
# start_reads PAUSE_MS GAP_MS NAME: qemu_reads in the background, returning once it is served
# and has been reading for a second (the restart then comes in the middle).
start_reads() {
  local before
  before=$(clients_served)
  qemu_reads "$1" "$2" >"$work/$3.out" 2>&1 &
  client_pid=$!
  served_more() { (($(clients_served) > before)); }
  tb_wait_until 20 served_more || true
  sleep 1
}

start_reads 6000 0 qemu1
touch "$work/hold"
first_attach=$(attach_pid)
ok=1
tb_running "$client_pid" || ok=0  # qemu-io still has reads to do after the restart
kill -USR1 "$activate_pid"
tb_wait_until 60 test -e "$work/down" || ok=0
# No attach runs now: a new client must wait, not be refused.
timeout 60 nbdinfo --size "$uri" >"$work/late.out" 2>&1 &
late_pid=$!
sleep 1
tb_running "$late_pid" || ok=0
late_early_exit=$(cat "$work/late.out")
inode_down=$(inode)
rm -f "$work/hold"
wait "$late_pid" || ok=0
[[ $(cat "$work/late.out") == $((64 << 20)) ]] || ok=0
tb_report backlog "$ok" "a client connecting during the restart: '$(cat "$work/late.out")'" \
  "(still waiting after 1 s: $([[ -z $late_early_exit ]] && echo yes || echo "no: $late_early_exit"))"
tb_report socket-kept "$([[ $inode_down == "$inode_before" && $(inode) == "$inode_before" ]] && echo 1 || echo 0)" \
  "socket inode before $inode_before, while down $inode_down, after $(inode)"

rc=0
wait "$client_pid" || rc=$?
client_pid=''
ok=1
((rc == 0)) && read_ok "$work/qemu1.out" || ok=0
[[ $(attach_pid) != "$first_attach" ]] || ok=0
tb_report reconnect "$ok" "qemu-io exit $rc across the restart (attach $first_attach -> $(attach_pid)):" \
  "$(tail -n 5 "$work/qemu1.out")"

# The same in the middle of a run of reads, with no pause in the restart.
tb_wait_until 30 answers || true
start_reads 0 100 qemu2
second_attach=$(attach_pid)
ok=1
tb_running "$client_pid" || ok=0
kill -USR1 "$activate_pid"
rc=0
wait "$client_pid" || rc=$?
client_pid=''
((rc == 0)) && read_ok "$work/qemu2.out" || ok=0
[[ $(restarts) == 2 ]] || ok=0
tb_report reconnect-under-io "$ok" "qemu-io exit $rc, restarts $(restarts), attach $second_attach -> $(attach_pid):" \
  "$(tail -n 5 "$work/qemu2.out")"

# ---------------------------------------------------------------- clean-stop

tb_wait_until 30 answers || true
kill -TERM "$activate_pid"
rc=0
tb_wait_gone "$activate_pid" 70 || true
wait "$activate_pid" || rc=$?
activate_pid=''
tb_report clean-stop "$([[ $rc == 0 && $(cat "$work"/stop-status.* | sort -u) == 0 ]] && echo 1 || echo 0)" \
  "last exit $rc, restarts exited $(cat "$work"/stop-status.* | tr '\n' ' ')"

# ---------------------------------------------------------------- mismatch

# A socket at another path than nbd.listen: exit 2 before any login, naming both.
other=$work/other.sock
systemd-socket-activate -l "$other" "$im_bin" attach "$config" \
  </dev/null >"$work/mismatch.out" 2>&1 &
mismatch_pid=$!
tb_wait_until 10 test -S "$other" || true
timeout 10 nbdinfo --size "nbd+unix:///disk?socket=$other" >/dev/null 2>&1 || true  # starts it
rc=0
tb_wait_gone "$mismatch_pid" 20 || kill -KILL "$mismatch_pid" 2>/dev/null || true
wait "$mismatch_pid" || rc=$?
ok=1
((rc == 2)) || ok=0
grep -q "listens on unix:$other, but nbd.listen is unix:$sock" "$work/mismatch.out" || ok=0
! grep -q 'logging in' "$work/mismatch.out" || ok=0
tb_report mismatch "$ok" "exit $rc (wanted 2): $(tail -n 3 "$work/mismatch.out")"

echo "$passed passed, $failed failed"
((failed == 0))
