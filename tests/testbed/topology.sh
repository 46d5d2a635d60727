#!/usr/bin/env bash
# A two-host storage network for multipath tests: an initiator namespace and a target namespace
# joined by N veth pairs, one subnet per pair (the user documents' "two NICs, two subnets").
#
#   eval "$(tests/testbed/topology.sh up NAME [PATHS])"   # PATHS 1..8, default 2
#   tests/testbed/topology.sh link NAME I up|down          # pull / plug path I's cable
#   tests/testbed/topology.sh blackhole NAME I on|off      # nftables DROP on path I: no RST, no FIN
#   tests/testbed/topology.sh rate NAME I RATE|off         # tc tbf on both ends of path I (e.g. 200mbit)
#   tests/testbed/topology.sh mtu NAME I MTU               # both ends of path I (9000: jumbo frames)
#   tests/testbed/topology.sh frame-limit NAME I BYTES|off # frames above BYTES lost on path I
#   tests/testbed/topology.sh down NAME                    # remove everything `up` made
#
# Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking space): path I uses 198.18.I.0/24 with
# the target at .1 and the initiator at .2. Interfaces are ini<I> / tgt<I>.
#
# `up` prints, for eval: TOPO_NAME TOPO_INI_NS TOPO_TGT_NS TOPO_PATHS and TOPO_TARGET_ADDRS /
# TOPO_INITIATOR_ADDRS (space-separated, path order).
#
# Facts this relies on (checked on this machine): `ip link set DEV down` removes the connected
# route at once (new connects fail with ENETUNREACH, an established connection just stops
# moving); nftables DROP in the target namespace is a black hole; tc has tbf but not netem.
set -euo pipefail

die() {
  echo "topology.sh: $*" >&2
  exit 1
}

check_name() {
  [[ ${1:-} =~ ^[a-z][a-z0-9-]{0,11}$ ]] || die "NAME must be 1-12 of [a-z0-9-], starting with a letter"
}

check_path() {
  [[ ${1:-} =~ ^[1-8]$ ]] || die "path index must be 1..8"
}

ini() { echo "$1-ini"; }
tgt() { echo "$1-tgt"; }

cmd_up() {
  local name=$1 paths=${2:-2}
  check_name "$name"
  [[ $paths =~ ^[1-8]$ ]] || die "PATHS must be 1..8"
  local ini_ns tgt_ns
  ini_ns=$(ini "$name")
  tgt_ns=$(tgt "$name")
  ip netns list | grep -qw -- "$ini_ns" && die "namespace $ini_ns exists: run 'down $name' first"
  # A half-built topology is removed before reporting the failure.
  trap 'cmd_down "$name" >/dev/null 2>&1 || true' ERR
  ip netns add "$ini_ns"
  ip netns add "$tgt_ns"
  ip -n "$ini_ns" link set lo up
  ip -n "$tgt_ns" link set lo up
  local i targets=() initiators=()
  for i in $(seq 1 "$paths"); do
    ip link add "ini$i" netns "$ini_ns" type veth peer name "tgt$i" netns "$tgt_ns"
    ip -n "$ini_ns" addr add "198.18.$i.2/24" dev "ini$i"
    ip -n "$tgt_ns" addr add "198.18.$i.1/24" dev "tgt$i"
    ip -n "$ini_ns" link set "ini$i" up
    ip -n "$tgt_ns" link set "tgt$i" up
    targets+=("198.18.$i.1")
    initiators+=("198.18.$i.2")
  done
  # The black-hole table exists from the start; `blackhole` only adds and removes rules.
  ip netns exec "$tgt_ns" nft add table inet topo
  ip netns exec "$tgt_ns" nft add chain inet topo input '{ type filter hook input priority 0; }'
  ip netns exec "$tgt_ns" nft add chain inet topo output '{ type filter hook output priority 0; }'
  trap - ERR
  echo "export TOPO_NAME=$name TOPO_INI_NS=$ini_ns TOPO_TGT_NS=$tgt_ns TOPO_PATHS=$paths"
  echo "export TOPO_TARGET_ADDRS='${targets[*]}' TOPO_INITIATOR_ADDRS='${initiators[*]}'"
}

cmd_down() {
  local name=$1
  check_name "$name"
  # Deleting a namespace deletes its veth ends (and so their peers) and its nftables rules.
  ip netns del "$(ini "$name")" 2>/dev/null || true
  ip netns del "$(tgt "$name")" 2>/dev/null || true
}

cmd_link() {
  local name=$1 i=$2 state=$3
  check_name "$name"
  check_path "$i"
  [[ $state == up || $state == down ]] || die "link state must be up or down"
  ip -n "$(ini "$name")" link set "ini$i" "$state"
}

cmd_blackhole() {
  local name=$1 i=$2 state=$3 ns
  check_name "$name"
  check_path "$i"
  ns=$(tgt "$name")
  case $state in
    on)
      ip netns exec "$ns" nft add rule inet topo input iifname "tgt$i" drop comment "\"path$i\""
      ip netns exec "$ns" nft add rule inet topo output oifname "tgt$i" drop comment "\"path$i\""
      ;;
    off) delete_rules "$ns" "path$i" ;;
    *) die "blackhole state must be on or off" ;;
  esac
}

# delete_rules NS COMMENT: remove the rules of table inet topo in NS that carry COMMENT.
delete_rules() {
  local ns=$1 comment=$2 handle
  for handle in $(ip netns exec "$ns" nft -a list table inet topo |
    sed -n "s/.*comment \"$comment\" # handle \([0-9]*\)/\1/p"); do
    ip netns exec "$ns" nft delete rule inet topo input handle "$handle" 2>/dev/null ||
      ip netns exec "$ns" nft delete rule inet topo output handle "$handle"
  done
}

cmd_rate() {
  local name=$1 i=$2 rate=$3
  check_name "$name"
  check_path "$i"
  local ns dev
  for ns_dev in "$(ini "$name"):ini$i" "$(tgt "$name"):tgt$i"; do
    ns=${ns_dev%%:*}
    dev=${ns_dev##*:}
    tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || true
    if [[ $rate != off ]]; then
      tc -n "$ns" qdisc add dev "$dev" root tbf rate "$rate" burst 256kb latency 50ms
    fi
  done
}

# The user documents put storage NICs on jumbo frames (`ip link set eth1 mtu 9000`); veth takes
# 68..65535.
cmd_mtu() {
  local name=$1 i=$2 mtu=$3
  check_name "$name"
  check_path "$i"
  [[ $mtu =~ ^[0-9]+$ ]] && ((mtu >= 68 && mtu <= 65535)) || die "MTU must be 68..65535"
  ip -n "$(ini "$name")" link set "ini$i" mtu "$mtu"
  ip -n "$(tgt "$name")" link set "tgt$i" mtu "$mtu"
}

# A switch port with a smaller MTU between two hosts (the jumbo-frame mismatch): frames above
# BYTES are dropped silently, no ICMP, so TCP keeps its segment size and retransmits in vain: a
# black hole for large PDUs only, small ones (NOP-Out, commands) pass. nftables drops IP packets
# longer than BYTES on path I both ways; GSO on both veth ends is limited to 1 segment so the
# rule sees each frame as the wire would, not a 64 KiB super-packet. Not a veth MTU: with one
# end's MTU lowered, the sending TCP learned the smaller size within a second here (Linux 6.18:
# mss 1448 -> 948, no black hole).
cmd_frame_limit() {
  local name=$1 i=$2 limit=$3 ns segs=65535
  check_name "$name"
  check_path "$i"
  ns=$(tgt "$name")
  if [[ $limit == off ]]; then
    delete_rules "$ns" "frames$i"
  else
    if ! [[ $limit =~ ^[0-9]+$ ]] || ((limit < 68)); then
      die "frame limit must be a number of bytes >= 68, or off"
    fi
    segs=1
    ip netns exec "$ns" nft add rule inet topo input iifname "tgt$i" ip length \> "$limit" drop comment "\"frames$i\""
    ip netns exec "$ns" nft add rule inet topo output oifname "tgt$i" ip length \> "$limit" drop comment "\"frames$i\""
  fi
  ip -n "$(ini "$name")" link set "ini$i" gso_max_segs "$segs"
  ip -n "$ns" link set "tgt$i" gso_max_segs "$segs"
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  link) shift; [[ $# -eq 3 ]] || die "usage: link NAME I up|down"; cmd_link "$@" ;;
  blackhole) shift; [[ $# -eq 3 ]] || die "usage: blackhole NAME I on|off"; cmd_blackhole "$@" ;;
  rate) shift; [[ $# -eq 3 ]] || die "usage: rate NAME I RATE|off"; cmd_rate "$@" ;;
  frame-limit) shift; [[ $# -eq 3 ]] || die "usage: frame-limit NAME I BYTES|off"; cmd_frame_limit "$@" ;;
  mtu) shift; [[ $# -eq 3 ]] || die "usage: mtu NAME I MTU"; cmd_mtu "$@" ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
