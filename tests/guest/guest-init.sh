#!/bin/busybox sh
# shellcheck shell=sh
# /init of the test guest that tests/guest/nbd-guest-test.sh boots (QEMU TCG, busybox
# initramfs). It attaches the LUN as /dev/nbd0 with iscsi-mpio, puts an ext4 file system on it,
# and proves that the data survives a detach and a new attach. It reports on the serial console:
#   GUEST: ...                 progress, with seconds since boot
#   GUEST-METRIC: KEY=VALUE    figures for the host's report
#   GUEST-SUM: SHA256 NAME     checksums of the files written, for the host's own check
#   GUEST-LOG: NAME: LINE      iscsi-mpio's lines about the device, and its warnings and errors
#   GUEST-RESULT: PASS | FAIL REASON   the last line; then the guest powers off
# Every wait is bounded. Inputs: /etc/im/*.yaml and /etc/im/guest.env (TARGET_IQN, PORTAL) from
# the host script, /etc/guest-modules and /lib/modules/*.ko from make-initramfs.sh.

/bin/busybox mkdir -p /proc /sys /dev /run /tmp /mnt /usr/bin /usr/sbin /sbin
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/im
# shellcheck source=/dev/null
. /etc/im/guest.env

say() { echo "GUEST: [$(cut -d' ' -f1 /proc/uptime)] $*"; }
metric() { echo "GUEST-METRIC: $1=$2"; }
finish() {
  echo "GUEST-RESULT: $*"
  sync
  poweroff -f
  sleep 30
}
fail() {
  say "failed: $*"
  for log in /tmp/*.log; do
    [ -f "$log" ] || continue
    echo "---- $log"
    tail -n 25 "$log"
  done
  echo "---- dmesg (nbd, ext4)"
  dmesg | grep -iE 'nbd|ext4|block' | tail -n 25
  finish "FAIL $*"
}
now() { cut -d. -f1 /proc/uptime; }

# wait_for SECONDS COMMAND...: poll COMMAND every 0.2 s until it succeeds (0) or time is up (1).
wait_for() {
  limit=$1
  shift
  deadline=$(($(now) + limit))
  while ! "$@"; do
    [ "$(now)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
  return 0
}
connected() { [ -e /sys/block/nbd0/pid ]; }
connected_or_gone() { connected || gone "$1"; }
disconnected() { [ ! -e /sys/block/nbd0/pid ] && [ "$(cat /sys/block/nbd0/size)" = 0 ]; }
# A child that exited but is not reaped yet still answers kill -0: look at its state instead.
gone() { [ ! -e "/proc/$1/stat" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" = Z ]; }

# start_attach NAME CONFIG [ENV...]: iscsi-mpio attach in the background; sets $attach_pid.
# $IM_BINARY (default iscsi-mpio) is the program started.
start_attach() {
  name=$1 config=$2
  shift 2
  env "$@" "${IM_BINARY:-iscsi-mpio}" attach "$config" >"/tmp/$name.out" 2>"/tmp/$name.log" &
  attach_pid=$!
}

# leave_attach NAME PID: SIGTERM as a restart does: exit 0, /dev/nbd0 still configured.
leave_attach() {
  kill -TERM "$2"
  wait_for 60 gone "$2" || fail "$1: still running 60 s after SIGTERM"
  wait "$2"
  rc=$?
  [ "$rc" = 0 ] || fail "$1: exit status $rc after SIGTERM"
  connected || fail "$1: /dev/nbd0 was disconnected by SIGTERM (it should stay for the next attach)"
  grep -q '/dev/nbd0 left configured' "/tmp/$1.log" || fail "$1: no 'left configured' logged"
}

# take_over NAME [CONFIG]: a new attach that must take /dev/nbd0 over; sets $attach_pid.
take_over() {
  start_attach "$1" "${2:-/etc/im/first.yaml}"
  wait_for 120 grep -q 'reconnected, left by a previous attach' "/tmp/$1.log" ||
    fail "$1: the new attach did not take /dev/nbd0 over"
}

# writer_ops: operations the verifying writer has done.
writer_ops() { grep -c -v '^ERROR' /tmp/vw.log 2>/dev/null || echo 0; }
# writer_moved_past COUNT: the writer did more than COUNT operations, or stopped.
writer_moved_past() { [ "$(writer_ops)" -gt "$1" ] || gone "$writer_pid"; }

# stop_attach NAME PID: SIGTERM to an attach through the ioctl interface, whose device cannot
# outlive it: a bounded wait, exit status 0 required, device released.
stop_attach() {
  name=$1 pid=$2
  started=$(now)
  kill -TERM "$pid"
  wait_for 60 gone "$pid" || fail "$name: still running 60 s after SIGTERM"
  wait "$pid"
  rc=$?
  [ "$rc" = 0 ] || fail "$name: exit status $rc after SIGTERM"
  metric "${name}_stop_seconds" $(($(now) - started))
  wait_for 10 disconnected || fail "$name: /dev/nbd0 still connected after exit"
  grep -q '/dev/nbd0 disconnected' "/tmp/$name.log" || fail "$name: no disconnect logged"
  say "$name: exit 0 on SIGTERM, /dev/nbd0 (ioctl) disconnected (size 0, no pid)"
}

# show_log NAME: the lines of an attach's log worth reading on the host.
show_log() {
  grep -E 'attached as|reconnected|left configured|disconnected|nbd: client kernel|warning|error' \
    "/tmp/$1.log" |
    while read -r line; do echo "GUEST-LOG: $1: $line"; done
}

# request_kb STAT_FIELD_IOS STAT_FIELD_SECTORS BEFORE AFTER: mean request size in KiB.
request_kb() {
  ios=$(($(echo "$4" | awk "{print \$$1}") - $(echo "$3" | awk "{print \$$1}")))
  sectors=$(($(echo "$4" | awk "{print \$$2}") - $(echo "$3" | awk "{print \$$2}")))
  [ "$ios" -gt 0 ] || { echo 0; return; }
  echo $((sectors / 2 / ios))
}

say "booted $(uname -r); loading modules"
read -r modules </etc/guest-modules
for module in $modules; do
  insmod "/lib/modules/$module.ko" || fail "insmod $module"
done
[ -e /sys/block/nbd0 ] || fail "no /sys/block/nbd0 after insmod nbd"
ip link set lo up
ip link set eth0 up || fail "no eth0"
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

# ---- first attach: /dev/nbd0 through generic netlink --------------------------------------
say "attach 1: $TARGET_IQN at $PORTAL as /dev/nbd0 (netlink)"
t0=$(now)
start_attach first /etc/im/first.yaml
first_pid=$attach_pid
wait_for 120 connected_or_gone "$first_pid"
connected || fail "attach 1: /dev/nbd0 not connected (within 120 s)"
wait_for 10 grep -q '^/dev/nbd0$' /tmp/first.out || fail "attach 1: no /dev/nbd0 on stdout"
grep -q 'nbd netlink' /tmp/first.log || fail "attach 1: did not use netlink"
metric attach_seconds $(($(now) - t0))
max_kb=$(cat /sys/block/nbd0/queue/max_sectors_kb)
hw_kb=$(cat /sys/block/nbd0/queue/max_hw_sectors_kb)
metric max_sectors_kb "$max_kb"
metric max_hw_sectors_kb "$hw_kb"
grep -q "max_sectors_kb $max_kb)" /tmp/first.log ||
  fail "attach 1: max_sectors_kb $max_kb is not what iscsi-mpio set"
[ "$max_kb" -gt 128 ] || fail "max_sectors_kb $max_kb: requests still cut to 128 KiB"
say "attached: $(cat /sys/block/nbd0/size) sectors, max_sectors_kb $max_kb (hw $hw_kb)"

# ---- a second attach on the busy device is refused ----------------------------------------
start_attach busy /etc/im/busy.yaml
busy_pid=$attach_pid
wait_for 120 gone "$busy_pid" || fail "busy attach still running after 120 s"
wait "$busy_pid"
rc=$?
[ "$rc" = 1 ] || fail "busy attach: exit status $rc, expected 1"
grep -q '/dev/nbd0 is in use' /tmp/busy.log || fail "busy attach: no '/dev/nbd0 is in use'"
connected || fail "the refused attach disturbed /dev/nbd0"
say "second attach on /dev/nbd0 refused: $(grep -o '/dev/nbd0 is in use[^:]*' /tmp/busy.log)"

# ---- without CAP_SYS_ADMIN the attach says what it needs ---------------------------------
echo 'nobody:x:65534:65534:nobody:/tmp:/bin/sh' >>/etc/passwd
echo 'nogroup:x:65534:' >>/etc/group
su -s /bin/sh -c 'exec iscsi-mpio attach /etc/im/noperm.yaml >/tmp/noperm.out 2>/tmp/noperm.log' \
  nobody &
noperm_pid=$!
wait_for 120 gone "$noperm_pid" || fail "attach as nobody still running after 120 s"
wait "$noperm_pid"
rc=$?
[ "$rc" = 1 ] || fail "attach as nobody: exit status $rc, expected 1"
grep -q 'needs CAP_SYS_ADMIN' /tmp/noperm.log || fail "attach as nobody: no 'needs CAP_SYS_ADMIN'"
say "attach without CAP_SYS_ADMIN refused:" \
  "$(grep -o 'connecting[^:]*needs CAP_SYS_ADMIN' /tmp/noperm.log)"

# ---- large requests reach the bridge whole ------------------------------------------------
dd if=/dev/urandom of=/tmp/raw bs=1M count=8 2>/dev/null
before=$(cat /sys/block/nbd0/stat)
dd if=/tmp/raw of=/dev/nbd0 bs=8M count=1 oflag=direct 2>/dev/null ||
  fail "direct write to /dev/nbd0"
after=$(cat /sys/block/nbd0/stat)
write_kb=$(request_kb 5 7 "$before" "$after")
before=$after
dd if=/dev/nbd0 of=/tmp/raw.back bs=8M count=1 iflag=direct 2>/dev/null || fail "direct read"
after=$(cat /sys/block/nbd0/stat)
read_kb=$(request_kb 1 3 "$before" "$after")
cmp -s /tmp/raw /tmp/raw.back || fail "raw 8 MiB read back differs"
metric direct_write_request_kb "$write_kb"
metric direct_read_request_kb "$read_kb"
if ! { [ "$write_kb" -gt 128 ] && [ "$read_kb" -gt 128 ]; }; then
  fail "8 MiB direct I/O reached the device in requests of ${write_kb}/${read_kb} KiB"
fi
say "8 MiB direct write/read: mean request ${write_kb} KiB / ${read_kb} KiB, data equal"
rm -f /tmp/raw /tmp/raw.back

# ---- ext4: make, mount, write, unmount, check ---------------------------------------------
t0=$(now)
mkfs.ext4 -q -F -L imguest /dev/nbd0 >/tmp/mkfs.log 2>&1 || fail "mkfs.ext4"
metric mkfs_seconds $(($(now) - t0))
mount -t ext4 /dev/nbd0 /mnt || fail "mount"
t0=$(now)
i=1
for size_mb in 1 4 16; do
  dd if=/dev/urandom of="/mnt/file$i" bs=1M count=$size_mb 2>/dev/null || fail "write file$i"
  i=$((i + 1))
done
mkdir -p /mnt/dir
for n in $(seq 1 50); do echo "small file $n" >"/mnt/dir/s$n"; done
sync
metric write_seconds $(($(now) - t0))
(cd /mnt && sha256sum file1 file2 file3 dir/s1 dir/s50) >/tmp/sums || fail "sha256sum"
while read -r sum name; do echo "GUEST-SUM: $sum $name"; done </tmp/sums
umount /mnt || fail "umount"
fsck.ext4 -n -f /dev/nbd0 >/tmp/fsck1.log 2>&1 || fail "fsck.ext4 -n after writing: status $?"
say "ext4 written and clean (fsck -n)"

# ---- SIGKILL under writes: the next attach takes the device over, the writes go on --------
mount -t ext4 /dev/nbd0 /mnt || fail "mount before the kill"
dd if=/dev/urandom of=/tmp/during bs=64k count=256 2>/dev/null
(cp /tmp/during /mnt/during && sync && echo ok >/tmp/writer.done || echo failed >/tmp/writer.done) &
writer_pid=$!
sleep 1
t0=$(now)
kill -KILL "$first_pid"
wait_for 10 gone "$first_pid" || fail "attach 1 still running after SIGKILL"
connected || fail "/dev/nbd0 was disconnected by the SIGKILL (the kernel should hold it)"
say "attach 1 killed (SIGKILL) under writes; /dev/nbd0 still configured, holding I/O"
start_attach restarted /etc/im/first.yaml
first_pid=$attach_pid
wait_for 120 grep -q 'reconnected, left by a previous attach' /tmp/restarted.log ||
  fail "the new attach did not take /dev/nbd0 over"
wait_for 120 test -f /tmp/writer.done || fail "the writer did not finish after the takeover"
wait "$writer_pid"
[ "$(cat /tmp/writer.done)" = ok ] || fail "the writer saw an error across the SIGKILL"
metric sigkill_takeover_seconds $(($(now) - t0))
cmp -s /tmp/during /mnt/during || fail "/mnt/during differs from what was written"
(cd /mnt && sha256sum during) >>/tmp/sums || fail "sha256sum during"
echo "GUEST-SUM: $(tail -n 1 /tmp/sums)"
umount /mnt || fail "umount after the takeover"
fsck.ext4 -n -f /dev/nbd0 >/tmp/fsck-kill.log 2>&1 || fail "fsck.ext4 -n after the takeover"
say "SIGKILL under writes: taken over in $(($(now) - t0)) s, no write error, file system clean"
rm -f /tmp/during

# ---- restarts under a verifying writer: SIGTERM x5, SIGKILL, a new binary -----------------
# SIGTERM is a restart: the attach answers what the kernel sent, closes its socket at a quiet
# moment, logs out and exits 0, and /dev/nbd0 stays configured, holding I/O (no_path_retry
# queue: until the next attach). Each new attach takes it over (NBD_CMD_RECONFIGURE). The
# writer (verify-writer.sh) writes, fsyncs and reads back with O_DIRECT throughout.
mount -t ext4 /dev/nbd0 /mnt || fail "mount before the restarts"
# Requests the kernel sent and got no answer to (a SIGKILL) are sent again after the takeover
# when their block-layer timer fires: 5 s here instead of the default 30 s, to keep the run short.
echo 5000 >/sys/block/nbd0/queue/io_timeout || fail "cannot set io_timeout"
dd if=/dev/urandom of=/tmp/pool bs=64k count=64 2>/dev/null
rm -f /tmp/vw.stop /tmp/vw.log
verify-writer.sh run /mnt/vw /tmp/pool /tmp/vw.stop /tmp/vw.log &
writer_pid=$!
wait_for 60 writer_moved_past 3 || fail "the verifying writer did not start"
restarts_started=$(now)
stalls=''
# restart KIND NUMBER: stop the running attach ($first_pid) by KIND (term, kill, binary), start
# the next one, wait until the writer goes on; reports the longest stall.
restart() {
  kind=$1 number=$2
  name=restart-$kind-$number
  at=$(cut -d' ' -f1 /proc/uptime)
  case $kind in
    term | binary) leave_attach "$previous" "$first_pid" ;;
    kill)
      # A request the kernel has sent and the attach never answers: SIGSTOP, then an O_DIRECT
      # read of a block outside the file system while it is stopped, then SIGKILL. The read
      # must complete with the right data after the takeover (the driver sends it again once
      # its timer fires on the new connection), not fail.
      kill -STOP "$first_pid"
      dd if=/dev/nbd0 of=/tmp/inflight.read bs=4k count=1 skip=1 iflag=direct 2>/tmp/inflight.err &
      inflight_pid=$!
      sleep 1
      kill -KILL "$first_pid"
      wait_for 10 gone "$first_pid" || fail "$name: still running after SIGKILL"
      wait "$first_pid"
      connected || fail "$name: /dev/nbd0 was disconnected by SIGKILL"
      gone "$inflight_pid" && fail "$name: the read in flight ended before the takeover"
      ;;
  esac
  if [ "$kind" = binary ]; then
    # An upgrade: a copy of the binary at another path (the old one may be replaced meanwhile).
    cp /usr/local/bin/iscsi-mpio /tmp/iscsi-mpio.new || fail "copy the binary"
    IM_BINARY=/tmp/iscsi-mpio.new take_over "$name"
  else
    take_over "$name"
  fi
  first_pid=$attach_pid
  previous=$name
  if [ "$kind" = kill ]; then
    wait_for 60 gone "$inflight_pid" || fail "$name: the read in flight never completed"
    wait "$inflight_pid" || fail "$name: the read in flight failed: $(cat /tmp/inflight.err)"
    [ "$(dd if=/dev/nbd0 bs=4k count=1 skip=1 iflag=direct 2>/dev/null | sha256sum)" = \
      "$(sha256sum </tmp/inflight.read)" ] || fail "$name: the read in flight returned other data"
    say "$name: the read in flight at the SIGKILL completed after the takeover, data equal"
  fi
  taken=$(cut -d' ' -f1 /proc/uptime)
  # The first operation done after the takeover ends the restart's window.
  writer_done_after() { [ "$(awk -v t="$taken" '$4 > t' /tmp/vw.log | wc -l)" -gt 0 ]; }
  wait_for 120 writer_done_after || fail "$name: the writer did not go on"
  gone "$writer_pid" && fail "$name: the writer stopped: $(grep ERROR /tmp/vw.log)"
  stall=$(verify-writer.sh stall /tmp/vw.log "$at" "$taken")
  metric "${name}_stall_seconds" "$stall"
  stalls="$stalls $kind:$stall"
  say "$name: taken over; longest writer stall ${stall} s"
}
previous=restarted
for i in 1 2 3 4 5; do restart term "$i"; done
restart kill 1
restart binary 1
touch /tmp/vw.stop
wait_for 60 gone "$writer_pid" || fail "the verifying writer did not stop"
wait "$writer_pid" || fail "the verifying writer failed: $(grep ERROR /tmp/vw.log)"
metric restarts_writer_ops "$(writer_ops)"
# For scale: the writer's usual time per operation (write, fsync, read back, compare) on TCG.
metric writer_median_op_seconds "$(verify-writer.sh median /tmp/vw.log)"
checked=$(verify-writer.sh check /mnt/vw /tmp/pool /tmp/vw.log) || fail "after the restarts: $checked"
(cd /mnt && sha256sum vw/f1 vw/f2) >>/tmp/sums || fail "sha256sum vw"
tail -n 2 /tmp/sums | while read -r sum name; do echo "GUEST-SUM: $sum $name"; done
umount /mnt || fail "umount after the restarts"
fsck.ext4 -n -f /dev/nbd0 >/tmp/fsck-restarts.log 2>&1 || fail "fsck.ext4 -n after the restarts"
metric restarts_seconds $(($(now) - restarts_started))
say "7 restarts under the writer ($(writer_ops) operations): no error, $checked, fsck clean;" \
  "stalls (s):$stalls"

# ---- no attach comes back: I/O fails once the hold time passes ----------------------------
# short.yaml: no_path_retry 3 x polling_interval 1 s, so the kernel holds I/O 3 s.
leave_attach "$previous" "$first_pid"
take_over short /etc/im/short.yaml
short_pid=$attach_pid
leave_attach short "$short_pid"
grep -q 'holds its I/O for 3 s' /tmp/short.log || fail "short: no 3 s hold logged"
t0=$(cut -d' ' -f1 /proc/uptime)
if dd if=/dev/nbd0 of=/dev/null bs=4k count=1 iflag=direct 2>/tmp/noattach.err; then
  fail "a read with no attach succeeded after the hold time"
fi
held=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN {printf "%.1f", b - a}')
grep -q 'Input/output error' /tmp/noattach.err || fail "no attach: not EIO: $(cat /tmp/noattach.err)"
metric no_attach_eio_after_seconds "$held"
connected || fail "no attach: /dev/nbd0 no longer configured after the hold time"
say "no attach: a read failed with EIO after $held s; /dev/nbd0 still configured"
take_over cleanup
first_pid=$attach_pid
dd if=/dev/nbd0 of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null ||
  fail "a read after the later attach took the device over failed"
say "a later attach took /dev/nbd0 over again: reads work"

# ---- iscsi-mpio detach: the end ------------------------------------------------------------
t0=$(now)
iscsi-mpio detach /etc/im/first.yaml >/tmp/detach.out 2>&1 || fail "detach: $(cat /tmp/detach.out)"
wait "$first_pid"
rc=$?
[ "$rc" = 0 ] || fail "detach: the attach exited $rc"
metric detach_seconds $(($(now) - t0))
wait_for 10 disconnected || fail "detach: /dev/nbd0 still connected"
grep -q '/dev/nbd0 disconnected' /tmp/cleanup.log || fail "detach: no disconnect logged"
grep -q 'logged out' /tmp/cleanup.log || fail "detach: no logout logged"
grep -q 'detached' /tmp/detach.out || fail "detach: the verb did not wait for the end"
say "iscsi-mpio detach: exit 0, /dev/nbd0 disconnected (size 0, no pid), logged out"
echo "GUEST-MARK: detached"
sleep 4  # the host looks for sessions at the target now

# ---- attach again (auto, ioctl fallback): the data is still there -------------------------
echo 3 >/proc/sys/vm/drop_caches
say "attach 2: nbd.device auto through the ioctl interface"
t0=$(now)
start_attach second /etc/im/second.yaml ISCSI_MPIO_NBD_INTERFACE=ioctl
second_pid=$attach_pid
wait_for 120 connected_or_gone "$second_pid"
connected || fail "attach 2: /dev/nbd0 not connected (within 120 s)"
wait_for 10 grep -q '^/dev/nbd0$' /tmp/second.out || fail "attach 2: auto did not pick /dev/nbd0"
grep -q 'nbd ioctl' /tmp/second.log || fail "attach 2: did not use the ioctl interface"
metric reattach_seconds $(($(now) - t0))
mount -t ext4 -o ro /dev/nbd0 /mnt || fail "mount after attach 2"
(cd /mnt && sha256sum -c /tmp/sums) >/tmp/verify.log 2>&1 || fail "checksums differ after attach 2"
[ "$(find /mnt/dir -type f | wc -l)" = 50 ] || fail "small files missing after attach 2"
umount /mnt || fail "umount after attach 2"
fsck.ext4 -n -f /dev/nbd0 >/tmp/fsck2.log 2>&1 || fail "fsck.ext4 -n after attach 2: status $?"
say "checksums match after detach and attach; file system clean"
stop_attach second "$second_pid"

for name in first restarted busy noperm restart-term-1 restart-term-2 restart-term-3 \
  restart-term-4 restart-term-5 restart-kill-1 restart-binary-1 short cleanup second; do
  show_log "$name"
done
finish PASS
