#!/usr/bin/env bash
# A throw-away LIO iSCSI target (the Linux kernel target that targetcli configures) in a QEMU
# TCG guest, for tests. The guest boots Debian's kernel (tests/guest/make-initramfs.sh) and
# configures LIO with targetcli (tests/guest/lio-targetcli.sh, run from the Debian root of
# make-targetcli-root.sh on a read-only third disk) or by writing configfs itself
# (tests/guest/lio-guest-init.sh; --configure-with configfs): an iblock backstore on a
# virtio disk that is a raw file on the host (written through: the host reads what LIO wrote,
# live), target $LIO_IQN with tpgt_1 on ports A and B and tpgt_2 on port C, LUN 0 in each,
# CHAP and mutual CHAP for one initiator name, CRC32C digests allowed, and two ALUA target port
# groups: default_tg_pt_gp (tpgt_1, active/optimized) and secondary (tpgt_2, id 2).
#
#   eval "$(tests/guest/lio-target.sh start --initiator IQN [options])"   # sets LIO_*
#   tests/guest/lio-target.sh ctl COMMAND...    # a command to the guest (lio-ctl.sh lists them;
#                                               # LIO_CTL_TIMEOUT seconds, default 20)
#   tests/guest/lio-target.sh resize SIZE       # grow or shrink the disk behind LUN 0, as an
#                                               # admin resizes a LUN on an array (QEMU
#                                               # block_resize; the guest's iblock follows)
#   tests/guest/lio-target.sh stop              # reads LIO_* from the environment
#
# start options:
#   --initiator IQN        the initiator name the ACLs admit (required)
#   --iqn IQN              target name (default iqn.2026-11.org.iscsi-mpio:lio)
#   --size SIZE            size of the sparse raw disk behind LUN 0 (default 64M)
#   --chap USER:SECRET     the initiator's CHAP credentials (default im-initiator:...)
#   --mutual-chap USER:SECRET  what LIO answers a mutual CHAP challenge with (default im-target:...)
#   --secondary-state N    ALUA state of port group "secondary" (tpgt_2) at start: 0 optimized,
#                          1 non-optimized (default), 2 standby
#   --dir DIR              where the disk, console log and initramfs go (default: mktemp -d)
#   --boot-timeout SEC     seconds allowed until LIO is configured (default 120; about 15)
#   --configure-with HOW   targetcli (default: the commands of lio-targetcli.sh) or configfs
#                          (the same configuration written straight into configfs, faster to
#                          boot and needs no Debian root)
#   --initiator-binary P   also put iscsi-mpio (P) in the guest, for the `nbd` commands: the
#                          initiator next to LIO, with the kernel's nbd driver for /dev/nbd0
#
# start prints, for eval: LIO_PID (qemu) LIO_PID_START LIO_IQN LIO_LUN LIO_PORT_A LIO_PORT_B
# LIO_PORT_C LIO_CTL_PORT LIO_BACKING (the raw disk) LIO_BACKING1 (the 32 MiB raw disk behind
# LUN 1, mapped in both TPGs and the ACLs beside LUN 0) LIO_SERIAL (VPD 0x80 serial) LIO_DIR
# LIO_DIR_OWNED LIO_CONSOLE LIO_QMP (QEMU's QMP socket) LIO_HEADER_DIGEST LIO_DATA_DIGEST LIO_AUTH_METHOD (the TPG's
# offers). Ports are free host ports on 127.0.0.1; each is forwarded (slirp hostfwd) to the
# same port on the guest's 127.0.0.1, where one LIO portal listens, so SendTargets advertises
# 127.0.0.1:PORT, which the host reaches. A portal on 0.0.0.0 would advertise 10.0.2.15.
# As soon as QEMU runs, DIR/qemu.env holds LIO_PID LIO_PID_START LIO_DIR LIO_DIR_OWNED: a
# caller interrupted during start sources it and runs `stop`.
#
# Environment: IM_GUEST_CACHE (kernel and targetcli root cache, see make-initramfs.sh and
# make-targetcli-root.sh). Needs root? No: QEMU TCG
# and user-mode networking run as any user; make-initramfs.sh needs apt-get download once.
# Facts relied on (linux-image-6.1 amd64): configfs, target_core_*, iscsi_target_mod, sha3_generic,
# virtio_blk and virtio_pci are modules; md5, sha1, sha256 are built in; CONFIG_DYNAMIC_DEBUG=y.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$here/../testbed/lib.sh"

readonly default_iqn=iqn.2026-11.org.iscsi-mpio:lio
readonly start_attempts=3
# Load order, dependencies first (each module's depends= field). crct10dif_generic before
# crc-t10dif: the library asks the crypto API for "crct10dif" when it loads.
readonly lio_modules=(configfs scsi_common crct10dif_common crct10dif_generic crc-t10dif
  target_core_mod target_core_iblock iscsi_target_mod sha3_generic
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "${1:-2}"
}

# ctl COMMAND...: one command over the control port; prints the answer, returns its status.
# Bounded: 20 s for the whole answer.
ctl() {
  local port=${LIO_CTL_PORT:?LIO_CTL_PORT not set: eval the output of start first}
  local limit=${LIO_CTL_TIMEOUT:-20}
  local fd line status=1 deadline=$((SECONDS + limit))
  exec {fd}<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf '%s\n' "$*" >&"$fd"
  while ((SECONDS < deadline)) && IFS= read -r -t "$limit" line <&"$fd"; do
    line=${line%$'\r'}
    if [[ $line == "END "* ]]; then
      status=${line#END }
      break
    fi
    printf '%s\n' "$line"
  done
  exec {fd}>&-
  return "$status"
}

# free_ports N: N distinct free TCP ports on 127.0.0.1.
free_ports() {
  local -a ports=()
  local port
  while ((${#ports[@]} < $1)); do
    port=$(tb_free_port '' 127.0.0.1)
    [[ " ${ports[*]} " == *" $port "* ]] || ports+=("$port")
  done
  echo "${ports[*]}"
}

start() {
  local iqn=$default_iqn size=64M dir='' initiator='' boot_timeout=120 secondary_state=1
  local initiator_binary='' configure_with=targetcli
  local chap=im-initiator:im-initiator-secret1 mutual_chap=im-target:im-target-secret22
  while (($#)); do
    case $1 in
      --initiator) initiator=${2:?}; shift 2 ;;
      --iqn) iqn=${2:?}; shift 2 ;;
      --size) size=${2:?}; shift 2 ;;
      --chap) chap=${2:?}; shift 2 ;;
      --mutual-chap) mutual_chap=${2:?}; shift 2 ;;
      --secondary-state) secondary_state=${2:?}; shift 2 ;;
      --dir) dir=${2:?}; shift 2 ;;
      --boot-timeout) boot_timeout=${2:?}; shift 2 ;;
      --initiator-binary) initiator_binary=${2:?}; shift 2 ;;
      --configure-with) configure_with=${2:?}; shift 2 ;;
      -h | --help) usage 0 ;;
      *) echo "unknown option: $1" >&2; usage ;;
    esac
  done
  [[ -n $initiator ]] || tb_die "--initiator IQN is required (the ACL's name)"
  [[ $chap == *:* && $mutual_chap == *:* ]] || tb_die "--chap/--mutual-chap want USER:SECRET"
  [[ $configure_with == targetcli || $configure_with == configfs ]] ||
    tb_die "--configure-with wants targetcli or configfs, not '$configure_with'"
  command -v qemu-system-x86_64 >/dev/null || tb_die "qemu-system-x86_64 not found (tools/install-deps.sh)"
  # The Debian root with targetcli: a read-only third disk, /dev/vdc in the guest.
  local root_disk=()
  if [[ $configure_with == targetcli ]]; then
    local root_env
    root_env=$("$here/make-targetcli-root.sh") || tb_die "make-targetcli-root.sh failed"
    eval "$root_env"
    # shellcheck disable=SC2054  # QEMU's options are comma-separated
    root_disk=(-drive "file=$GUEST_TARGETCLI_ROOT,format=raw,if=none,id=root,readonly=on"
      -device virtio-blk-pci,drive=root,romfile=)
  fi

  local dir_owned
  read -r dir_owned dir <<<"$(tb_target_dir "$dir" lio-target)"
  local disk=$dir/lun0.img disk1=$dir/lun1.img console=$dir/console.log serial
  truncate -s "$(tb_size_bytes "$size")" "$disk"
  truncate -s 32M "$disk1"
  serial=lio$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')

  # abort_start MESSAGE: undo a half-done start (the caller gets no variables to stop with).
  local pid=''
  abort_start() {
    if [[ -n $pid ]] && tb_pid_is "$pid" qemu-system-x86_64; then
      kill -KILL "$pid" 2>/dev/null || true
      tb_wait_gone "$pid" 5 || true
    fi
    if [[ -f $console ]]; then
      echo "guest console (last 30 lines):" >&2
      tail -n 30 "$console" | tr -d '\r' >&2
    fi
    if ((dir_owned)); then rm -rf "$dir"; else rm -f "$disk" "$disk1" "$console"; fi
    tb_die "$1"
  }

  local attempt ports port_a port_b port_c ctl_port
  for ((attempt = 1; attempt <= start_attempts; attempt++)); do
    read -r port_a port_b port_c ctl_port <<<"$(free_ports 4)"
    cat >"$dir/lio.env" <<EOF
TARGET_IQN='$iqn'
INITIATOR_IQN='$initiator'
PORT_A=$port_a
PORT_B=$port_b
PORT_C=$port_c
CTL_PORT=$ctl_port
CHAP_USER='${chap%%:*}'
CHAP_SECRET='${chap#*:}'
MUTUAL_USER='${mutual_chap%%:*}'
MUTUAL_SECRET='${mutual_chap#*:}'
SECONDARY_STATE=$secondary_state
DISK_SERIAL=$serial
DISK1_SERIAL=${serial}b
CONFIGURE_WITH=$configure_with
EOF
    local initramfs_env extra=()
    [[ -z $initiator_binary ]] || extra=(--binary "$initiator_binary:/usr/local/bin/iscsi-mpio")
    initramfs_env=$("$here/make-initramfs.sh" --out "$dir" --init "$here/lio-guest-init.sh" \
      --binary "$here/lio-ctl.sh:/bin/lio-ctl" --file "$dir/lio.env:/etc/lio/lio.env" \
      --file "$here/lio-targetcli.sh:/etc/lio/lio-targetcli.sh" \
      ${extra[@]+"${extra[@]}"} \
      $(printf -- '--module %s ' "${lio_modules[@]}")) || abort_start "make-initramfs.sh failed"
    eval "$initramfs_env"
    local fwd='' p
    for p in "$port_a" "$port_b" "$port_c" "$ctl_port"; do
      fwd+=",hostfwd=tcp:127.0.0.1:$p-127.0.0.1:$p"
    done
    : >"$console"
    # TCG: -enable-kvm hangs on this kind of machine. cache=writethrough: every write LIO
    # completes is in the host's file (page cache) before the guest sees it done.
    qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nodefaults -no-reboot -display none \
      -serial "file:$console" -monitor none -qmp "unix:$dir/qmp.sock,server=on,wait=off" \
      -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
      -append "console=ttyS0 panic=-1 loglevel=4 rdinit=/init" \
      -netdev "user,id=net0$fwd" -device e1000,netdev=net0,romfile= \
      -drive "file=$disk,format=raw,if=none,id=disk0,cache=writethrough" \
      -device virtio-blk-pci,drive=disk0,romfile= \
      -drive "file=$disk1,format=raw,if=none,id=disk1,cache=writethrough" \
      -device virtio-blk-pci,drive=disk1,romfile= \
      ${root_disk[@]+"${root_disk[@]}"} \
      </dev/null >"$dir/qemu.log" 2>&1 &
    pid=$!
    sleep 0.5
    tb_running "$pid" && break
    # Most likely a port taken between free_ports and QEMU's bind: pick others.
    echo "qemu start attempt $attempt failed: $(tail -n 2 "$dir/qemu.log")" >&2
    pid=''
  done
  [[ -n $pid ]] || abort_start "could not start qemu"
  # For a caller interrupted before it could eval our output: enough to `stop` the guest.
  tb_emit LIO_PID "$pid" LIO_PID_START "$(tb_start_time "$pid")" LIO_DIR "$dir" \
    LIO_DIR_OWNED "$dir_owned" >"$dir/qemu.env"

  local deadline=$((SECONDS + boot_timeout)) state=''
  while ((SECONDS < deadline)); do
    if grep -aq '^LIO-READY' "$console"; then state=ready; break; fi
    if grep -aq '^LIO-FAIL' "$console"; then state=failed; break; fi
    tb_running "$pid" || { state=exited; break; }
    sleep 0.5
  done
  [[ $state == ready ]] || abort_start "LIO guest not ready ($state${state:+, }within $boot_timeout s)"
  # The control port through slirp proves the forwarding to the guest's 127.0.0.1 works.
  local answer=''
  while ((SECONDS < deadline)); do
    answer=$(LIO_CTL_PORT=$ctl_port ctl ping 2>/dev/null) && [[ $answer == pong ]] && break
    sleep 0.5
  done
  [[ $answer == pong ]] || abort_start "no answer on the control port 127.0.0.1:$ctl_port"

  param() { grep -a "^LIO-PARAM: $1=" "$console" | head -n 1 | tr -d '\r' | cut -d= -f2-; }
  tb_emit LIO_PID "$pid" LIO_PID_START "$(tb_start_time "$pid")" LIO_IQN "$iqn" LIO_LUN 0 \
    LIO_PORT_A "$port_a" LIO_PORT_B "$port_b" LIO_PORT_C "$port_c" LIO_CTL_PORT "$ctl_port" \
    LIO_BACKING "$disk" LIO_BACKING1 "$disk1" LIO_SERIAL "$serial" LIO_DIR "$dir" LIO_DIR_OWNED "$dir_owned" \
    LIO_CONSOLE "$console" LIO_QMP "$dir/qmp.sock" LIO_HEADER_DIGEST "$(param HeaderDigest)" \
    LIO_DATA_DIGEST "$(param DataDigest)" LIO_AUTH_METHOD "$(param AuthMethod)"
}

# resize SIZE: QMP block_resize of the guest's disk (the raw file grows or shrinks with it);
# virtio-blk tells the guest kernel, and LIO's iblock backstore reports the new capacity in
# READ CAPACITY from then on, without a unit attention. Bounded: 10 s.
resize() {
  local qmp=${LIO_QMP:?LIO_QMP not set: eval the output of start first} bytes
  bytes=$(tb_size_bytes "${1:?resize SIZE}")
  timeout 10 python3 - "$qmp" "$bytes" <<'PY'
import json, socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
stream = sock.makefile("rw")
def command(name, **arguments):
    stream.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
    stream.flush()
    while True:  # events may come before the answer
        answer = json.loads(stream.readline())
        if "return" in answer:
            return
        if "error" in answer:
            sys.exit("QMP %s: %s" % (name, answer["error"].get("desc", answer)))
json.loads(stream.readline())  # the greeting
command("qmp_capabilities")
command("block_resize", device="disk0", size=int(sys.argv[2]))
PY
}

stop() {
  local pid=${LIO_PID:-} start_time=${LIO_PID_START:-}
  if [[ -n $pid ]] && tb_pid_is "$pid" qemu-system-x86_64 &&
    [[ -z $start_time || $(tb_start_time "$pid") == "$start_time" ]]; then
    # A clean power-off first; the disk holds everything already (writethrough).
    timeout 5 bash -c "$(declare -f ctl); ctl poweroff" >/dev/null 2>&1 || true
    tb_wait_gone "$pid" 5 || tb_stop_pid "$pid" "$start_time"
  fi
  if [[ ${LIO_DIR_OWNED:-0} == 1 && -n ${LIO_DIR:-} ]]; then
    rm -rf "$LIO_DIR"
  elif [[ -n ${LIO_DIR:-} ]]; then
    rm -f "$LIO_DIR/lun0.img" "$LIO_DIR/console.log" "$LIO_DIR/initramfs.cpio" \
      "$LIO_DIR/lio.env" "$LIO_DIR/qemu.log" "$LIO_DIR/qemu.env" "$LIO_DIR/qmp.sock"
  fi
}

case ${1:-} in
  start) shift; start "$@" ;;
  ctl) shift; ctl "$@" ;;
  resize) shift; resize "$@" ;;
  stop) stop ;;
  -h | --help) usage 0 ;;
  *) usage ;;
esac
