#!/usr/bin/env bash
# A throw-away tgtd iSCSI target for tests and the demo.
#
#   eval "$(tests/testbed/tgtd-target.sh start [options])"   # sets TGT_* in the caller
#   ...
#   tests/testbed/tgtd-target.sh stop                        # reads TGT_* from the environment
#
# start options:
#   --iqn IQN              target name (default iqn.2026-11.org.iscsi-mpio:test)
#   --size SIZE            size of the sparse backing file of LUN 1 (default 512M)
#   --portal ADDR          listen address, repeatable (default 127.0.0.1); all share one port
#   --port N               TCP port (default: a free ephemeral port)
#   --netns NAME           run tgtd inside network namespace NAME (made by the caller)
#   --chap USER:SECRET     one-way CHAP: the initiator must log in as USER with SECRET
#   --mutual-chap USER:SECRET  mutual CHAP: the target answers the initiator's challenge as USER
#   --thin                 thin_provisioning=1 on LUN 1: UNMAP is advertised (SBC-3 LBP VPD) and
#                          punches holes in the backing file, so TRIM becomes checkable
#   --dir DIR              where the backing file and log go (default: a new mktemp -d)
#
# start prints, for eval: TGT_PID TGT_CTL TGT_PORT TGT_IQN TGT_LUN TGT_BACKING, plus TGT_PORTALS
# (space-separated ADDR:PORT), TGT_NETNS, TGT_DIR, TGT_DIR_OWNED, TGT_LOG.
#
# Facts about tgtd 1.0.85 (Debian 12) this script relies on, checked on this machine:
# - `tgtd -f -C N` stays in the foreground and serves control socket /var/run/tgtd/socket.N, so
#   several instances coexist; the socket and its .lock file stay behind after tgtd exits.
# - A portal given with `--iscsi portal=ADDR:PORT` listens from the start; logins succeed once the
#   target is created and bound (`--op bind --mode target -I ALL`).
# - LUN 0 is tgt's own controller (peripheral type 0x0c); the data LUN is 1.
# - tgtd ignores SIGTERM while it has targets, and `--op delete --mode system` answers "invalid
#   request" while a target exists: delete the target with --force first, then the system; tgtd
#   then exits within about 2 s. SIGKILL is the fallback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$here/lib.sh"

readonly default_iqn=iqn.2026-11.org.iscsi-mpio:test
readonly tid=1
readonly lun=1
readonly start_attempts=4

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "${1:-2}"
}

# A control-socket number nobody uses now. tgtd itself refuses a number whose lock is held,
# which the start loop treats like a lost race and retries.
pick_control_number() {
  local n
  for _ in $(seq 50); do
    n=$((2000 + RANDOM % 30000))
    [[ -e /var/run/tgtd/socket.$n ]] || { echo "$n"; return 0; }
  done
  tb_die "no free tgtd control socket number"
}

tgtadm_ctl() {
  tgtadm -C "$ctl" --lld iscsi "$@"
}

# True when PID owns the listening socket on PORT (inside NETNS): another process holding the
# port must not pass for our tgtd.
owns_listener() {
  local netns=$1 port=$2 pid=$3
  tb_in_ns "$netns" ss -Hltnp "sport = :$port" | grep -q "pid=$pid,"
}

start() {
  local iqn=$default_iqn size=512M port='' netns='' dir='' thin=0
  local chap='' mutual_chap=''
  local -a portals=()
  while (($#)); do
    case $1 in
      --iqn) iqn=${2:?}; shift 2 ;;
      --size) size=${2:?}; shift 2 ;;
      --portal) portals+=("${2:?}"); shift 2 ;;
      --port) port=${2:?}; shift 2 ;;
      --netns) netns=${2:?}; shift 2 ;;
      --chap) chap=${2:?}; shift 2 ;;
      --mutual-chap) mutual_chap=${2:?}; shift 2 ;;
      --thin) thin=1; shift ;;
      --dir) dir=${2:?}; shift 2 ;;
      -h | --help) usage 0 ;;
      *) echo "unknown option: $1" >&2; usage ;;
    esac
  done
  ((${#portals[@]})) || portals=(127.0.0.1)
  [[ -z $chap || $chap == *:* ]] || tb_die "--chap wants USER:SECRET"
  [[ -z $mutual_chap || $mutual_chap == *:* ]] || tb_die "--mutual-chap wants USER:SECRET"
  [[ -z $mutual_chap || -n $chap ]] || tb_die "--mutual-chap needs --chap"
  command -v tgtd >/dev/null || tb_die "tgtd not installed (package tgt)"

  local dir_owned
  read -r dir_owned dir <<<"$(tb_target_dir "$dir" tgtd-target)"
  local backing=$dir/lun$lun.img log=$dir/tgtd.log
  truncate -s "$(tb_size_bytes "$size")" "$backing"

  local attempt pid='' portal_arg fixed_port=$port
  for ((attempt = 1; attempt <= start_attempts; attempt++)); do
    ctl=$(pick_control_number)
    [[ -n $fixed_port ]] || port=$(tb_free_port "$netns" "${portals[0]}")
    portal_arg=$(printf 'portal=%s:'"$port"',' "${portals[@]}")
    local -a cmd=(tgtd -f -C "$ctl" --iscsi "${portal_arg%,}")
    [[ -z $netns ]] || cmd=(ip netns exec "$netns" "${cmd[@]}")
    "${cmd[@]}" </dev/null >"$log" 2>&1 &
    pid=$!
    # The control socket answers once tgtd has initialised.
    local deadline=$((SECONDS + 10)) ready=0
    while ((SECONDS < deadline)) && tb_running "$pid"; do
      if tgtadm -C "$ctl" --op show --mode sys >/dev/null 2>&1; then
        ready=1
        break
      fi
      sleep 0.1
    done
    if ((ready)) && owns_listener "$netns" "$port" "$pid"; then
      break
    fi
    echo "tgtd start attempt $attempt failed (ctl $ctl, port $port): $(tail -n 3 "$log")" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "/var/run/tgtd/socket.$ctl" "/var/run/tgtd/socket.$ctl.lock"
    pid=''
  done
  if [[ -z $pid ]]; then
    if ((dir_owned)); then rm -rf "$dir"; else rm -f "$backing" "$log"; fi
    tb_die "could not start tgtd"
  fi

  # abort_start MESSAGE: undo a half-done start (the caller gets no variables to stop with).
  abort_start() {
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "/var/run/tgtd/socket.$ctl" "/var/run/tgtd/socket.$ctl.lock"
    echo "tgtd log:" >&2
    tail -n 5 "$log" >&2 || true
    if ((dir_owned)); then rm -rf "$dir"; else rm -f "$backing" "$log"; fi
    tb_die "$1"
  }
  configure "$iqn" "$backing" "$thin" "$chap" "$mutual_chap" >&2 ||
    abort_start "tgtadm configuration failed"
  local addr
  for addr in "${portals[@]}"; do
    tb_wait_port "$netns" "$addr" "$port" "$pid" 10 ||
      abort_start "portal $addr:$port never accepted connections"
  done

  tb_emit TGT_PID "$pid" TGT_CTL "$ctl" TGT_PORT "$port" TGT_IQN "$iqn" TGT_LUN "$lun" \
    TGT_BACKING "$backing" TGT_PORTALS "$(printf '%s:'"$port"' ' "${portals[@]}" | sed 's/ $//')" \
    TGT_NETNS "$netns" TGT_DIR "$dir" TGT_DIR_OWNED "$dir_owned" TGT_LOG "$log"
}

configure() {
  # Called in a condition, where set -e is off: each step returns on failure itself.
  local iqn=$1 backing=$2 thin=$3 chap=$4 mutual_chap=$5
  tgtadm_ctl --op new --mode target --tid "$tid" -T "$iqn" || return 1
  tgtadm_ctl --op new --mode logicalunit --tid "$tid" --lun "$lun" -b "$backing" || return 1
  if ((thin)); then
    tgtadm_ctl --op update --mode logicalunit --tid "$tid" --lun "$lun" \
      --params thin_provisioning=1 || return 1
  fi
  if [[ -n $chap ]]; then
    tgtadm_ctl --op new --mode account --user "${chap%%:*}" --password "${chap#*:}" || return 1
    tgtadm_ctl --op bind --mode account --tid "$tid" --user "${chap%%:*}" || return 1
  fi
  if [[ -n $mutual_chap ]]; then
    # --outgoing: the credentials tgtd answers with when the initiator challenges it
    # (RFC 7143 §12.1.3, mutual CHAP).
    tgtadm_ctl --op new --mode account --user "${mutual_chap%%:*}" \
      --password "${mutual_chap#*:}" || return 1
    tgtadm_ctl --op bind --mode account --tid "$tid" --user "${mutual_chap%%:*}" \
      --outgoing || return 1
  fi
  tgtadm_ctl --op bind --mode target --tid "$tid" -I ALL || return 1
}

stop() {
  ctl=${TGT_CTL:?TGT_CTL not set: eval the output of start first}
  local pid=${TGT_PID:-}
  if tb_pid_is "$pid" tgtd; then
    tgtadm_ctl --op delete --force --mode target --tid "$tid" >/dev/null 2>&1 || true
    tgtadm -C "$ctl" --op delete --mode system >/dev/null 2>&1 || true
    if ! tb_wait_gone "$pid" 5; then
      kill -KILL "$pid" 2>/dev/null || true
      tb_wait_gone "$pid" 5 || tb_die "tgtd $pid did not exit"
    fi
  fi
  rm -f "/var/run/tgtd/socket.$ctl" "/var/run/tgtd/socket.$ctl.lock"
  [[ -z ${TGT_BACKING:-} ]] || rm -f "$TGT_BACKING"
  if [[ ${TGT_DIR_OWNED:-0} == 1 && -n ${TGT_DIR:-} ]]; then
    rm -rf "$TGT_DIR"
  elif [[ -n ${TGT_LOG:-} ]]; then
    rm -f "$TGT_LOG"
  fi
}

ctl=''
case ${1:-} in
  start) shift; start "$@" ;;
  stop) stop ;;
  -h | --help) usage 0 ;;
  *) usage ;;
esac
