#!/bin/busybox sh
# shellcheck shell=sh
# /init of the LIO target guest that tests/guest/lio-target.sh boots (QEMU TCG, busybox
# initramfs). It loads LIO (target_core_mod, target_core_iblock, iscsi_target_mod) and
# configures it with targetcli (CONFIGURE_WITH=targetcli: /etc/lio/lio-targetcli.sh in the
# Debian root on /dev/vdc) or by writing configfs under /sys/kernel/config/target/ itself, as
# targetcli does (CONFIGURE_WITH=configfs); either way:
#   - backstore iblock_N/disk on /dev/vda (the host's raw file, so the host can read the data);
#   - ALUA target port group "secondary" (id 2) beside LIO's default_tg_pt_gp (id 0);
#   - target $TARGET_IQN, tpgt_1 with portals 127.0.0.1:$PORT_A and 127.0.0.1:$PORT_B (default
#     port group), tpgt_2 with portal 127.0.0.1:$PORT_C (its LUN in "secondary"); both map the
#     disk as LUN 0 to an ACL for $INITIATOR_IQN with CHAP and mutual CHAP credentials;
#     authentication required, HeaderDigest/DataDigest left at LIO's "CRC32C,None".
# The host forwards its loopback port P to the guest's 127.0.0.1:P (route_localnet=1), so the
# portals LIO advertises (SendTargets, TargetAddress) are addresses the host reaches.
# Console lines:
#   LIO: ...            progress, with seconds since boot
#   LIO-PARAM: K=V      the TPG's offered HeaderDigest, DataDigest, AuthMethod
#   LIO-READY           configured and listening;  LIO-FAIL: REASON   then power-off
# Then it serves a control port ($CTL_PORT, busybox nc) for /bin/lio-ctl: see that script's
# commands. Inputs: /etc/lio/lio.env from lio-target.sh, /etc/guest-modules and
# /lib/modules/*.ko from make-initramfs.sh. Every wait is bounded.

/bin/busybox mkdir -p /proc /sys /dev /run /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# shellcheck source=/dev/null
. /etc/lio/lio.env

say() { echo "LIO: [$(cut -d' ' -f1 /proc/uptime)] $*"; }
fail() {
  say "failed: $*"
  dmesg | grep -iE 'target|iscsi|alua|iblock|vda' | tail -n 25
  echo "LIO-FAIL: $*"
  poweroff -f
  sleep 30
}
now() { cut -d. -f1 /proc/uptime; }
# put VALUE FILE: one configfs write, failing the boot with the file named. No newline, as
# targetcli writes: LIO keeps the auth strings (userid, password, ...) byte for byte.
put() { printf '%s' "$1" >"$2" 2>/dev/null || fail "write '$1' to $2"; }

say "booted $(uname -r); loading modules"
read -r modules </etc/guest-modules
for module in $modules; do
  insmod "/lib/modules/$module.ko" || fail "insmod $module"
done
mount -t configfs configfs /sys/kernel/config || fail "mount configfs"
mount -t debugfs debugfs /sys/kernel/debug || fail "mount debugfs"
# The target's own account of each login (negotiated keys, CHAP algorithm) and of task
# management (LUN RESET, ABORT TASK) goes to the kernel log at debug level, for `lio-ctl log`;
# the per-PDU debug messages of other files stay off.
printf '%s\n' 'file iscsi_target_parameters.c +p' 'file iscsi_target_auth.c +p' \
  'file target_core_tmr.c +p' 'file iscsi_target_tmr.c +p' \
  >/sys/kernel/debug/dynamic_debug/control || fail "dynamic_debug"

ip link set lo up
ip link set eth0 up || fail "no eth0"
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# slirp delivers the host's forwarded connections to 127.0.0.1 through eth0: without this the
# kernel drops them as martians (and would not route the answers back out of eth0).
sysctl -q -w net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1 ||
  fail "route_localnet"

deadline=$(($(now) + 20))
disks="/dev/vda /dev/vdb"
[ "$CONFIGURE_WITH" != targetcli ] || disks="$disks /dev/vdc"
for disk in $disks; do
  while [ ! -b "$disk" ]; do
    [ "$(now)" -lt "$deadline" ] || fail "no $disk"
    sleep 0.2
  done
done

t=/sys/kernel/config/target
tq=$t/iscsi/$TARGET_IQN

# configure_with_targetcli: lio-targetcli.sh, the targetcli commands of a user's guide, run
# in the Debian root on /dev/vdc (make-targetcli-root.sh; read-only, shared by every run),
# with the kernel's file systems and a writable /tmp and /run mounted into it.
configure_with_targetcli() {
  r=/targetcli-root
  mkdir -p $r
  mount -t ext4 -o ro /dev/vdc $r || fail "mount the targetcli root (/dev/vdc)"
  mount -t proc proc $r/proc
  mount -t sysfs sysfs $r/sys
  mount -t configfs configfs $r/sys/kernel/config
  mount -t devtmpfs devtmpfs $r/dev
  mount -t tmpfs tmpfs $r/tmp
  mount -t tmpfs tmpfs $r/run
  cp /etc/lio/lio.env /etc/lio/lio-targetcli.sh $r/tmp/
  say "configuring LIO with targetcli"
  chroot $r /bin/sh /tmp/lio-targetcli.sh /tmp/lio.env >/tmp/targetcli.log 2>&1 ||
    { cat /tmp/targetcli.log; fail "targetcli (lio-targetcli.sh)"; }
  say "targetcli done"
  # What targetcli said, ending with the configuration as `ls` shows it, for the console log.
  cat /tmp/targetcli.log
}

# configure_with_configfs: the same target written straight into configfs, as targetcli does.
configure_with_configfs() {
  dev=$t/core/iblock_0/disk
  mkdir -p "$dev" || fail "mkdir $dev"
  put "udev_path=/dev/vda" "$dev/control"
  put "$DISK_SERIAL" "$dev/wwn/vpd_unit_serial"
  put 1 "$dev/enable"
  # LUN 1: a second disk, for an attach of several LUNs (`luns: all`).
  dev1=$t/core/iblock_1/disk1
  mkdir -p "$dev1" || fail "mkdir $dev1"
  put "udev_path=/dev/vdb" "$dev1/control"
  put "$DISK1_SERIAL" "$dev1/wwn/vpd_unit_serial"
  put 1 "$dev1/enable"
  # A second ALUA target port group on the device; the LUN of tpgt_2 joins it below.
  mkdir "$dev/alua/secondary" || fail "mkdir alua/secondary"
  put 2 "$dev/alua/secondary/tg_pt_gp_id"
  # LIO delays each command on an active/non-optimized port (nonop_delay_msecs, 100 ms by
  # default); keep either group quick when it is made non-optimized, for the failover checks.
  put 0 "$dev/alua/secondary/nonop_delay_msecs"
  put 0 "$dev/alua/default_tg_pt_gp/nonop_delay_msecs"

  mkdir "$t/iscsi" || fail "mkdir $t/iscsi (iscsi_target_mod)"
  # setup_tpg N PORT...: tpgt_N with LUN 0 and LUN 1 on the disks, portals 127.0.0.1:PORT, the ACL
  # with CHAP.
  setup_tpg() {
    tpg=$tq/tpgt_$1
    shift
    mkdir -p "$tpg/lun/lun_0" || fail "mkdir $tpg"
    ln -s "$dev" "$tpg/lun/lun_0/disk" || fail "link LUN 0 of $tpg"
    mkdir -p "$tpg/lun/lun_1" || fail "mkdir $tpg/lun/lun_1"
    ln -s "$dev1" "$tpg/lun/lun_1/disk1" || fail "link LUN 1 of $tpg"
    for port in "$@"; do
      mkdir "$tpg/np/127.0.0.1:$port" || fail "portal 127.0.0.1:$port"
    done
    acl=$tpg/acls/$INITIATOR_IQN
    mkdir -p "$acl/lun_0" || fail "mkdir $acl"
    ln -s "$tpg/lun/lun_0" "$acl/lun_0/lun" || fail "map LUN 0 in $acl"
    mkdir -p "$acl/lun_1" || fail "mkdir $acl/lun_1"
    ln -s "$tpg/lun/lun_1" "$acl/lun_1/lun" || fail "map LUN 1 in $acl"
    put "$CHAP_USER" "$acl/auth/userid"
    put "$CHAP_SECRET" "$acl/auth/password"
    put "$MUTUAL_USER" "$acl/auth/userid_mutual"
    put "$MUTUAL_SECRET" "$acl/auth/password_mutual"
    put 1 "$tpg/attrib/authentication"
    put 0 "$tpg/attrib/generate_node_acls"
    put 1 "$tpg/enable"
  }
  setup_tpg 1 "$PORT_A" "$PORT_B"
  setup_tpg 2 "$PORT_C"
  put secondary "$tq/tpgt_2/lun/lun_0/alua_tg_pt_gp"
  put "$SECONDARY_STATE" "$dev/alua/secondary/alua_access_state"
}

if [ "$CONFIGURE_WITH" = targetcli ]; then
  configure_with_targetcli
else
  configure_with_configfs
fi
# The device under LUN 0, wherever either way put it (iblock_N/disk), for the ALUA groups.
for dev in "$t"/core/iblock_*/disk; do :; done
[ -d "$dev/alua/secondary" ] || fail "no ALUA group secondary on LUN 0's device"
echo "LUN0_DEVICE=$dev" >>/etc/lio/lio.env  # for lio-ctl

for key in HeaderDigest DataDigest AuthMethod; do
  echo "LIO-PARAM: $key=$(cat "$tq/tpgt_1/param/$key")"
done
say "ALUA groups: default_tg_pt_gp $(cat "$dev/alua/default_tg_pt_gp/alua_access_state")," \
  "secondary $(cat "$dev/alua/secondary/alua_access_state")" \
  "(access type $(cat "$dev/alua/secondary/alua_access_type"))"
dmesg -c >/dev/null  # `lio-ctl log` starts with the first login

# The control port: one command per connection (-ll: keep listening after each).
nc -ll -p "$CTL_PORT" -e /bin/lio-ctl &
echo "LIO-READY"
while :; do sleep 3600; done
