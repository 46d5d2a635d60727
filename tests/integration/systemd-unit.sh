#!/usr/bin/env bash
# The units of tools/systemd under a real systemd (issue 22, part 5): systemd 252 boots as PID 1
# of a systemd-nspawn container (a Debian 12 root made once with mmdebstrap and cached under
# /var/tmp; each run writes to a tmpfs overlay, --volatile=overlay), sharing the host's network,
# with the attach binary and the units bound in. Against a tgtd on the host's loopback:
#   start          `systemctl start iscsi-mpio@t.socket iscsi-mpio@t.service` returns once
#                  attach sent READY=1 (Type=notify): active/running, and `systemctl status`
#                  shows the STATUS= line, "disk: 2/2 paths active" once the second path is up
#   status-paths   `iscsi-mpio fail-path 1` shows in the STATUS= line within a second or so,
#                  and `reinstate-path 1` brings "2/2 paths active" back
#   watchdog       with WatchdogSec=3 (a drop-in) the service runs past three intervals, its
#                  WATCHDOG=1 pings arriving
#   reload         `systemctl reload` (SIGHUP: RELOADING=1 ... READY=1) keeps the same process
#                  serving, the journal says the configuration was checked
#   restart-io     `systemctl restart` while qemu-io with reconnect-delay reads through the
#                  socket systemd holds: every read succeeds with the backing file's pattern,
#                  and the main PID changed
#   stop           `systemctl stop` of both units: inactive, the journal shows the clean logout
#
# Environment: BUILD (build tree), IM_BIN, IM_NSPAWN_ROOT (the cached root; default
# /var/tmp/iscsi-mpio-nspawn-root). Needs root, tgtd, systemd-nspawn (systemd-container),
# mmdebstrap for the first run (network access to a Debian mirror, about 2 minutes).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
# shellcheck source=tests/integration/check-lib.sh
source "$repo/tests/integration/check-lib.sh"
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
root=${IM_NSPAWN_ROOT:-/var/tmp/iscsi-mpio-nspawn-root}
# What the root holds: systemd as init, qemu-io for the client, the attach's shared libraries.
readonly root_packages=systemd,systemd-sysv,dbus,qemu-utils,procps,libspdlog1.10,libfmt9,libisal2,libyaml-cpp0.7,libgnutls30,libssl3,libsystemd0
readonly root_stamp=".iscsi-mpio-root:$root_packages"

for tool in tgtd systemd-nspawn nsenter; do
  command -v "$tool" >/dev/null || { echo "missing $tool"; echo "0 passed, 1 failed"; exit 1; }
done
[[ -x $im_bin ]] || { echo "iscsi-mpio not found: $im_bin"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/im-systemd.XXXXXX)
nspawn_pid=''
tgt_started=0
passed=0
failed=0
report_log=$work/journal.txt

cleanup() {
  local rc=$?
  trap - EXIT
  [[ -z $nspawn_pid ]] || stop_container
  if ((tgt_started)); then "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1 || true; fi
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---------------------------------------------------------------- the root, once

if [[ ! -e $root/$root_stamp ]]; then
  command -v mmdebstrap >/dev/null || { echo "missing mmdebstrap"; echo "0 passed, 1 failed"; exit 1; }
  echo "building the container root $root (once)"
  rm -rf "$root.new"
  if ! timeout 900 mmdebstrap --variant=minbase --include="$root_packages" bookworm "$root.new" \
    >"$work/mmdebstrap.log" 2>&1; then
    tail -n 20 "$work/mmdebstrap.log"
    rm -rf "$root.new"
    echo "0 passed, 1 failed"
    exit 1
  fi
  touch "$root.new/$root_stamp"
  rm -rf "$root"
  mv "$root.new" "$root"
fi

# ---------------------------------------------------------------- target and files

eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 64M --dir "$work/tgt")"
tgt_started=1
readonly pattern_mib=32
fill_pattern "$TGT_BACKING" "$pattern_mib"

cat >"$work/t.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:systemd-unit}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths:
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.1}
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.2}
multipath: {polling_interval: 1, noop_out_interval: 1, noop_out_timeout: 2}
nbd: {listen: "unix:/run/iscsi-mpio/t.sock", export: disk}
EOF
printf '[Service]\nWatchdogSec=3\n' >"$work/watchdog.conf"

# ---------------------------------------------------------------- the container

# --register=no and --keep-unit: no machined or host systemd to register with here.
systemd-nspawn --quiet --register=no --keep-unit --volatile=overlay -D "$root" -M im-systemd-test \
  --bind-ro="$im_bin:/usr/local/bin/iscsi-mpio" \
  --bind-ro="$repo/tools/systemd/iscsi-mpio@.service:/etc/systemd/system/iscsi-mpio@.service" \
  --bind-ro="$repo/tools/systemd/iscsi-mpio@.socket:/etc/systemd/system/iscsi-mpio@.socket" \
  --bind-ro="$work/watchdog.conf:/etc/systemd/system/iscsi-mpio@.service.d/watchdog.conf" \
  --bind-ro="$work/t.yaml:/etc/iscsi-mpio/t.yaml" \
  -b --console=pipe </dev/null >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!

stop_container() {
  if tb_running "$nspawn_pid"; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true  # nspawn asks the container's systemd to halt
    tb_wait_gone "$nspawn_pid" 30 || kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  wait "$nspawn_pid" 2>/dev/null || true
  nspawn_pid=''
}

# The container's PID 1: systemd, nspawn's child.
leader=''
find_leader() { leader=$(pgrep -P "$nspawn_pid" -x systemd | head -n 1) && [[ -n $leader ]]; }
# in_ct COMMAND...: COMMAND in the container's mount and PID namespaces, up to 90 s.
in_ct() { timeout 90 nsenter -t "$leader" -m -p -- "$@"; }
booted() { [[ $(in_ct systemctl is-system-running 2>/dev/null) =~ ^(running|degraded)$ ]]; }
journal() { in_ct journalctl --no-pager -o cat -u iscsi-mpio@t.service >"$work/journal.txt" 2>&1 || true; }
prop() { in_ct systemctl show -P "$1" iscsi-mpio@t.service; }

if ! tb_wait_until 60 find_leader || ! tb_wait_until 120 booted; then
  tb_report boot 0 "systemd did not boot in the container (is-system-running:" \
    "$( [[ -z $leader ]] || in_ct systemctl is-system-running 2>&1)): $(tail -n 20 "$work/nspawn.log")"
  echo "$passed passed, $failed failed"
  exit 1
fi

# ---------------------------------------------------------------- start

ok=1
in_ct systemctl start iscsi-mpio@t.socket iscsi-mpio@t.service >"$work/start.out" 2>&1 || ok=0
state="$(prop ActiveState)/$(prop SubState)"
# READY=1 comes once one path is up; the line follows the second one's login.
both_paths() { [[ $(prop StatusText) == "disk: 2/2 paths active" ]]; }
tb_wait_until 10 both_paths || true
status_text=$(prop StatusText)
in_ct systemctl status --no-pager iscsi-mpio@t.service >"$work/status.txt" 2>&1 || true
[[ $state == active/running && $status_text == "disk: 2/2 paths active" ]] || ok=0
grep -q 'Status: "disk: 2/2 paths active"' "$work/status.txt" || ok=0
journal
tb_report start "$ok" "state $state, StatusText '$status_text': $(cat "$work/start.out")" \
  "$(head -n 12 "$work/status.txt")"
first_pid=$(prop MainPID)

# ---------------------------------------------------------------- status follows the paths

# fail-path 1 through the control socket: the STATUS= line names it within the rate limit
# (1 s), and reinstate-path brings the line back.
ok=1
in_ct /usr/local/bin/iscsi-mpio fail-path /etc/iscsi-mpio/t.yaml 1 >"$work/fail.out" 2>&1 || ok=0
one_failed() {
  [[ $(prop StatusText) == "disk: 1/2 paths active (127.0.0.1:$TGT_PORT from 127.0.0.1 failed)" ]]
}
tb_wait_until 5 one_failed || ok=0
failed_text=$(prop StatusText)
in_ct /usr/local/bin/iscsi-mpio reinstate-path /etc/iscsi-mpio/t.yaml 1 >>"$work/fail.out" 2>&1 ||
  ok=0
tb_wait_until 10 both_paths || ok=0
tb_report status-paths "$ok" "after fail-path 1: '$failed_text'; after reinstate: '$(prop StatusText)'" \
  "$(cat "$work/fail.out")"

# ---------------------------------------------------------------- watchdog

sleep 10  # more than three WatchdogSec=3 intervals: without pings systemd would kill it
ok=1
[[ $(prop MainPID) == "$first_pid" && $(prop ActiveState) == active ]] || ok=0
[[ $(prop WatchdogUSec) == 3s ]] || ok=0
[[ $(prop WatchdogTimestampMonotonic) =~ ^[1-9] ]] || ok=0
journal
grep -q 'systemd watchdog: pinging every 1500 ms' "$work/journal.txt" || ok=0
tb_report watchdog "$ok" "MainPID $first_pid -> $(prop MainPID), $(prop ActiveState)," \
  "WatchdogUSec $(prop WatchdogUSec), last ping $(prop WatchdogTimestamp)"

# ---------------------------------------------------------------- reload

ok=1
in_ct systemctl reload iscsi-mpio@t.service >"$work/reload.out" 2>&1 || ok=0
[[ $(prop MainPID) == "$first_pid" && $(prop SubState) == running ]] || ok=0
journal
grep -q 'reload applied: /etc/iscsi-mpio/t.yaml: nothing changed' "$work/journal.txt" || ok=0
tb_report reload "$ok" "systemctl reload: $(cat "$work/reload.out"), MainPID $(prop MainPID)," \
  "$(prop SubState)"

# ---------------------------------------------------------------- restart under I/O

# qemu-io in the container, 1 MiB reads 100 ms apart through the socket systemd holds.
pattern_reads "$pattern_mib" 100 0
in_ct qemu-io --image-opts \
  "driver=nbd,server.type=unix,server.path=/run/iscsi-mpio/t.sock,export=disk,reconnect-delay=30" \
  "${qemu_args[@]}" >"$work/qemu.out" 2>&1 &
qemu_pid=$!
sleep 1
ok=1
tb_running "$qemu_pid" || ok=0  # reads still to do after the restart
in_ct systemctl restart iscsi-mpio@t.service >"$work/restart.out" 2>&1 || ok=0
rc=0
wait "$qemu_pid" || rc=$?
((rc == 0)) || ok=0
pattern_reads_ok "$work/qemu.out" "$pattern_mib" || ok=0
second_pid=$(prop MainPID)
[[ $second_pid != "$first_pid" && $(prop SubState) == running ]] || ok=0
[[ $(prop StatusText) == "disk: 2/2 paths active" ]] || ok=0
journal
tb_report restart-io "$ok" "qemu-io exit $rc, MainPID $first_pid -> $second_pid, $(prop SubState):" \
  "$(cat "$work/restart.out")" "$(tail -n 4 "$work/qemu.out")"

# ---------------------------------------------------------------- stop

ok=1
in_ct systemctl stop iscsi-mpio@t.service iscsi-mpio@t.socket >"$work/stop.out" 2>&1 || ok=0
[[ $(prop ActiveState) == inactive && $(prop Result) == success ]] || ok=0
journal
[[ $(grep -c ' info logged out$' "$work/journal.txt") -ge 2 ]] || ok=0
tb_report stop "$ok" "$(cat "$work/stop.out") state $(prop ActiveState), result $(prop Result)"

stop_container
echo "$passed passed, $failed failed"
((failed == 0))
