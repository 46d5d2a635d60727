#!/bin/sh
# shellcheck shell=sh
# The LIO target of tests/guest/lio-target.sh, configured with targetcli (Debian's targetcli-fb)
# the way a user's guide does it. lio-guest-init.sh runs it in the guest, chrooted into the
# Debian root of make-targetcli-root.sh, with the settings of lio.env (the file named by $1):
#   - block backstores "disk" (/dev/vda, LUN 0) and "disk1" (/dev/vdb, LUN 1): virtio disks that
#     are raw files on the host, so the host reads what LIO wrote;
#   - ALUA target port group "secondary" (id 2) on "disk", beside LIO's default_tg_pt_gp;
#   - target $TARGET_IQN: tpg1 with two portals (127.0.0.1:$PORT_A, :$PORT_B), tpg2 with one
#     (127.0.0.1:$PORT_C, its LUN 0 in "secondary"); both map the two LUNs to an ACL for
#     $INITIATOR_IQN with CHAP and mutual CHAP, and require authentication.
#
# Every targetcli line below is a command as a user types it at a shell: `targetcli PATH
# COMMAND ARGS`. Each targetcli process costs a few seconds of python start-up in the TCG
# guest, so targetcli() here only collects the command lines, and one targetcli process runs
# them in order at the end (its batch mode: commands on stdin). A command that fails prints
# "Error: ..." and fails the script.
set -eu
# shellcheck source=/dev/null
. "$1"

batch=/tmp/targetcli.batch
: >"$batch"
targetcli() { printf '%s\n' "$*" >>"$batch"; }

# Plain output; no 0.0.0.0:3260 portal in a new TPG (SendTargets would advertise it); nothing
# saved to /etc at exit (the root is read-only; the guest starts afresh at every boot).
targetcli set global color_mode=false auto_add_default_portal=false auto_save_on_exit=false

targetcli /backstores/block create name=disk dev=/dev/vda wwn="$DISK_SERIAL"
targetcli /backstores/block create name=disk1 dev=/dev/vdb wwn="$DISK1_SERIAL"
# LIO delays each command on an active/non-optimized port (nonop_delay_msecs, 100 ms by
# default): keep both groups quick, for the failover checks.
targetcli /backstores/block/disk/alua create secondary 2
targetcli /backstores/block/disk/alua/secondary set alua nonop_delay_msecs=0
targetcli /backstores/block/disk/alua/default_tg_pt_gp set alua nonop_delay_msecs=0

targetcli /iscsi create "$TARGET_IQN"
targetcli /iscsi/"$TARGET_IQN" create 2
for tpg in tpg1 tpg2; do
  targetcli /iscsi/"$TARGET_IQN"/$tpg/luns create /backstores/block/disk
  targetcli /iscsi/"$TARGET_IQN"/$tpg/luns create /backstores/block/disk1
  # The ACL maps every LUN of the TPG (auto_add_mapped_luns): LUN 0 and LUN 1.
  targetcli /iscsi/"$TARGET_IQN"/$tpg/acls create "$INITIATOR_IQN"
  targetcli /iscsi/"$TARGET_IQN"/$tpg/acls/"$INITIATOR_IQN" set auth \
    userid="$CHAP_USER" password="$CHAP_SECRET" \
    mutual_userid="$MUTUAL_USER" mutual_password="$MUTUAL_SECRET"
  targetcli /iscsi/"$TARGET_IQN"/$tpg set attribute authentication=1 generate_node_acls=0
done
targetcli /iscsi/"$TARGET_IQN"/tpg1/portals create 127.0.0.1 "$PORT_A"
targetcli /iscsi/"$TARGET_IQN"/tpg1/portals create 127.0.0.1 "$PORT_B"
targetcli /iscsi/"$TARGET_IQN"/tpg2/portals create 127.0.0.1 "$PORT_C"
targetcli /iscsi/"$TARGET_IQN"/tpg2/luns/lun0 set alua alua_tg_pt_gp_name=secondary
targetcli /backstores/block/disk/alua/secondary set alua alua_access_state="$SECONDARY_STATE"
targetcli ls /iscsi

# targetcli asks D-Bus for tcmu-runner's backstores and will not start without a system bus:
# a bus of its own for the while (the session configuration, at the system bus's address).
mkdir -p /run/dbus
dbus-daemon --session --address=unix:path=/run/dbus/system_bus_socket --fork \
  --print-pid >/tmp/dbus.pid
export TARGETCLI_HOME=/tmp/targetcli PYTHONDONTWRITEBYTECODE=1
command targetcli <"$batch" >/tmp/targetcli.out 2>&1 || true
kill "$(cat /tmp/dbus.pid)"
cat /tmp/targetcli.out
! grep -qE '^(Error|Critical): |Traceback' /tmp/targetcli.out
