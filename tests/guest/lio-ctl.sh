#!/bin/busybox sh
# shellcheck shell=sh
# /bin/lio-ctl in the LIO target guest: busybox nc runs it for each connection to the control
# port (lio-guest-init.sh), with the connection as stdin/stdout. It reads one command line,
# answers, and ends the answer with "END 0" (done) or "END 1" (refused or failed):
#   ping                      pong
#   alua GROUP STATE          write STATE (0 active/optimized, 1 active/non-optimized,
#                             2 standby, 3 unavailable, 14 offline, 15 transitioning) to the
#                             ALUA target port group GROUP (default_tg_pt_gp | secondary): an
#                             implicit transition (SPC-4 §5.16.2.6); prints the state read back
#   alua-type GROUP TYPE      write TYPE to GROUP's alua_access_type (1 implicit, 2 explicit:
#                             only SET TARGET PORT GROUPS moves it, and STATE writes above are
#                             refused; 3 both, LIO's default); prints it back ("Explicit")
#   alua-show                 each group's state and type: "GROUP state S type T"
#   tpg N enable|disable      tpgt_N on or off; disabling closes its sessions at once
#   log                       the kernel log since the last `log` (LIO's debug lines about
#                             logins: negotiated keys, CHAP), then clears it
#   sessions                  each TPG's ACL `info` (LIO's view of the sessions)
#   poweroff                  power the guest off (nothing is cached: the disk is written through)
# With iscsi-mpio in the guest (lio-target.sh --initiator-binary), the initiator beside LIO,
# attached to the kernel's nbd driver as /dev/nbd0 (through tpgt_1's port A, CHAP):
#   nbd attach                attach, make ext4 on /dev/nbd0, mount it on /mnt, write /mnt/a
#                             (8 MiB); prints "size BYTES", "fs-kib KIB" and "sum-a SHA256"
#   nbd grow BYTES            wait (30 s) until /dev/nbd0 is BYTES long, grow the mounted file
#                             system (resize2fs), write /mnt/b (16 MiB); prints "size",
#                             "fs-kib" and the checksums of a and b
#   nbd detach                unmount, fsck -n, iscsi-mpio detach; prints the attach's log
#                             lines about the device
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
. /etc/lio/lio.env
t=/sys/kernel/config/target
dev=$LUN0_DEVICE  # the configfs directory of LUN 0's device (lio-guest-init.sh)
tq=$t/iscsi/$TARGET_IQN

done_with() {
  echo "END $1"
  exit "$1"
}

now() { cut -d. -f1 /proc/uptime; }
# wait_for SECONDS COMMAND...: COMMAND every 0.2 s until it succeeds or time is up.
wait_for() {
  limit=$(($(now) + $1))
  shift
  while ! "$@"; do
    [ "$(now)" -lt "$limit" ] || return 1
    sleep 0.2
  done
}
nbd_bytes() { echo $(($(cat /sys/block/nbd0/size) * 512)); }
nbd_connected() { [ -e /sys/block/nbd0/pid ]; }
nbd_is() { [ "$(nbd_bytes)" = "$1" ]; }
attach_gone() { ! kill -0 "$(cat /tmp/nbd.pid)" 2>/dev/null; }
fs_kib() { df -k /mnt | awk 'NR == 2 {print $2}'; }
sum_of() { sha256sum "$1" | cut -d' ' -f1; }
nbd_failed() {
  echo "$*"
  tail -n 15 /tmp/nbd.log
  done_with 1
}

nbd_attach() {
  {
    echo "initiator: {name: $INITIATOR_IQN}"
    echo "target:"
    echo "  iqn: $TARGET_IQN"
    echo "  lun: 0"
    echo "  auth: {method: chap, username: $CHAP_USER, secret: \"$CHAP_SECRET\"}"
    echo "paths: [{portal: \"127.0.0.1:$PORT_A\"}]"
    echo "multipath: {polling_interval: 1, no_path_retry: queue}"
    echo "nbd: {listen: \"unix:/tmp/nbd.sock\", device: /dev/nbd0}"
    echo "control: {socket: /tmp/nbd.control}"
  } >/tmp/nbd.yaml
  setsid iscsi-mpio attach /tmp/nbd.yaml </dev/null >/tmp/nbd.out 2>/tmp/nbd.log &
  echo $! >/tmp/nbd.pid
  wait_for 60 nbd_connected || nbd_failed "/dev/nbd0 not connected within 60 s"
  mkfs.ext4 -q -F /dev/nbd0 >/tmp/mkfs.log 2>&1 || nbd_failed "mkfs.ext4: $(cat /tmp/mkfs.log)"
  mkdir -p /mnt
  mount -t ext4 /dev/nbd0 /mnt || nbd_failed "mount"
  dd if=/dev/urandom of=/mnt/a bs=1M count=8 2>/dev/null || nbd_failed "write /mnt/a"
  sync
  echo "size $(nbd_bytes)"
  echo "fs-kib $(fs_kib)"
  echo "sum-a $(sum_of /mnt/a)"
}

nbd_grow() {
  wait_for 30 nbd_is "$1" || nbd_failed "/dev/nbd0 is $(nbd_bytes) bytes, not $1, after 30 s"
  echo "size $(nbd_bytes)"
  # Online: the file system stays mounted (ext4's resize ioctl).
  resize2fs /dev/nbd0 >/tmp/resize2fs.log 2>&1 || nbd_failed "resize2fs: $(cat /tmp/resize2fs.log)"
  dd if=/dev/urandom of=/mnt/b bs=1M count=16 2>/dev/null || nbd_failed "write /mnt/b"
  sync
  echo "fs-kib $(fs_kib)"
  echo "sum-a $(sum_of /mnt/a)"
  echo "sum-b $(sum_of /mnt/b)"
}

nbd_detach() {
  umount /mnt || nbd_failed "umount"
  fsck.ext4 -n -f /dev/nbd0 >/tmp/fsck.log 2>&1 || nbd_failed "fsck: $(tail -n 5 /tmp/fsck.log)"
  echo "fsck clean"
  # The end, not a restart (SIGTERM would leave /dev/nbd0 configured for the next attach).
  iscsi-mpio detach /tmp/nbd.yaml >/tmp/detach.out 2>&1 || nbd_failed "detach: $(cat /tmp/detach.out)"
  wait_for 30 attach_gone || nbd_failed "attach still running 30 s after iscsi-mpio detach"
  grep -E 'resized|keeps its old size|capacity|disconnected|error' /tmp/nbd.log
}

read -r verb a b || done_with 1
case $verb in
  ping) echo pong ;;
  alua)
    case $a in default_tg_pt_gp | secondary) ;; *) echo "no such group: $a"; done_with 1 ;; esac
    echo "$b" >"$dev/alua/$a/alua_access_state" || done_with 1
    cat "$dev/alua/$a/alua_access_state"
    ;;
  alua-type)
    case $a in default_tg_pt_gp | secondary) ;; *) echo "no such group: $a"; done_with 1 ;; esac
    echo "$b" >"$dev/alua/$a/alua_access_type" || done_with 1
    cat "$dev/alua/$a/alua_access_type"
    ;;
  alua-show)
    for group in default_tg_pt_gp secondary; do
      echo "$group state $(cat "$dev/alua/$group/alua_access_state")" \
        "type $(cat "$dev/alua/$group/alua_access_type")"
    done
    ;;
  tpg)
    case $b in enable) value=1 ;; disable) value=0 ;; *) echo "enable or disable"; done_with 1 ;; esac
    [ -d "$tq/tpgt_$a" ] || { echo "no tpgt_$a"; done_with 1; }
    echo "$value" >"$tq/tpgt_$a/enable" || done_with 1
    echo "tpgt_$a enable=$(cat "$tq/tpgt_$a/enable")"
    ;;
  log) dmesg -c ;;
  sessions)
    for info in "$tq"/tpgt_*/acls/*/info; do
      echo "== $info"
      cat "$info"
    done
    ;;
  nbd)
    case $a in
      attach) nbd_attach ;;
      grow) nbd_grow "$b" ;;
      detach) nbd_detach ;;
      *) echo "nbd attach | grow BYTES | detach"; done_with 1 ;;
    esac
    ;;
  poweroff)
    echo "powering off"
    echo "END 0"
    sync
    poweroff -f
    ;;
  *) echo "unknown command: $verb"; done_with 1 ;;
esac
done_with 0
