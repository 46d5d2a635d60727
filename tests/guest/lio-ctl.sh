#!/bin/busybox sh
# shellcheck shell=sh
# /bin/lio-ctl in the LIO target guest: busybox nc runs it for each connection to the control
# port (lio-guest-init.sh), with the connection as stdin/stdout. It reads one command line,
# answers, and ends the answer with "END 0" (done) or "END 1" (refused or failed):
#   ping                      pong
#   alua GROUP STATE          write STATE (0 active/optimized, 1 active/non-optimized,
#                             2 standby, 3 unavailable, 14 offline) to the ALUA target port
#                             group GROUP (default_tg_pt_gp | secondary): an implicit transition
#                             (SPC-4 §5.16.2.6); prints the state read back
#   tpg N enable|disable      tpgt_N on or off; disabling closes its sessions at once
#   log                       the kernel log since the last `log` (LIO's debug lines about
#                             logins: negotiated keys, CHAP), then clears it
#   sessions                  each TPG's ACL `info` (LIO's view of the sessions)
#   poweroff                  power the guest off (nothing is cached: the disk is written through)
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
. /etc/lio/lio.env
t=/sys/kernel/config/target
dev=$t/core/iblock_0/disk
tq=$t/iscsi/$TARGET_IQN

done_with() {
  echo "END $1"
  exit "$1"
}

read -r verb a b || done_with 1
case $verb in
  ping) echo pong ;;
  alua)
    case $a in default_tg_pt_gp | secondary) ;; *) echo "no such group: $a"; done_with 1 ;; esac
    echo "$b" >"$dev/alua/$a/alua_access_state" || done_with 1
    cat "$dev/alua/$a/alua_access_state"
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
  poweroff)
    echo "powering off"
    echo "END 0"
    sync
    poweroff -f
    ;;
  *) echo "unknown command: $verb"; done_with 1 ;;
esac
done_with 0
