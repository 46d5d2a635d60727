#!/usr/bin/env bash
# A throw-away istgt iSCSI target for tests: a second, independent target implementation.
#
#   eval "$(tests/testbed/istgt-target.sh start [options])"   # sets ISTGT_* in the caller
#   ...
#   tests/testbed/istgt-target.sh stop                        # reads ISTGT_* from the environment
#
# start options:
#   --iqn IQN              full target name; split at the last ':' into NodeBase and TargetName
#                          (default iqn.2026-11.org.iscsi-mpio:disk1)
#   --size SIZE            size of the sparse backing file (default 512M)
#   --portal ADDR          listen address, repeatable (default 127.0.0.1); all share one port
#   --group-per-portal     each portal in its own portal group (target portal group tag 1, 2,
#                          ...), as on arrays with one group per controller port; default: one
#                          group for all
#   --port N               TCP port (default: a free ephemeral port)
#   --netns NAME           run istgt inside network namespace NAME (made by the caller)
#   --chap USER:SECRET     one-way CHAP
#   --mutual-chap USER:SECRET  mutual CHAP: the target answers the initiator's challenge as USER
#   --discovery-chap USER:SECRET  discovery sessions need one-way CHAP as USER
#                          (DiscoveryAuthMethod CHAP, DiscoveryAuthGroup AuthGroup9999)
#   --dir DIR              config, backing file and log go here (default: a new mktemp -d)
#   Operational keys the target offers at login ([Global] section; RFC 7143 §13 rules decide
#   what is in effect: InitialR2T OR, ImmediateData AND, the lengths the minimum):
#   --initial-r2t Yes      InitialR2T (default Yes; istgt 0.4 refuses No, see below)
#   --immediate-data Yes|No  ImmediateData (default Yes)
#   --first-burst N        FirstBurstLength in bytes (default 65536)
#   --max-burst N          MaxBurstLength in bytes (default 262144)
#   --max-outstanding-r2t N  MaxOutstandingR2T (default 16)
#   --max-recv-data-segment N  MaxRecvDataSegmentLength the target declares (default 262144)
#
# start prints, for eval: ISTGT_PID ISTGT_PORT ISTGT_IQN ISTGT_LUN ISTGT_BACKING, plus
# ISTGT_PORTALS, ISTGT_CTL_PORT (UnitControl), ISTGT_NETNS, ISTGT_DIR, ISTGT_DIR_OWNED, ISTGT_LOG.
#
# Facts about istgt 0.4 (20111008, Debian 12) this script relies on, checked on this machine:
# - `istgt -c FILE -D` stays in the foreground. The config needs [Global] with NodeBase, PidFile,
#   AuthFile and MediaDirectory (the defaults point into /etc and /var), a [UnitControl] section
#   with its own portal (we give it a free loopback port, AuthMethod None), [PortalGroup1],
#   [InitiatorGroup1] and [LogicalUnit1]; the config written below is the one that works.
# - `LUN0 Storage FILE Auto` takes the size from the existing file; the data is on LUN 0 and the
#   target name is NodeBase:TargetName.
# - CHAP: the LU says `AuthMethod CHAP` (one-way) or `AuthMethod CHAP Mutual` plus
#   `AuthGroup AuthGroup1`; the AuthFile's [AuthGroup1] holds
#   `Auth "user" "secret" ["mutual-user" "mutual-secret"]`. A wrong secret makes the login fail
#   with status 0x0201 (authentication failure). The AuthFile is re-read at each login.
# - The startup banner ends with "LU1: LUN0 command queuing enabled"; the portal listens then.
# - istgt is still running 2 s after SIGTERM: stop it with SIGKILL.
# - [Global] InitialR2T No makes istgt 0.4 exit at start ("istgt_init: not supported value No"):
#   against it InitialR2T is always Yes. ImmediateData No, MaxRecvDataSegmentLength,
#   FirstBurstLength, MaxBurstLength and MaxOutstandingR2T are taken and offered at login.
# - libiscsi's iscsi-ls hangs against istgt after login; qemu (libiscsi) and iscsi-inq work.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$here/lib.sh"

readonly default_iqn=iqn.2026-11.org.iscsi-mpio:disk1
readonly start_attempts=4

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "${1:-2}"
}

owns_listener() {
  local netns=$1 port=$2 pid=$3
  tb_in_ns "$netns" ss -Hltnp "sport = :$port" | grep -q "pid=$pid,"
}

# write_config FILE: the istgt.conf for the current settings (variables of start()).
write_config() {
  local auth_method=None i=1 addr
  [[ -z $chap ]] || auth_method=CHAP
  [[ -z $mutual_chap ]] || auth_method="CHAP Mutual"
  local discovery_auth="DiscoveryAuthMethod Auto"
  [[ -z $discovery_chap ]] || discovery_auth=$'DiscoveryAuthMethod CHAP\n  DiscoveryAuthGroup AuthGroup9999'
  {
    cat <<EOF
[Global]
  NodeBase "${iqn%:*}"
  PidFile $dir/istgt.pid
  AuthFile $dir/auth.conf
  MediaDirectory $dir
  LogFacility "local7"
  Timeout 30
  NopInInterval 20
  $discovery_auth
  MaxSessions 16
  MaxConnections 4
  MaxR2T 32
  MaxOutstandingR2T $max_outstanding_r2t
  FirstBurstLength $first_burst
  MaxBurstLength $max_burst
  MaxRecvDataSegmentLength $max_recv_data_segment
  InitialR2T $initial_r2t
  ImmediateData $immediate_data

[UnitControl]
  AuthMethod None
  Portal UC1 127.0.0.1:$ctl_port
  Netmask 127.0.0.1

EOF
    local group=1 mappings="  Mapping PortalGroup1 InitiatorGroup1"
    echo "[PortalGroup1]"
    for addr in "${portals[@]}"; do
      if ((group_per_portal && i > 1)); then
        group=$i
        mappings+=$'\n'"  Mapping PortalGroup$group InitiatorGroup1"
        printf '\n[PortalGroup%s]\n' "$group"
      fi
      echo "  Portal DA$i $addr:$port"
      i=$((i + 1))
    done
    cat <<EOF

[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask $netmask

[LogicalUnit1]
  TargetName "${iqn##*:}"
$mappings
  AuthMethod $auth_method
  AuthGroup AuthGroup1
  UseDigest Auto
  UnitType Disk
  LUN0 Storage $backing Auto
EOF
  } >"$1"
  {
    echo "[AuthGroup1]"
    if [[ -n $chap ]]; then
      printf '  Auth "%s" "%s"' "${chap%%:*}" "${chap#*:}"
      [[ -z $mutual_chap ]] || printf ' "%s" "%s"' "${mutual_chap%%:*}" "${mutual_chap#*:}"
      echo
    fi
    if [[ -n $discovery_chap ]]; then
      echo "[AuthGroup9999]"
      printf '  Auth "%s" "%s"\n' "${discovery_chap%%:*}" "${discovery_chap#*:}"
    fi
  } >"$dir/auth.conf"
  chmod 600 "$dir/auth.conf"
}

start() {
  iqn=$default_iqn
  local size=512M fixed_port='' netns=''
  chap='' mutual_chap='' discovery_chap='' dir='' portals=()
  while (($#)); do
    case $1 in
      --iqn) iqn=${2:?}; shift 2 ;;
      --size) size=${2:?}; shift 2 ;;
      --portal) portals+=("${2:?}"); shift 2 ;;
      --group-per-portal) group_per_portal=1; shift ;;
      --port) fixed_port=${2:?}; shift 2 ;;
      --netns) netns=${2:?}; shift 2 ;;
      --chap) chap=${2:?}; shift 2 ;;
      --mutual-chap) mutual_chap=${2:?}; shift 2 ;;
      --discovery-chap) discovery_chap=${2:?}; shift 2 ;;
      --dir) dir=${2:?}; shift 2 ;;
      --initial-r2t) initial_r2t=${2:?}; shift 2 ;;
      --immediate-data) immediate_data=${2:?}; shift 2 ;;
      --first-burst) first_burst=${2:?}; shift 2 ;;
      --max-burst) max_burst=${2:?}; shift 2 ;;
      --max-outstanding-r2t) max_outstanding_r2t=${2:?}; shift 2 ;;
      --max-recv-data-segment) max_recv_data_segment=${2:?}; shift 2 ;;
      -h | --help) usage 0 ;;
      *) echo "unknown option: $1" >&2; usage ;;
    esac
  done
  ((${#portals[@]})) || portals=(127.0.0.1)
  [[ $initial_r2t == Yes ]] || tb_die "--initial-r2t: istgt 0.4 supports only Yes"
  [[ $immediate_data == Yes || $immediate_data == No ]] || tb_die "--immediate-data wants Yes or No"
  local number
  for number in "$first_burst" "$max_burst" "$max_outstanding_r2t" "$max_recv_data_segment"; do
    [[ $number =~ ^[1-9][0-9]*$ ]] || tb_die "not a positive number: $number"
  done
  ((first_burst <= max_burst)) || tb_die "--first-burst above --max-burst (RFC 7143 §13.14)"
  [[ $iqn == *:* ]] || tb_die "--iqn needs a ':' between NodeBase and TargetName"
  [[ -z $chap || $chap == *:* ]] || tb_die "--chap wants USER:SECRET"
  [[ -z $mutual_chap || $mutual_chap == *:* ]] || tb_die "--mutual-chap wants USER:SECRET"
  [[ -z $mutual_chap || -n $chap ]] || tb_die "--mutual-chap needs --chap"
  [[ -z $discovery_chap || $discovery_chap == *:* ]] || tb_die "--discovery-chap wants USER:SECRET"
  command -v istgt >/dev/null || tb_die "istgt not installed"
  # Loopback-only portals keep the ACL tight; portals in a namespace need the wider mask.
  netmask=127.0.0.0/8
  local addr
  for addr in "${portals[@]}"; do
    [[ $addr == 127.* ]] || netmask=ALL
  done

  local dir_owned
  read -r dir_owned dir <<<"$(tb_target_dir "$dir" istgt-target)"
  backing=$dir/disk1.img
  local log=$dir/istgt.log conf=$dir/istgt.conf
  truncate -s "$(tb_size_bytes "$size")" "$backing"

  local attempt pid=''
  for ((attempt = 1; attempt <= start_attempts; attempt++)); do
    port=${fixed_port:-$(tb_free_port "$netns" "${portals[0]}")}
    ctl_port=$(tb_free_port '' 127.0.0.1)
    write_config "$conf"
    local -a cmd=(istgt -c "$conf" -D)
    [[ -z $netns ]] || cmd=(ip netns exec "$netns" "${cmd[@]}")
    "${cmd[@]}" </dev/null >"$log" 2>&1 &
    pid=$!
    if tb_wait_port "$netns" "${portals[0]}" "$port" "$pid" 10 &&
      owns_listener "$netns" "$port" "$pid"; then
      break
    fi
    echo "istgt start attempt $attempt failed (port $port): $(tail -n 3 "$log")" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=''
  done
  if [[ -z $pid ]]; then
    if ((dir_owned)); then rm -rf "$dir"; else rm -f "$backing" "$conf" "$log"; fi
    tb_die "could not start istgt"
  fi
  for addr in "${portals[@]:1}"; do
    if ! tb_wait_port "$netns" "$addr" "$port" "$pid" 10; then
      kill -KILL "$pid" 2>/dev/null || true
      if ((dir_owned)); then rm -rf "$dir"; else rm -f "$backing" "$conf" "$log"; fi
      tb_die "portal $addr:$port never accepted connections"
    fi
  done

  tb_emit ISTGT_PID "$pid" ISTGT_PORT "$port" ISTGT_IQN "$iqn" ISTGT_LUN 0 \
    ISTGT_BACKING "$backing" \
    ISTGT_PORTALS "$(printf '%s:'"$port"' ' "${portals[@]}" | sed 's/ $//')" \
    ISTGT_CTL_PORT "$ctl_port" ISTGT_NETNS "$netns" ISTGT_DIR "$dir" \
    ISTGT_DIR_OWNED "$dir_owned" ISTGT_LOG "$log"
}

stop() {
  local pid=${ISTGT_PID:?ISTGT_PID not set: eval the output of start first}
  if tb_pid_is "$pid" istgt; then
    kill -KILL "$pid" 2>/dev/null || true
    tb_wait_gone "$pid" 5 || tb_die "istgt $pid did not exit"
  fi
  if [[ ${ISTGT_DIR_OWNED:-0} == 1 && -n ${ISTGT_DIR:-} ]]; then
    rm -rf "$ISTGT_DIR"
  elif [[ -n ${ISTGT_DIR:-} ]]; then
    rm -f "${ISTGT_BACKING:-}" "$ISTGT_DIR"/{istgt.conf,auth.conf,istgt.pid,istgt.log}
  fi
}

# Settings shared by start() and write_config().
iqn='' chap='' mutual_chap='' discovery_chap='' dir='' backing='' port='' ctl_port='' netmask='' group_per_portal=0
portals=()
initial_r2t=Yes immediate_data=Yes first_burst=65536 max_burst=262144 max_outstanding_r2t=16
max_recv_data_segment=262144
case ${1:-} in
  start) shift; start "$@" ;;
  stop) stop ;;
  -h | --help) usage 0 ;;
  *) usage ;;
esac
