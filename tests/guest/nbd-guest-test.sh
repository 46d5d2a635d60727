#!/usr/bin/env bash
# integration.guest: iscsi-mpio attached to the Linux nbd driver, inside a QEMU TCG guest.
#
# The host starts a tgtd target on 127.0.0.1 (tests/testbed/tgtd-target.sh), builds a busybox
# initramfs with iscsi-mpio (tests/guest/make-initramfs.sh) and boots Debian's kernel with
# user-mode networking; the guest reaches the target as 10.0.2.2:PORT. The guest
# (tests/guest/guest-init.sh) attaches /dev/nbd0 (netlink), sees a second attach refused and
# one without CAP_SYS_ADMIN told so, checks that large requests arrive whole, makes ext4,
# writes files, checks them, kills iscsi-mpio under writes (the next attach takes the device
# over), then restarts it under a verifying writer (tests/guest/verify-writer.sh: fsync, O_DIRECT
# read-back): 5 SIGTERMs (exit 0, /dev/nbd0 stays configured), a SIGKILL with a read in flight
# that must complete after the takeover, and a copy of the binary started as an upgrade would;
# every file checked, fsck clean, the longest stall of each restart reported. Then no attach
# comes back (a 3 s hold: EIO, a later attach takes over again), `iscsi-mpio detach` ends it
# (device disconnected; the host sees no connection at the target), and an attach again (auto,
# ioctl interface; SIGTERM detaches it, since it cannot outlive the process) verifies the
# checksums. The host then checks the backing file itself: fsck clean, and the files' checksums
# read with debugfs equal the guest's.
#
# Environment: BUILD (default <repo>/build), IM_BIN (default $BUILD/tools/iscsi-mpio/iscsi-mpio),
#   GUEST_TIMEOUT (seconds for the whole guest run, default 600; the restarts under the writer
#   make it 4 to 5 minutes on a busy 2-core host),
#   IM_GUEST_CACHE (kernel cache, see make-initramfs.sh), KEEP=1 keeps the work directory
#   (console log, initramfs).
# Needs root (tgtd) and tools/install-deps.sh's packages (qemu-system-x86, busybox-static,
# e2fsprogs, cpio). Exit status 0 only on a PASS from the guest and the host's checks.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
readonly build=${BUILD:-$repo/build}
readonly im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
readonly guest_timeout=${GUEST_TIMEOUT:-600}
readonly lun_size=256M

for tool in qemu-system-x86_64 tgtd debugfs e2fsck; do
  command -v "$tool" >/dev/null || tb_die "$tool not found: run tools/install-deps.sh"
done
[[ -x $im_bin ]] || tb_die "$im_bin not found: build iscsi-mpio first"

work=$(mktemp -d /tmp/iscsi-mpio-guest.XXXXXX)
readonly work
qemu_pid=''
started=$SECONDS

cleanup() {
  local status=$?
  set +e
  if [[ -n $qemu_pid ]] && tb_pid_is "$qemu_pid" qemu-system-x86_64; then
    kill -TERM "$qemu_pid"
    tb_wait_gone "$qemu_pid" 5 || kill -KILL "$qemu_pid"
    wait "$qemu_pid" 2>/dev/null
  fi
  [[ -z ${TGT_PID:-} ]] || "$repo/tests/testbed/tgtd-target.sh" stop
  if ((status != 0)) && [[ -f $work/console.log ]]; then
    echo "---- guest console (last 60 lines)"
    tail -n 60 "$work/console.log"
  fi
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- target ------------------------------------------------------------------------------
target_env=$("$repo/tests/testbed/tgtd-target.sh" start --dir "$work/target" --size "$lun_size")
eval "$target_env"
echo "target: $TGT_IQN LUN $TGT_LUN on 127.0.0.1:$TGT_PORT (guest: 10.0.2.2:$TGT_PORT)"

# ---- guest files -------------------------------------------------------------------------
mkdir -p "$work/etc"
# write_config NAME DEVICE [DIR [NO_PATH_RETRY]]: the attach configuration the guest runs under
# NAME, its sockets in DIR (default /run/im), no_path_retry (default queue) with a 1 s
# polling_interval.
write_config() {
  local dir=${3:-/run/im} no_path_retry=${4:-queue}
  cat >"$work/etc/$1.yaml" <<EOF
initiator:
  name: iqn.2026-11.org.iscsi-mpio:guest-$1
target:
  iqn: $TGT_IQN
  lun: $TGT_LUN
paths:
  - portal: "10.0.2.2:$TGT_PORT"
multipath:
  no_path_retry: $no_path_retry
  polling_interval: 1
nbd:
  listen: unix:$dir/$1.sock
  device: $2
control:
  socket: $dir/$1.control
EOF
}
write_config first /dev/nbd0
write_config busy /dev/nbd0
write_config second auto
write_config noperm /dev/nbd1 /tmp  # run as nobody: only /tmp is writable
write_config short /dev/nbd0 /run/im 3  # the kernel holds I/O 3 s without an attach
cat >"$work/etc/guest.env" <<EOF
TARGET_IQN='$TGT_IQN'
PORTAL='10.0.2.2:$TGT_PORT'
EOF

building=$SECONDS
initramfs_env=$("$repo/tests/guest/make-initramfs.sh" --out "$work" \
  --init "$repo/tests/guest/guest-init.sh" --binary "$im_bin:/usr/local/bin/iscsi-mpio" \
  --file "$work/etc/first.yaml:/etc/im/first.yaml" \
  --file "$work/etc/busy.yaml:/etc/im/busy.yaml" \
  --file "$work/etc/second.yaml:/etc/im/second.yaml" \
  --file "$work/etc/noperm.yaml:/etc/im/noperm.yaml" \
  --file "$work/etc/short.yaml:/etc/im/short.yaml" \
  --file "$repo/tests/guest/verify-writer.sh:/usr/local/bin/verify-writer.sh" \
  --file "$work/etc/guest.env:/etc/im/guest.env")
eval "$initramfs_env"
echo "guest: kernel $GUEST_KERNEL, initramfs $(($(stat -c %s "$GUEST_INITRD") >> 20)) MiB" \
  "(built in $((SECONDS - building)) s)"

# ---- boot --------------------------------------------------------------------------------
# TCG: -enable-kvm hangs on this kind of machine. No option ROM for the NIC: the kernel is
# booted directly and iPXE is not needed.
booted=$SECONDS
qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nodefaults -no-reboot -display none \
  -serial "file:$work/console.log" -monitor none \
  -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
  -append "console=ttyS0 panic=-1 loglevel=4 rdinit=/init" \
  -netdev user,id=net0 -device e1000,netdev=net0,romfile= \
  </dev/null >"$work/qemu.log" 2>&1 &
qemu_pid=$!

deadline=$((SECONDS + guest_timeout))
result=''
sessions_after_detach=''
while ((SECONDS < deadline)); do
  result=$(grep -a -m 1 '^GUEST-RESULT: ' "$work/console.log" 2>/dev/null | tr -d '\r' || true)
  [[ -z $result ]] || break
  # After `iscsi-mpio detach` the guest waits 4 s before it logs in again: the target must show
  # no connection of it meanwhile.
  if [[ -z $sessions_after_detach ]] && grep -a -q '^GUEST-MARK: detached' "$work/console.log"; then
    sessions_after_detach=$(tgtadm -C "$TGT_CTL" --lld iscsi --op show --mode conn --tid 1 |
      grep -c -i 'initiator' || true)
    grep -a -q 'attach 2:' "$work/console.log" && sessions_after_detach="late"
  fi
  tb_running "$qemu_pid" || break
  sleep 1
done
guest_seconds=$((SECONDS - booted))
tb_wait_gone "$qemu_pid" 20 || true  # it powers itself off after the result line

grep -a -E '^GUEST(-METRIC|-LOG)?: ' "$work/console.log" | tr -d '\r' || true
if [[ -z $result ]]; then
  if tb_running "$qemu_pid"; then
    echo "FAIL: no result from the guest within $guest_timeout s"
  else
    echo "FAIL: qemu exited without a result: $(tail -n 3 "$work/qemu.log")"
  fi
  exit 1
fi
if [[ $result != "GUEST-RESULT: PASS" ]]; then
  echo "FAIL: ${result#GUEST-RESULT: }"
  exit 1
fi

case $sessions_after_detach in
  0) echo "host: no connection at the target after iscsi-mpio detach" ;;
  late) echo "host: the look at the target after iscsi-mpio detach came too late (not checked)" ;;
  '') echo "FAIL: the guest never reported its detach"; exit 1 ;;
  *) echo "FAIL: $sessions_after_detach connection(s) at the target after iscsi-mpio detach"; exit 1 ;;
esac

# ---- the host's own look at the LUN ------------------------------------------------------
e2fsck -n -f "$TGT_BACKING" >"$work/host-fsck.log" 2>&1 ||
  { cat "$work/host-fsck.log"; echo "FAIL: host fsck of the backing file"; exit 1; }
checked=0
while read -r _ sum name; do
  got=$(debugfs -R "cat /$name" "$TGT_BACKING" 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [[ $got != "$sum" ]]; then
    echo "FAIL: /$name in the backing file: $got, the guest wrote $sum"
    exit 1
  fi
  checked=$((checked + 1))
done < <(grep -a '^GUEST-SUM: ' "$work/console.log" | tr -d '\r')
((checked > 0)) || { echo "FAIL: the guest reported no checksums"; exit 1; }
echo "host: backing file fsck clean, $checked checksums equal the guest's"
echo "PASS: integration.guest in $((SECONDS - started)) s (guest $guest_seconds s)"
