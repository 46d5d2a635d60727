#!/usr/bin/env bash
# `discover:` path entries and the `discover` verb in network namespaces
# (tests/testbed/topology.sh, two paths: 198.18.1.0/24 on ini1, 198.18.2.0/24 on ini2) against
# two targets that both listen on 198.18.1.1 and 198.18.2.1 and both want discovery CHAP:
# tgtd (an account bound with `tgtadm --mode account --op bind` and no --tid, tgt-admin's
# incomingdiscoveryuser; two LUNs of different sizes) and istgt (DiscoveryAuthMethod CHAP).
# tgtd 1.0.85 answers SendTargets with the portal the discovery session came in on only;
# istgt lists every portal of the target's portal group, so the reachability cases use it.
#   - discovery-chap-wrong: attach with a wrong target.discovery_auth secret exits 1 naming
#     discovery authentication and the login status (tgtd);
#   - discovery-chap-right: the right secret: the attach serves the LUN over the discovered
#     path (tgtd);
#   - one-reachable: a discover entry from 198.18.1.2, which reaches only the reported portal
#     on its own subnet (198.18.2.1 leaves through ini2): one session, to 198.18.1.1; `status`
#     marks it "discovered via" and lists 198.18.2.1 as skipped with the reason, the log too; a
#     write through NBD lands in the backing file (istgt);
#   - check-config: probes the discovered path only, and says which portal it skipped (istgt);
#   - two-sources-one-nic: two sources routed out of one NIC are reported as one path;
#   - two-sources: discover entries from both sources: one path per (portal, source) (istgt);
#   - discover-luns: `discover --luns` lists LUN 1 and LUN 2 with the sizes the test made,
#     vendor, product and WWID (LUN 1's as the attach's status showed it) (tgtd);
#   - rediscovery: `luns: all` (LUNs 1 and 2) with discover entries on both subnets while
#     tgtd does not listen on 198.18.2.1: one path per LUN; the portal added with tgtadm and
#     `iscsi-mpio rescan`: both LUNs gain the path ("discovered via"), `paths --json` lists
#     both maps, tgtd counts 2 sessions, and writes with path 1 failed land in each LUN's
#     backing file; the portal deleted again and a rescan: the log says once that discovery no
#     longer reports it, and the working path stays (tgtd);
#   - discover-verb-chap-wrong: the verb with a wrong secret file exits 1 (tgtd);
#   - discover-verb-usage: half the credentials, or a relative secret file: exit 2;
#   - portal-and-discover: a `discover` and a `portal` in one entry is exit 2 naming file, line
#     and key.
# Needs root. Everything it creates (namespaces, targets, files) is removed on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
[[ -x $im_bin ]] || { echo "iscsi-mpio binary not found: $im_bin"; echo "0 passed, 1 failed"; exit 1; }

topo=dsc$$
topo=${topo:0:12}
work=$(mktemp -d /tmp/im-discovery.XXXXXX)
im_pid=""
tgt_started=0
istgt_started=0
topo_started=0
passed=0
failed=0
readonly disc_user=discoverer disc_secret=discovery-secret-1

stop_attach() {
  [[ -z $im_pid ]] || tb_stop_pid "$im_pid"
  [[ -z $im_pid ]] || wait "$im_pid" 2>/dev/null || true
  im_pid=""
}

cleanup() {
  local status=$?
  set +e
  stop_attach
  if ((tgt_started)); then "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1; fi
  if ((istgt_started)); then "$repo/tests/testbed/istgt-target.sh" stop >/dev/null 2>&1; fi
  if ((topo_started)); then "$repo/tests/testbed/topology.sh" down "$topo"; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# report NAME OK: count and print an outcome; on failure the attach log's end.
report() {
  if (($2)); then
    echo "PASS: $1"
    passed=$((passed + 1))
  else
    echo "FAIL: $1"
    [[ ! -s $work/attach.log ]] || sed 's/^/    log: /' "$work/attach.log" | tail -n 15
    failed=$((failed + 1))
  fi
}

# expect FILE PATTERN...: every extended regex is in FILE.
expect() {
  local file=$1 pattern
  shift
  for pattern in "$@"; do
    grep -qE -- "$pattern" "$file" || { echo "    missing /$pattern/ in:"; sed 's/^/      /' "$file"; return 1; }
  done
}

in_ini() { ip netns exec "$TOPO_INI_NS" "$@"; }

eval "$("$repo/tests/testbed/topology.sh" up "$topo" 2)"
topo_started=1
mkdir -p "$work/tgt"
eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 64M --netns "$TOPO_TGT_NS" \
  --portal 198.18.1.1 --portal 198.18.2.1 --dir "$work/tgt")"
tgt_started=1
tgtadm_ctl() { tgtadm -C "$TGT_CTL" --lld iscsi "$@"; }
# A second LUN of another size, so that --luns is checked against two known LUNs.
truncate -s 32M "$work/tgt/lun2.img"
tgtadm_ctl --op new --mode logicalunit --tid 1 --lun 2 -b "$work/tgt/lun2.img"
# Discovery CHAP: an account bound without --tid is the one discovery sessions must use
# (tgt-admin's incomingdiscoveryuser).
tgtadm_ctl --op new --mode account --user "$disc_user" --password "$disc_secret"
tgtadm_ctl --op bind --mode account --user "$disc_user"

mkdir -p "$work/istgt"
eval "$("$repo/tests/testbed/istgt-target.sh" start --size 64M --netns "$TOPO_TGT_NS" \
  --portal 198.18.1.1 --portal 198.18.2.1 --dir "$work/istgt" \
  --discovery-chap "$disc_user:$disc_secret")"
istgt_started=1

printf '%s\n' "$disc_secret" >"$work/disc.secret"
printf 'not-the-secret-9\n' >"$work/wrong.secret"
chmod 600 "$work/disc.secret" "$work/wrong.secret"

# write_config IQN LUN SECRET_FILE ENTRY...: discovery CHAP from SECRET_FILE, one paths entry
# per ENTRY.
write_config() {
  local iqn=$1 lun=$2 secret_file=$3 entry
  shift 3
  {
    echo "initiator: {name: iqn.2026-11.org.iscsi-mpio:discovery-checks}"
    echo "target:"
    echo "  iqn: $iqn"
    echo "  lun: $lun"
    echo "  login_timeout: 5"
    echo "  discovery_auth: {method: chap, username: $disc_user, secret_file: \"$secret_file\"}"
    echo "paths:"
    for entry in "$@"; do echo "  - $entry"; done
    echo "nbd: {listen: \"unix:$work/lun.sock\", export: lun}"
    echo "control: {socket: \"$work/control.sock\"}"
  } >"$work/d.yaml"
}

status_json() { "$im_bin" status --json "$work/d.yaml" 2>/dev/null || echo '{"paths":[]}'; }

# attach_until_active N: start the attach in the initiator namespace; true once N paths are
# active (and no more exist).
attach_until_active() {
  local want=$1
  rm -f "$work/lun.sock"
  # Not through in_ini: $! must be the attach itself (ip netns exec execs it) for stop_attach.
  ip netns exec "$TOPO_INI_NS" "$im_bin" attach "$work/d.yaml" >"$work/attach.out" \
    2>"$work/attach.log" &
  im_pid=$!
  for _ in $(seq 150); do
    if [[ -S $work/lun.sock ]]; then
      local json
      json=$(status_json)
      if (($(jq '[.paths[] | select(.state == "active")] | length' <<<"$json") == want)); then
        (($(jq '.paths | length' <<<"$json") == want)) && return 0
        echo "    more paths than $want:"; jq -c '.paths[] | {path, state}' <<<"$json"
        return 1
      fi
    fi
    kill -0 "$im_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "    attach did not bring $want path(s) up"
  return 1
}

# discover_entry I PORT: the discover entry of path I (portal 198.18.I.1, source 198.18.I.2).
discover_entry() { echo "{discover: \"198.18.$1.1:$2\", source: 198.18.$1.2}"; }

echo "--- discovery-chap-wrong"
write_config "$TGT_IQN" "$TGT_LUN" "$work/wrong.secret" "$(discover_entry 1 "$TGT_PORT")"
ok=1
rc=0
in_ini timeout 30 "$im_bin" attach "$work/d.yaml" >"$work/attach.out" 2>"$work/attach.log" || rc=$?
((rc == 1)) || { echo "    exit $rc, wanted 1"; ok=0; }
expect "$work/attach.log" "discovery on 198\.18\.1\.1:$TGT_PORT from 198\.18\.1\.2 failed" \
  "authentication failure \(0201\)" "discovery authentication: check target.discovery_auth" || ok=0
report discovery-chap-wrong "$ok"

echo "--- discovery-chap-right"
write_config "$TGT_IQN" "$TGT_LUN" "$work/disc.secret" "$(discover_entry 1 "$TGT_PORT")"
ok=1
wwid=""
if attach_until_active 1; then
  wwid=$(status_json | jq -r .wwid)
  [[ $(status_json | jq -r '.paths[0].origin') == "discovered via 198.18.1.1:$TGT_PORT" ]] || ok=0
  qemu-io -f raw -r -c "read 0 4096" "nbd+unix:///lun?socket=$work/lun.sock" >"$work/qemu-io.out" 2>&1 ||
    { cat "$work/qemu-io.out"; ok=0; }
else
  ok=0
fi
stop_attach
report discovery-chap-right "$ok"

echo "--- one-reachable"
write_config "$ISTGT_IQN" "$ISTGT_LUN" "$work/disc.secret" "$(discover_entry 1 "$ISTGT_PORT")"
ok=1
if attach_until_active 1; then
  json=$(status_json)
  [[ $(jq -r '.paths[0].path' <<<"$json") == "198.18.1.1:$ISTGT_PORT from 198.18.1.2" ]] ||
    { echo "    path: $(jq -r '.paths[0].path' <<<"$json")"; ok=0; }
  [[ $(jq -r '.paths[0].origin' <<<"$json") == "discovered via 198.18.1.1:$ISTGT_PORT" ]] ||
    { echo "    origin: $(jq -r '.paths[0].origin' <<<"$json")"; ok=0; }
  "$im_bin" status "$work/d.yaml" >"$work/status.txt" 2>&1 || true
  sed 's/^/    /' "$work/status.txt"
  expect "$work/status.txt" "198\.18\.1\.1:$ISTGT_PORT from 198\.18\.1\.2 +active ready.*\[discovered via 198\.18\.1\.1:$ISTGT_PORT\]" \
    "discovery: via 198\.18\.1\.1:$ISTGT_PORT from source 198\.18\.1\.2: skipped 198\.18\.2\.1:$ISTGT_PORT \(leaves through ini2, not ini1 which holds 198\.18\.1\.2\)" || ok=0
  expect "$work/attach.log" "warning discovery via .*: skipped 198\.18\.2\.1:$ISTGT_PORT \(leaves through ini2" || ok=0
  # Only the reachable portal was logged in to.
  if grep -q "logging in to .* via 198\.18\.2\.1" "$work/attach.log"; then
    echo "    a session to the unreachable portal was started"
    ok=0
  fi
  # Data through the one discovered path lands in the target's backing file.
  head -c 65536 /dev/urandom >"$work/pattern"
  qemu-io -f raw -c "write -s $work/pattern 1048576 65536" \
    "nbd+unix:///lun?socket=$work/lun.sock" >"$work/qemu-io.out" 2>&1 || { cat "$work/qemu-io.out"; ok=0; }
  cmp <(dd if="$ISTGT_BACKING" bs=65536 skip=16 count=1 status=none) "$work/pattern" ||
    { echo "    the write is not in the backing file"; ok=0; }
else
  ok=0
fi
stop_attach
report one-reachable "$ok"

echo "--- check-config"
# The paths check-config probes are the ones attach would open.
ok=1
rc=0
in_ini timeout 60 "$im_bin" check-config "$work/d.yaml" >"$work/check.out" 2>&1 || rc=$?
sed 's/^/    /' "$work/check.out"
((rc == 0)) || { echo "    exit $rc"; ok=0; }
expect "$work/check.out" "discovery: via 198\.18\.1\.1:$ISTGT_PORT from source 198\.18\.1\.2: skipped 198\.18\.2\.1:$ISTGT_PORT" \
  "198\.18\.1\.1:$ISTGT_PORT from 198\.18\.1\.2" || ok=0
if grep -q "^198\.18\.2\.1" "$work/check.out"; then echo "    the skipped portal was probed"; ok=0; fi
rc=0
in_ini timeout 30 "$im_bin" check-config --offline "$work/d.yaml" >"$work/check.out" 2>&1 || rc=$?
((rc == 0)) || { echo "    --offline exit $rc:"; sed 's/^/    /' "$work/check.out"; ok=0; }
report check-config "$ok"

echo "--- two-sources-one-nic"
# Not discovery itself but the routing question it relies on: two sources whose packets to one
# portal both leave through ini1 are one path (check-config's warning), whatever interface
# holds each source address.
cat >"$work/one-nic.yaml" <<EOF
target: {iqn: $ISTGT_IQN}
paths:
  - {portal: "198.18.1.1:$ISTGT_PORT", source: 198.18.1.2}
  - {portal: "198.18.1.1:$ISTGT_PORT", source: 198.18.2.2}
EOF
ok=1
in_ini timeout 30 "$im_bin" check-config --offline "$work/one-nic.yaml" >"$work/one-nic.out" 2>&1 || true
expect "$work/one-nic.out" "leave through interface ini1: that is one path, not" || ok=0
report two-sources-one-nic "$ok"

echo "--- two-sources"
write_config "$ISTGT_IQN" "$ISTGT_LUN" "$work/disc.secret" "$(discover_entry 1 "$ISTGT_PORT")" \
  "$(discover_entry 2 "$ISTGT_PORT")"
ok=1
if attach_until_active 2; then
  json=$(status_json)
  jq -r '.paths[] | "\(.path) \(.origin)"' <<<"$json" | sort >"$work/paths.txt"
  sed 's/^/    /' "$work/paths.txt"
  expect "$work/paths.txt" "^198\.18\.1\.1:$ISTGT_PORT from 198\.18\.1\.2 discovered via 198\.18\.1\.1:$ISTGT_PORT$" \
    "^198\.18\.2\.1:$ISTGT_PORT from 198\.18\.2\.2 discovered via 198\.18\.2\.1:$ISTGT_PORT$" || ok=0
else
  ok=0
fi
stop_attach
report two-sources "$ok"

echo "--- discover-luns"
write_config "$TGT_IQN" "$TGT_LUN" "$work/disc.secret" "$(discover_entry 1 "$TGT_PORT")"
ok=1
rc=0
in_ini timeout 60 "$im_bin" discover "198.18.1.1:$TGT_PORT" --source 198.18.1.2 \
  --config "$work/d.yaml" --luns >"$work/luns.out" 2>&1 || rc=$?
sed 's/^/    /' "$work/luns.out"
((rc == 0)) || { echo "    exit $rc"; ok=0; }
[[ -n $wwid && $wwid != null ]] || { echo "    no WWID from the attach's status"; ok=0; }
expect "$work/luns.out" "^198\.18\.1\.1:$TGT_PORT,1 $TGT_IQN$" \
  "^  LUN 0  LUN 0 is not a block device" \
  "^  LUN 1  64M \(67108864 bytes, block 512\)  vendor IET  product VIRTUAL-DISK  WWID $wwid$" \
  "^  LUN 2  32M \(33554432 bytes, block 512\)  vendor IET  product VIRTUAL-DISK  WWID [0-9a-f]+$" || ok=0
lun2_wwid=$(sed -n 's/^  LUN 2 .* WWID //p' "$work/luns.out")
[[ $lun2_wwid != "$wwid" ]] || { echo "    LUN 2 has LUN 1's WWID"; ok=0; }
report discover-luns "$ok"

echo "--- rediscovery"
# A portal the target starts reporting while attached becomes a path of every LUN at the next
# rescan, over one new session; a portal it stops reporting keeps its working path. tgtd reports
# only the portal a discovery session came in on, so the second entry's discovery fails at
# attach (198.18.2.1 not listening) and succeeds once the portal is added with tgtadm.
tgt_portal2="198.18.2.1:$TGT_PORT"
tgtadm_ctl --op delete --mode portal --param portal="$tgt_portal2"
{
  echo "initiator: {name: iqn.2026-11.org.iscsi-mpio:discovery-checks}"
  echo "target:"
  echo "  iqn: $TGT_IQN"
  echo "  luns: all"
  echo "  login_timeout: 5"
  echo "  discovery_auth: {method: chap, username: $disc_user, secret_file: \"$work/disc.secret\"}"
  echo "paths:"
  echo "  - $(discover_entry 1 "$TGT_PORT")"
  echo "  - $(discover_entry 2 "$TGT_PORT")"
  echo "nbd: {listen: \"unix:$work/lun.sock\"}"
  echo "control: {socket: \"$work/control.sock\"}"
} >"$work/d.yaml"
# maps_active: active paths over every map (status --json of several LUNs is an array of maps).
maps_active() {
  "$im_bin" status --json "$work/d.yaml" 2>/dev/null |
    jq '[.[]? | .paths[] | select(.state == "active")] | length' 2>/dev/null || echo 0
}
maps_active_is() { [[ $(maps_active) == "$1" ]]; }
tgt_sessions() {
  tgtadm_ctl --mode target --op show |
    awk '/^Target 1:/ {t = 1; next} /^Target / {t = 0} t && /I_T nexus:/ {n++} END {print n + 0}'
}
ok=1
rm -f "$work/lun.sock"
ip netns exec "$TOPO_INI_NS" "$im_bin" attach "$work/d.yaml" >"$work/attach.out" \
  2>"$work/attach.log" &
im_pid=$!
# LUN 1 and LUN 2 (LUN 0 is tgtd's controller), one path each.
tb_wait_until 15 maps_active_is 2 || { echo "    attach did not bring 2 maps up"; ok=0; }
expect "$work/attach.log" "discovery on 198\.18\.2\.1:$TGT_PORT from 198\.18\.2\.2 failed" || ok=0
if ((ok)); then
  tgtadm_ctl --op new --mode portal --param portal="$tgt_portal2"
  answer=$("$im_bin" rescan "$work/d.yaml" 2>&1 || true)
  echo "    portal $tgt_portal2 added; iscsi-mpio rescan: $answer"
  tb_wait_until 20 maps_active_is 4 ||
    { echo "    the new portal did not become a path of both LUNs"; ok=0; }
  json=$("$im_bin" status --json "$work/d.yaml" 2>/dev/null || echo '[]')
  jq -r '.[] | .lun as $n | .paths[] | "LUN \($n) \(.path) \(.state) \(.origin)"' <<<"$json" |
    sed 's/^/    /'
  for lun in 1 2; do
    origin=$(jq -r ".[] | select(.lun == $lun) | .paths[1].origin" <<<"$json")
    [[ $origin == "discovered via $tgt_portal2" ]] || { echo "    LUN $lun path 2: $origin"; ok=0; }
  done
  # `paths` lists both LUNs' maps, each with both paths.
  "$im_bin" paths --json "$work/d.yaml" >"$work/paths.json" 2>&1 || true
  [[ $(jq -c '[.[] | [.lun, .index]]' "$work/paths.json") == '[[1,1],[1,2],[2,1],[2,2]]' ]] ||
    { echo "    paths --json:"; sed 's/^/      /' "$work/paths.json"; ok=0; }
  # Both LUNs share the new session: 2 at the target, not 3.
  sessions=$(tgt_sessions)
  echo "    sessions at the target: $sessions"
  ((sessions == 2)) || ok=0
  # I/O over the new path alone: path 1 failed by the operator, a write per LUN lands.
  "$im_bin" fail-path "$work/d.yaml" 1 >"$work/fail.out" 2>&1 ||
    { echo "    fail-path 1 refused: $(cat "$work/fail.out")"; ok=0; }
  new_path_commands() {
    "$im_bin" paths --json "$work/d.yaml" 2>/dev/null | jq "[.[] | select(.lun == $1 and .index == 2) | .commands] | add // 0"
  }
  head -c 65536 /dev/urandom >"$work/pattern"
  for lun in 1 2; do
    before=$(new_path_commands "$lun")
    backing=$TGT_BACKING
    ((lun == 1)) || backing=$work/tgt/lun2.img
    qemu-io -f raw -c "write -s $work/pattern 2097152 65536" \
      "nbd+unix:///lun$lun?socket=$work/lun.sock" >"$work/qemu-io.out" 2>&1 ||
      { cat "$work/qemu-io.out"; ok=0; }
    cmp <(dd if="$backing" bs=65536 skip=32 count=1 status=none) "$work/pattern" ||
      { echo "    LUN $lun: the write over the new path is not in the backing file"; ok=0; }
    after=$(new_path_commands "$lun")
    ((after > before)) || { echo "    LUN $lun: no command on the new path ($before, $after)"; ok=0; }
  done
  "$im_bin" reinstate-path "$work/d.yaml" 1 >/dev/null 2>&1 || true
  # No longer reported: the portal goes, its working session stays, and the log says so once.
  tgtadm_ctl --op delete --mode portal --param portal="$tgt_portal2"
  "$im_bin" rescan "$work/d.yaml" >/dev/null 2>&1 || true
  tb_wait_until 15 grep -q "discovery no longer reports its portal" "$work/attach.log" ||
    { echo "    no word of the portal that went"; ok=0; }
  sleep 2
  [[ $(maps_active) == 4 ]] || { echo "    a working path was dropped"; ok=0; }
  n=$(grep -c "198\.18\.2\.1:$TGT_PORT from 198\.18\.2\.2: discovery no longer reports" "$work/attach.log" || true)
  ((n == 1)) || { echo "    said $n times"; ok=0; }
  tgtadm_ctl --op new --mode portal --param portal="$tgt_portal2"
fi
stop_attach
report rediscovery "$ok"

echo "--- discover-verb-chap-wrong"
ok=1
rc=0
in_ini timeout 30 "$im_bin" discover "198.18.1.1:$TGT_PORT" --source 198.18.1.2 \
  --chap-username "$disc_user" --chap-secret-file "$work/wrong.secret" >"$work/verb.out" 2>&1 || rc=$?
((rc == 1)) || { echo "    exit $rc, wanted 1"; ok=0; }
expect "$work/verb.out" "authentication failure \(0201\)" "discovery authentication" || ok=0
report discover-verb-chap-wrong "$ok"

echo "--- discover-verb-usage"
# Credentials half given, or a secret file the configuration rules refuse: exit 2, no traffic.
ok=1
for args in "--chap-secret-file $work/disc.secret" "--chap-username $disc_user" \
  "--chap-username $disc_user --chap-secret-file relative.secret"; do
  rc=0
  # shellcheck disable=SC2086 # the options are split on purpose
  "$im_bin" discover 127.0.0.1:9 $args >"$work/usage.out" 2>&1 || rc=$?
  if ((rc != 2)); then
    echo "    discover $args: exit $rc, wanted 2:"
    sed 's/^/      /' "$work/usage.out"
    ok=0
  fi
done
expect "$work/usage.out" "discovery_auth.secret_file: expected an absolute file path" || ok=0
report discover-verb-usage "$ok"

echo "--- portal-and-discover"
cat >"$work/both.yaml" <<EOF
target: {iqn: $TGT_IQN}
paths:
  - portal: 198.18.1.1
    discover: 198.18.1.1
EOF
ok=1
rc=0
"$im_bin" attach "$work/both.yaml" >"$work/both.out" 2>&1 || rc=$?
((rc == 2)) || { echo "    exit $rc, wanted 2"; ok=0; }
expect "$work/both.out" "both\.yaml:4:5: paths\[0\]\.discover: give either 'portal' or 'discover', not both" || ok=0
report portal-and-discover "$ok"

echo "$passed passed, $failed failed"
((failed == 0))
