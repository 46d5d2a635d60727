#!/usr/bin/env bash
# integration.lio: iscsi-mpio against LIO, the Linux kernel target, in a QEMU TCG guest
# (tests/guest/lio-target.sh) configured with targetcli, Debian's targetcli-fb, by the commands
# a user's guide gives (tests/guest/lio-targetcli.sh: two block backstores, two TPGs, three
# portals, an ACL with CHAP and mutual CHAP, two LUNs, an ALUA group); every case runs against
# that target. LIO_CONFIGURE_WITH=configfs writes the same configuration straight into configfs
# instead (no Debian root needed). The host reaches the guest's portals through
# user-mode networking: each host port 127.0.0.1:P forwarded to the guest's 127.0.0.1:P. LUN 0
# is an iblock backstore on a virtio disk that is a raw file on the host, so every data check
# reads what LIO wrote, without going through the initiator.
#
#   tests/integration/lio-suite.sh [CASE...]   (default: all, in this order)
#
# Cases (each prints PASS/FAIL; the last line is "N passed, N failed"):
#   discovery        SendTargets lists the three portals with their TPG tags (1, 1, 2): the
#                    forwarding keeps the addresses LIO advertises usable from the host
#   mutual-chap-refused  the initiator expects another target secret: the attach fails naming
#                    CHAP, LIO's log shows it accepted the initiator (the refusal is ours), and
#                    the disk is unchanged
#   chap-digests     one path, mutual CHAP, HeaderDigest and DataDigest CRC32C required: LIO's
#                    own log confirms CRC32C both ways and the CHAP algorithm; verified random
#                    I/O plus flush, FUA, trim and write-zeroes checks through NBD and in the file
#   multibus         tpgt_1's two portals, round-robin: both paths carry commands and bytes,
#                    neither less than a quarter; data verified
#   two-luns         `luns: all` over tpgt_1 and tpgt_2: LUN 0 and LUN 1 (a second disk file)
#                    as exports lun0 and lun1, both paths active in each map, and a write
#                    through each export lands in its own disk file
#   resize           the disk behind LUN 0 grows from 64 MiB to 96 MiB (QEMU block_resize: LIO
#                    reports it in READ CAPACITY, with no unit attention): within a few polling
#                    intervals `status` and a new NBD client see the new size, and a write past
#                    the old end lands in the disk file; shrunk back, the size follows down
#   alua             tpgt_1 (default_tg_pt_gp, active/optimized) and tpgt_2 (secondary,
#                    active/non-optimized) under group_by_prio: prios 50 and 10 in two groups, I/O
#                    on the optimized path only; LIO flips the states (implicit transition, via
#                    configfs): I/O moves to the other path; tpgt_2 disabled: I/O moves back to
#                    the now non-optimized path; verified I/O without an error throughout
#   block-status     `nbdinfo --map` through iscsi-mpio after a 1 MiB write: the extents tile
#                    the LUN, the written range is data, and every hole or zero extent reads as
#                    zeros in the disk file; a LU that `status` shows without GET LBA STATUS
#                    (block_status all_data) maps as one data extent
#   alua-standby     tpgt_2's group in standby: its path passes the identity check through the
#                    standby port and waits as a ghost (never failed), I/O on tpgt_1 only; LIO
#                    holds tpgt_1's group in transitioning for 3 s (04/0A: retried, not
#                    failed); the states swap (standby <-> optimized): I/O moves within the
#                    polling interval; both groups explicit-only and tpgt_2 disabled: iscsi-mpio
#                    sends SET TARGET PORT GROUPS through the standby path, says so in its log
#                    and `status`, and I/O goes on there; verified I/O without an error
#   nbd-resize       iscsi-mpio inside the LIO guest, attached to the kernel's nbd driver:
#                    ext4 on /dev/nbd0, mounted; the disk grows from 64 MiB to 128 MiB and
#                    /dev/nbd0 follows in place (NBD_CMD_RECONFIGURE), resize2fs grows the
#                    mounted file system, a 16 MiB file is written into the new room; fsck is
#                    clean in the guest and on the host's disk file, whose files' checksums
#                    equal the guest's
#
# Environment: BUILD (build tree, default <repo>/build), IM_BIN, EXERCISER, LIO_SUITE_TIMEOUT
#   (seconds before the suite stops itself, default 420, under CTest's 450), KEEP_WORKDIR=1
#   (keep logs, configs, the guest console), LIO_CONFIGURE_WITH (targetcli, the default, or
#   configfs). IM_GUEST_CACHE: see tests/guest/make-initramfs.sh and make-targetcli-root.sh.
# Needs qemu-system-x86, busybox-static, cpio, jq, Debian's kernel package (fetched once) and,
# for targetcli, mmdebstrap and a Debian mirror for the first run (the root is cached);
# runs as any user able to run QEMU (root in CI). Only 127.0.0.1 is used. About 70 s before
# alua-standby, which adds about 40 s; targetcli adds about 15 s to the guest's start.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
readonly build=${BUILD:-$repo/build}
readonly im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
readonly configure_with=${LIO_CONFIGURE_WITH:-targetcli}
readonly exerciser=${EXERCISER:-$build/tests/integration/nbd_exerciser}
readonly lio=$repo/tests/guest/lio-target.sh
readonly initiator=iqn.2026-11.org.iscsi-mpio:lio-suite
readonly chap_user=im-initiator chap_secret=im-initiator-secret1
readonly mutual_user=im-target mutual_secret=im-target-secret22
# Seconds allowed for an attach to bring its paths up, and for a refused login to end it.
readonly attach_wait=60 failure_deadline=40

work=$(mktemp -d /tmp/im-lio.XXXXXX)
readonly work
passed=0
failed=0
case_pid=''
case_name=''
watchdog_pid=''
lio_started=0
summary_printed=0

log() { printf '%s\n' "$*"; }

cleanup() {
  local status=$?
  set +e
  [[ -z $watchdog_pid ]] || tb_kill_tree "$watchdog_pid"
  if [[ -n $case_pid ]]; then
    log "stopping the running case"
    tb_kill_tree "$case_pid"
    log "FAIL: $case_name (interrupted)"
    failed=$((failed + 1))
  fi
  tb_stop_recorded "$work/pids"
  if ((lio_started)); then
    # Interrupted during start: what lio-target.sh recorded as soon as QEMU ran.
    # shellcheck disable=SC1091
    [[ -n ${LIO_PID:-} || ! -f $work/lio/qemu.env ]] || source "$work/lio/qemu.env"
    if ((status != 0 || failed > 0)) && [[ -f ${LIO_CONSOLE:-} ]]; then
      log "---- LIO guest console (last 30 lines)"
      tr -d '\r' <"$LIO_CONSOLE" | tail -n 30
    fi
    "$lio" stop
  fi
  tb_end_suite "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# A bound of our own: CTest's timeout would SIGKILL us and leave QEMU running.
tb_watchdog "${LIO_SUITE_TIMEOUT:-420}" integration.lio

# --- helpers -------------------------------------------------------------------------------

# write_config NAME MUTUAL_SECRET GROUPING PORT...: the attach configuration $work/NAME.yaml,
# CHAP (mutual when MUTUAL_SECRET is set), CRC32C digests required, one path per PORT.
write_config() {
  local name=$1 mutual=$2 grouping=$3 port
  shift 3
  {
    echo "initiator: {name: $initiator}"
    echo "target:"
    echo "  iqn: $LIO_IQN"
    echo "  lun: $LIO_LUN"
    echo "  login_timeout: 10"
    echo "  digests: {header: crc32c, data: crc32c}"
    echo "  auth:"
    echo "    method: chap"
    echo "    username: $chap_user"
    echo "    secret: \"$chap_secret\""
    [[ -z $mutual ]] || echo "    mutual: {username: $mutual_user, secret: \"$mutual\"}"
    echo "paths:"
    for port; do echo "  - {portal: \"127.0.0.1:$port\"}"; done
    echo "multipath:"
    echo "  path_grouping_policy: $grouping"
    echo "  path_selector: round-robin"
    echo "  polling_interval: 1"
    echo "  no_path_retry: queue"
    echo "nbd: {listen: \"unix:$work/$name.sock\", export: lun0}"
    echo "control: {socket: \"$work/$name.control\"}"
  } >"$work/$name.yaml"
}

uri_for() { echo "nbd+unix:///lun0?socket=$work/$1.sock"; }
status_json() { "$im_bin" status --json "$work/$1.yaml" 2>/dev/null || echo '{"paths":[]}'; }
# path_field NAME I FIELD: FIELD of path I (0-based) in `status --json`.
path_field() { status_json "$1" | jq -r ".paths[$2].$3"; }

# start_attach NAME PATHS: iscsi-mpio attach in the background (PID in $attach_pid); waits
# until the export exists and PATHS paths are active.
start_attach() {
  local name=$1 want=$2 deadline=$((SECONDS + attach_wait))
  tb_spawn "$work/pids" "$work/$name.log" "$im_bin" attach "$work/$name.yaml"
  attach_pid=$spawned
  while ((SECONDS < deadline)); do
    if ! tb_running "$attach_pid"; then
      log "attach exited early; its log:"
      sed 's/^/    /' "$work/$name.log" | tail -n 20
      return 1
    fi
    if [[ -S $work/$name.sock ]] &&
      (($(status_json "$name" | jq '[.paths[] | select(.state == "active")] | length') == want)); then
      return 0
    fi
    sleep 0.2
  done
  log "attach did not bring $want path(s) up within $attach_wait s; its log:"
  sed 's/^/    /' "$work/$name.log" | tail -n 20
  return 1
}

# stop_attach NAME PID: SIGTERM; the attach must exit 0 within 15 s.
stop_attach() {
  local name=$1 pid=$2 rc=0
  kill -TERM "$pid"
  tb_wait_gone "$pid" 15 || { log "attach still running 15 s after SIGTERM"; return 1; }
  wait "$pid" || rc=$?
  ((rc == 0)) || { log "attach exited $rc after SIGTERM:"; tail -n 10 "$work/$name.log"; return 1; }
}

# target_log: LIO's kernel log since the last call (logins: negotiated keys, CHAP).
target_log() { "$lio" ctl log | sed 's/^\[ *[0-9.]*\] //'; }

# expect_in FILE PATTERN WHAT: FILE has a line matching PATTERN (extended regex), else fail.
expect_in() {
  grep -qE "$2" "$1" && return 0
  log "    missing: $3 (/$2/)"
  return 1
}

# --- cases ---------------------------------------------------------------------------------

case_discovery() {
  local out
  out=$(timeout 30 "$im_bin" discover "127.0.0.1:$LIO_PORT_A" --initiator-name "$initiator" 2>&1)
  printf '%s\n' "$out" | sed 's/^/    /'
  local portal
  for portal in "$LIO_PORT_A,1" "$LIO_PORT_B,1" "$LIO_PORT_C,2"; do
    grep -qxF "127.0.0.1:$portal $LIO_IQN" <<<"$out" ||
      { log "    SendTargets lacks 127.0.0.1:$portal"; return 1; }
  done
}

case_mutual_chap_refused() {
  local before after rc=0 started=$SECONDS
  before=$(sha256sum <"$LIO_BACKING")
  target_log >/dev/null
  write_config wrong-mutual "not-the-target-secret3" multibus "$LIO_PORT_A"
  timeout --kill-after=5 "$failure_deadline" "$im_bin" attach "$work/wrong-mutual.yaml" \
    >"$work/wrong-mutual.log" 2>&1 || rc=$?
  log "    exit status $rc after $((SECONDS - started)) s:"
  sed 's/^/      /' "$work/wrong-mutual.log" | grep -iE 'error|fail|chap' | tail -n 4
  ((rc != 0 && rc != 124 && rc != 137)) || { log "    expected a prompt failure"; return 1; }
  grep -q 'CHAP' "$work/wrong-mutual.log" || { log "    no error naming CHAP"; return 1; }
  target_log >"$work/wrong-mutual.target"
  # LIO accepted our response and sent its own: the mismatch was found on our side.
  expect_in "$work/wrong-mutual.target" 'Digests match, CHAP connection successful' \
    "LIO accepting the initiator's CHAP response"
  expect_in "$work/wrong-mutual.target" "Sending CHAP_N=$mutual_user" "LIO's mutual CHAP answer"
  after=$(sha256sum <"$LIO_BACKING")
  [[ $before == "$after" ]] || { log "    the disk changed"; return 1; }
  log "    disk unchanged (sha256 ${after:0:16}...)"
}

case_chap_digests() {
  target_log >/dev/null
  write_config single "$mutual_secret" multibus "$LIO_PORT_A"
  start_attach single 1
  local pid=$attach_pid
  target_log >"$work/single.target"
  grep -E 'Selected .* Algorithm|CHAP_A=|HeaderDigest: |DataDigest: |CHAP_N=|mutual|successful' \
    "$work/single.target" | sed 's/^/    LIO: /' | sort -u
  expect_in "$work/single.target" '^HeaderDigest: +CRC32C' "HeaderDigest CRC32C in LIO's log"
  expect_in "$work/single.target" '^DataDigest: +CRC32C' "DataDigest CRC32C in LIO's log"
  expect_in "$work/single.target" 'Digests match, CHAP connection successful' "CHAP accepted"
  expect_in "$work/single.target" "Sending CHAP_N=$mutual_user" "mutual CHAP answered by LIO"
  "$exerciser" --uri "$(uri_for single)" --backing "$LIO_BACKING" --ops 60 --max-len 1M \
    --queue-depth 8 --time-limit 60 --check flush,trim,zero >"$work/single.exerciser" 2>&1 ||
    { sed 's/^/    /' "$work/single.exerciser" | tail -n 8; return 1; }
  sed 's/^/    /' "$work/single.exerciser" | tail -n 1
  ! grep -iE 'digest' "$work/single.log" | grep -iE 'mismatch|error' ||
    { log "    digest errors logged"; return 1; }
  stop_attach single "$pid"
}

case_multibus() {
  write_config multibus "" multibus "$LIO_PORT_A" "$LIO_PORT_B"
  start_attach multibus 2
  local pid=$attach_pid
  local c0 b0 c1 b1
  c0=$(status_json multibus | jq -r '[.paths[].commands] | join(" ")')
  b0=$(status_json multibus | jq -r '[.paths[].bytes] | join(" ")')
  "$exerciser" --uri "$(uri_for multibus)" --backing "$LIO_BACKING" --ops 80 --max-len 512K \
    --queue-depth 8 --time-limit 60 >"$work/multibus.exerciser" 2>&1 ||
    { sed 's/^/    /' "$work/multibus.exerciser" | tail -n 8; return 1; }
  sed 's/^/    /' "$work/multibus.exerciser" | tail -n 1
  c1=$(status_json multibus | jq -r '[.paths[].commands] | join(" ")')
  b1=$(status_json multibus | jq -r '[.paths[].bytes] | join(" ")')
  local -a before_c after_c before_b after_b
  read -r -a before_c <<<"$c0"
  read -r -a after_c <<<"$c1"
  read -r -a before_b <<<"$b0"
  read -r -a after_b <<<"$b1"
  local dc1=$((after_c[0] - before_c[0])) dc2=$((after_c[1] - before_c[1]))
  local db1=$((after_b[0] - before_b[0])) db2=$((after_b[1] - before_b[1]))
  log "    path A +$dc1 commands (+$((db1 >> 10)) KiB), path B +$dc2 commands (+$((db2 >> 10)) KiB)"
  ((dc1 > 0 && dc2 > 0 && db1 > 0 && db2 > 0)) || { log "    a path carried nothing"; return 1; }
  # Round-robin, one command per turn: neither path gets less than a quarter of the commands.
  ((4 * dc1 >= dc1 + dc2 && 4 * dc2 >= dc1 + dc2)) ||
    { log "    commands split unevenly for round-robin"; return 1; }
  stop_attach multibus "$pid"
}

# LIO's LUN 0 and LUN 1 (two disks, both TPGs) with `luns: all` over tpgt_1 and tpgt_2.
case_two_luns() {
  write_config twoluns "" multibus "$LIO_PORT_A" "$LIO_PORT_C"
  sed -i -e "s/^  lun: $LIO_LUN\$/  luns: all/" -e 's/, export: lun0}/}/' "$work/twoluns.yaml"
  tb_spawn "$work/pids" "$work/twoluns.log" "$im_bin" attach "$work/twoluns.yaml"
  local pid=$spawned active=0 deadline=$((SECONDS + attach_wait))
  # Two maps, both paths active in each (`status --json` of several LUNs is an array of maps).
  while ((SECONDS < deadline)) && tb_running "$pid"; do
    active=$("$im_bin" status --json "$work/twoluns.yaml" 2>/dev/null |
      jq '[.[]? | .paths[] | select(.state == "active")] | length' 2>/dev/null || echo 0)
    ((active == 4)) && break
    sleep 0.2
  done
  ((active == 4)) || { log "    $active paths active, not 4:"; tail -n 15 "$work/twoluns.log"; return 1; }
  local listed
  listed=$(nbdinfo --list --json "nbd+unix://?socket=$work/twoluns.sock" | jq -r '[.exports[]."export-name"] | sort | join(" ")')
  log "    exports: $listed"
  [[ $listed == "lun0 lun1" ]] || return 1
  # A pattern per LUN lands in that LUN's disk, not the other's.
  local lun file
  for lun in 0 1; do
    head -c 65536 /dev/urandom >"$work/pattern$lun"
    qemu-io -f raw -c "write -s $work/pattern$lun 8388608 65536" \
      "nbd+unix:///lun$lun?socket=$work/twoluns.sock" >"$work/twoluns.qemu-io" 2>&1 ||
      { sed 's/^/    /' "$work/twoluns.qemu-io"; return 1; }
  done
  for lun in 0 1; do
    file=$LIO_BACKING
    ((lun == 0)) || file=$LIO_BACKING1
    cmp -s <(dd if="$file" bs=65536 skip=128 count=1 status=none) "$work/pattern$lun" ||
      { log "    LUN $lun's write is not in its disk file"; return 1; }
  done
  stop_attach twoluns "$pid"
}

case_resize() {
  write_config resize "" multibus "$LIO_PORT_A"
  start_attach resize 1
  local pid=$attach_pid old grown shrunk
  old=$(status_json resize | jq -r .size_bytes)
  grown=$(tb_size_bytes 96M)
  shrunk=$(tb_size_bytes 64M)
  ((old == shrunk)) || { log "    export is $old bytes at start, not $shrunk"; return 1; }
  "$lio" resize 96M
  wait_size resize "$grown" 15 || return 1
  local seen
  seen=$(nbdinfo --size "$(uri_for resize)")
  log "    grown: status and a new NBD client report $seen bytes"
  ((seen == grown)) || { log "    a new NBD client sees $seen bytes, not $grown"; return 1; }
  # 1 MiB of 0xa5 just past the old end, read back from the disk file itself.
  qemu-io -f raw -c "write -P 0xa5 $old 1M" "$(uri_for resize)" >"$work/resize.qemu-io" 2>&1 ||
    { sed 's/^/    /' "$work/resize.qemu-io"; return 1; }
  "$im_bin" status --json "$work/resize.yaml" >/dev/null  # the attach is still serving
  local pattern
  pattern=$(dd if="$LIO_BACKING" bs=1M skip=$((old >> 20)) count=1 status=none | od -An -tx1 -v |
    tr -s ' \n' '\n' | grep -v '^$' | sort -u | tr '\n' ' ')
  [[ $pattern == "a5 " ]] ||
    { log "    the disk file past the old end holds bytes: ${pattern:0:60}"; return 1; }
  log "    a write past the old end is in the disk file"
  "$lio" resize 64M
  wait_size resize "$shrunk" 15 || return 1
  log "    shrunk back: status reports $shrunk bytes"
  stop_attach resize "$pid"
}

case_block_status() {
  write_config map "" multibus "$LIO_PORT_A"
  start_attach map 1
  local pid=$attach_pid size mode
  size=$(status_json map | jq -r .size_bytes)
  mode=$(status_json map | jq -r .block_status)
  qemu-io -f raw -c "write -P 0x5a 4M 1M" "$(uri_for map)" >"$work/map.qemu-io" 2>&1 ||
    { sed 's/^/    /' "$work/map.qemu-io"; return 1; }
  nbdinfo --map --json "$(uri_for map)" >"$work/map.json" ||
    { log "    nbdinfo --map failed"; return 1; }
  log "    block_status $mode; $(jq length "$work/map.json") extent(s):" \
    "$(jq -r '[.[] | "\(.offset)+\(.length):\(.description)"] | .[0:6] | join(" ")' "$work/map.json")"
  # The extents tile [0, size) in order.
  local end
  end=$(jq 'reduce .[] as $e (0; if . == $e.offset then . + $e.length else -1 end)' "$work/map.json")
  ((end == size)) || { log "    extents do not tile the $size-byte LUN (reached $end)"; return 1; }
  # NBD_STATE_HOLE (1) or NBD_STATE_ZERO (2) must read as zeros, and the write is data.
  local offset length
  while read -r offset length; do
    cmp -s -n "$length" -i "$offset:0" "$LIO_BACKING" /dev/zero ||
      { log "    extent $offset+$length is a hole or zero, the disk file has data there"; return 1; }
  done < <(jq -r '.[] | select(.type != 0) | "\(.offset) \(.length)"' "$work/map.json")
  local written=$((4 << 20))
  jq -e --argjson w "$written" \
    'all(.[]; .offset + .length <= $w or .offset >= $w + 1048576 or .type == 0)' \
    "$work/map.json" >/dev/null || { log "    the written 1 MiB is mapped as a hole"; return 1; }
  if [[ $mode == all_data ]]; then
    [[ $(jq -c '[.[].type] | unique' "$work/map.json") == "[0]" ]] ||
      { log "    a LU without GET LBA STATUS mapped holes"; return 1; }
  fi
  stop_attach map "$pid"
}

# field NAME OUTPUT: the value of "NAME VALUE" in a guest command's OUTPUT.
field() { awk -v name="$1" '$1 == name {print $2}' <<<"$2"; }

case_nbd_resize() {
  local out grown before_kib after_kib sum_a sum_b
  grown=$(tb_size_bytes 128M)
  out=$(LIO_CTL_TIMEOUT=120 "$lio" ctl nbd attach) || { log "    nbd attach: $out"; return 1; }
  before_kib=$(field fs-kib "$out")
  sum_a=$(field sum-a "$out")
  log "    /dev/nbd0 in the guest: $(field size "$out") bytes, ext4 of $before_kib KiB mounted"
  "$lio" resize 128M
  out=$(LIO_CTL_TIMEOUT=120 "$lio" ctl nbd grow "$grown") || { log "    nbd grow: $out"; return 1; }
  after_kib=$(field fs-kib "$out")
  sum_b=$(field sum-b "$out")
  log "    /dev/nbd0 followed to $(field size "$out") bytes; resize2fs: $before_kib -> $after_kib KiB"
  ((after_kib > before_kib * 3 / 2)) || { log "    the file system did not grow"; return 1; }
  [[ $(field sum-a "$out") == "$sum_a" ]] || { log "    /mnt/a changed across the resize"; return 1; }
  out=$(LIO_CTL_TIMEOUT=60 "$lio" ctl nbd detach) || { log "    nbd detach: $out"; return 1; }
  grep -q "/dev/nbd0 resized to $grown bytes" <<<"$out" ||
    { log "    the attach did not log the resize: $out"; return 1; }
  log "    guest: fsck clean, attach stopped; $(grep -c . <<<"$out") log lines about the device"
  # The host's own look at the disk file LIO wrote.
  e2fsck -n -f "$LIO_BACKING" >"$work/nbd-resize.fsck" 2>&1 ||
    { sed 's/^/    /' "$work/nbd-resize.fsck" | tail -n 5; return 1; }
  local name want got
  for name in a b; do
    want=$([[ $name == a ]] && echo "$sum_a" || echo "$sum_b")
    got=$(debugfs -R "cat /$name" "$LIO_BACKING" 2>/dev/null | sha256sum | cut -d' ' -f1)
    [[ $got == "$want" ]] || { log "    /$name in the disk file differs from the guest's"; return 1; }
  done
  log "    host: disk file fsck clean, /a and /b equal the guest's checksums"
}

# wait_size NAME BYTES SECONDS: until `status` reports the export as BYTES long.
wait_size() {
  local deadline=$((SECONDS + $3)) size=''
  while ((SECONDS < deadline)); do
    size=$(status_json "$1" | jq -r .size_bytes)
    [[ $size == "$2" ]] && return 0
    sleep 0.2
  done
  log "    status still reports ${size:-no} size, not $2 bytes, after $3 s"
  return 1
}

# paths_summary NAME: "state/prio/group/in-use/alua" of each path, for the log.
paths_summary() {
  status_json "$1" | jq -r '[.paths[] | "\(.state) prio \(.priority) group \(.group)" +
    (if .group_in_use then " in use" else "" end) + " (\(.alua_state))"] | join("; ")'
}

# wait_prios NAME PRIO_A PRIO_C SECONDS: until path A (index 0) and C (index 1) show those
# priorities.
wait_prios() {
  local name=$1 want="$2 $3" deadline=$((SECONDS + $4))
  while ((SECONDS < deadline)); do
    [[ $(status_json "$name" | jq -r '[.paths[].priority] | join(" ")') == "$want" ]] && return 0
    sleep 0.2
  done
  log "    priorities not $want within $4 s: $(paths_summary "$name")"
  return 1
}

# background_io NAME SECONDS: verified random I/O on NAME's export for SECONDS, in the
# background (its PID in $io_pid); io_verified NAME PID waits for it and shows its summary.
background_io() {
  "$exerciser" --uri "$(uri_for "$1")" --backing "$LIO_BACKING" --ops 1000000 --max-len 256K \
    --queue-depth 8 --time-limit "$2" >"$work/$1.exerciser" 2>&1 &
  io_pid=$!
}
io_verified() {
  local rc=0
  tb_wait_gone "$2" 90 || { log "    exerciser still running"; kill -TERM "$2"; }
  wait "$2" || rc=$?
  sed 's/^/    /' "$work/$1.exerciser" | tail -n 2
  ((rc == 0))
}

# only_busy NAME BUSY IDLE LABEL: over 3 s, path BUSY moves at least 1 MiB and path IDLE at most
# 64 KiB (the prioritizer's own VPD and REPORT TARGET PORT GROUPS, 8 KiB per polling interval).
only_busy() {
  local name=$1 busy=$2 idle=$3 label=$4 b0 i0 b1 i1
  b0=$(path_field "$name" "$busy" bytes) i0=$(path_field "$name" "$idle" bytes)
  sleep 3
  b1=$(path_field "$name" "$busy" bytes) i1=$(path_field "$name" "$idle" bytes)
  log "    $label: busy path +$(((b1 - b0) >> 10)) KiB, idle path +$(((i1 - i0) >> 10)) KiB in 3 s"
  ((b1 - b0 >= 1 << 20 && i1 - i0 <= 64 << 10))
}

case_alua() {
  write_config alua "" group_by_prio "$LIO_PORT_A" "$LIO_PORT_C"
  start_attach alua 2
  local pid=$attach_pid ok=1
  wait_prios alua 50 10 15
  log "    at start: $(paths_summary alua)"
  local json
  json=$(status_json alua)
  jq -e '.paths[0].group != .paths[1].group and .paths[0].group_in_use and
    (.paths[1].group_in_use | not) and .paths[0].alua_state == "active/optimized" and
    .paths[1].alua_state == "active/non-optimized"' <<<"$json" >/dev/null ||
    { log "    expected two groups, the optimized one in use"; return 1; }

  background_io alua 40
  local ex_pid=$io_pid
  sleep 2
  only_busy alua 0 1 "A optimized, C non-optimized" || ok=0

  # An implicit ALUA transition (SPC-4 §5.16.2.6), as a target failing over would make it.
  "$lio" ctl alua secondary 0 >/dev/null
  "$lio" ctl alua default_tg_pt_gp 1 >/dev/null
  if wait_prios alua 10 50 15; then
    log "    after LIO swapped the states: $(paths_summary alua)"
    only_busy alua 1 0 "A non-optimized, C optimized" || ok=0
  else
    ok=0
  fi

  # The optimized port goes away: the non-optimized path is all that is left.
  "$lio" ctl tpg 2 disable >/dev/null
  local deadline=$((SECONDS + 15))
  while ((SECONDS < deadline)) && [[ $(path_field alua 1 state) == active ]]; do sleep 0.2; done
  log "    tpgt_2 disabled: $(paths_summary alua)"
  [[ $(path_field alua 1 state) != active ]] || { log "    path C still active"; ok=0; }
  only_busy alua 0 1 "C gone, A non-optimized" || ok=0

  io_verified alua "$ex_pid" || ok=0
  grep -E 'prio|ALUA|path group|failed' "$work/alua.log" | sed 's/^/    log: /' | tail -n 8

  # Back as it was: tpgt_2 on, default group optimized again.
  "$lio" ctl tpg 2 enable >/dev/null
  "$lio" ctl alua default_tg_pt_gp 0 >/dev/null
  "$lio" ctl alua secondary 1 >/dev/null
  stop_attach alua "$pid" || ok=0
  ((ok))
}

# path_is NAME I STATE ALUA: path I shows STATE and ALUA state ALUA in `status --json`.
path_is() {
  [[ $(status_json "$1" | jq -r ".paths[$2] | \"\(.state) \(.alua_state)\"") == "$3 $4" ]]
}

# moved_within NAME BUSY SECONDS: prints the seconds (to a tenth) until path BUSY has moved
# 256 KiB more than now; false after SECONDS.
moved_within() {
  local name=$1 busy=$2 limit=$3 b0 start now
  start=$(date +%s%N)
  b0=$(path_field "$name" "$busy" bytes)
  while :; do
    now=$(date +%s%N)
    if (($(path_field "$name" "$busy" bytes) - b0 >= 256 << 10)); then
      printf '%d.%d\n' $(((now - start) / 1000000000)) $(((now - start) / 100000000 % 10))
      return 0
    fi
    ((now - start < limit * 1000000000)) || return 1
    sleep 0.1
  done
}

# alua_restore: LIO's groups as the guest starts them (access type 3, implicit and explicit;
# default_tg_pt_gp optimized, secondary non-optimized; tpgt_2 on), whatever a case left.
alua_restore() {
  "$lio" ctl tpg 2 enable >/dev/null || true
  "$lio" ctl alua-type default_tg_pt_gp 3 >/dev/null || true
  "$lio" ctl alua-type secondary 3 >/dev/null || true
  "$lio" ctl alua default_tg_pt_gp 0 >/dev/null || true
  "$lio" ctl alua secondary 1 >/dev/null || true
}

# alua-standby: tpgt_2's group starts in standby. Its path logs in and passes the identity check
# through the standby port (INQUIRY, VPD 0x83, REPORT TARGET PORT GROUPS) and waits as a ghost,
# never failed; I/O only through the optimized port. LIO puts that group in transitioning
# (04/0A) for 3 s: its commands are retried, not failed. The states swap: I/O moves to the
# other port within the polling interval. Then both groups explicit-only and tpgt_2 disabled:
# the standby group left is activated with SET TARGET PORT GROUPS, said in the log and
# `status`. Verified I/O without an error throughout.
case_alua_standby() {
  local ok=1 took
  # The case runs in a subshell of its own: LIO's groups are put back however it ends, for the
  # cases after it (nbd-resize logs in through tpgt_1).
  trap alua_restore EXIT
  "$lio" ctl alua secondary 2 >/dev/null
  write_config standby "" group_by_prio "$LIO_PORT_A" "$LIO_PORT_C"
  start_attach standby 1
  local pid=$attach_pid
  if tb_wait_until 15 path_is standby 1 ghost standby; then
    log "    at start: $(paths_summary standby)"
  else
    log "    path C not a standby ghost: $(paths_summary standby)"
    ok=0
  fi
  background_io standby 28
  local ex_pid=$io_pid
  sleep 2
  only_busy standby 0 1 "A optimized, C standby" || ok=0

  "$lio" ctl alua default_tg_pt_gp 15 >/dev/null
  sleep 3
  log "    A transitioning for 3 s: $(paths_summary standby)"
  [[ $(path_field standby 0 state) == active ]] || { log "    path A left its group"; ok=0; }

  "$lio" ctl alua secondary 0 >/dev/null
  "$lio" ctl alua default_tg_pt_gp 2 >/dev/null
  if took=$(moved_within standby 1 5); then
    log "    states swapped: I/O on C after $took s (polling interval 1 s)"
  else
    log "    I/O did not move to C within 5 s"
    ok=0
  fi
  tb_wait_until 5 path_is standby 0 ghost standby || ok=0
  log "    after the swap: $(paths_summary standby)"
  only_busy standby 1 0 "C optimized, A standby" || ok=0

  # Explicit only: LIO takes no state written to configfs any more, only SET TARGET PORT
  # GROUPS. The optimized group's port goes away; A, a standby ghost, is all that is left.
  "$lio" ctl alua-type default_tg_pt_gp 2 >/dev/null
  "$lio" ctl alua-type secondary 2 >/dev/null
  "$lio" ctl tpg 2 disable >/dev/null
  if took=$(moved_within standby 0 10); then
    log "    tpgt_2 disabled: I/O on A after $took s; $(paths_summary standby)"
  else
    log "    I/O did not come back on A within 10 s: $(paths_summary standby)"
    ok=0
  fi
  log "    LIO: $("$lio" ctl alua-show | tr '\n' ';')"
  local activation
  activation=$(path_field standby 0 alua_activation)
  log "    status: $activation"
  [[ $activation == *"target port group 0 to active/optimized, done" ]] ||
    { log "    status does not show the activation"; ok=0; }
  expect_in "$work/standby.log" 'SET TARGET PORT GROUPS: target port group 0 .*done' \
    "the activation in the log" || ok=0

  io_verified standby "$ex_pid" || ok=0
  grep -E 'identity|ALUA|path group|TARGET PORT|failed' "$work/standby.log" |
    sed 's/^/    log: /' | tail -n 12
  # Standby is never a failure: no identity check failed, no path error counted on C.
  ! grep -q 'identity check failed' "$work/standby.log" ||
    { log "    an identity check failed"; ok=0; }
  stop_attach standby "$pid" || ok=0
  ((ok))
}

# --- main ----------------------------------------------------------------------------------

for tool in qemu-system-x86_64 qemu-io nbdinfo jq sha256sum timeout debugfs e2fsck; do
  command -v "$tool" >/dev/null || tb_die "missing $tool (run tools/install-deps.sh)"
done
[[ -x $im_bin ]] || tb_die "iscsi-mpio binary not found: $im_bin"
[[ -x $exerciser ]] || tb_die "nbd_exerciser not found: $exerciser"

started=$SECONDS
touch "$work/pids"
lio_started=1  # set first: an interrupted start still has its QEMU stopped (qemu.env)
lio_env=$("$lio" start --initiator "$initiator" --dir "$work/lio" --size 64M \
  --initiator-binary "$im_bin" --configure-with "$configure_with" \
  --chap "$chap_user:$chap_secret" --mutual-chap "$mutual_user:$mutual_secret") || {
  lio_started=0
  tb_die "the LIO guest did not start"
}
eval "$lio_env"
log "LIO: $LIO_IQN LUN $LIO_LUN, portals 127.0.0.1:$LIO_PORT_A and :$LIO_PORT_B (tpgt_1)," \
  "127.0.0.1:$LIO_PORT_C (tpgt_2); TPG offers HeaderDigest=$LIO_HEADER_DIGEST" \
  "DataDigest=$LIO_DATA_DIGEST AuthMethod=$LIO_AUTH_METHOD; configured with $configure_with," \
  "up after $((SECONDS - started)) s"
# The guest's own timeline (seconds since its boot): modules, configuration, ready.
tr -d '\r' <"$LIO_CONSOLE" | grep -a '^LIO: \[' | sed 's/^/    guest /'
[[ $configure_with != targetcli ]] ||
  tr -d '\r' <"$LIO_CONSOLE" | grep -aE '^[ |]*o- ' |
  sed 's/^/    targetcli ls: /'

selected=("$@")
((${#selected[@]})) ||
  selected=(discovery mutual-chap-refused chap-digests multibus two-luns resize block-status alua
    alua-standby nbd-resize)
for c in "${selected[@]}"; do
  case $c in
    discovery | mutual-chap-refused | chap-digests | multibus | two-luns | resize | block-status | \
      alua | alua-standby | nbd-resize) ;;
    *) log "unknown case $c"; failed=$((failed + 1)); continue ;;
  esac
  case_started=$SECONDS
  tb_run_case "$c" "case_${c//-/_}"
  log "    ($((SECONDS - case_started)) s)"
done

log "integration.lio took $((SECONDS - started)) s"
summary_printed=1
log "$passed passed, $failed failed"
((failed == 0))
