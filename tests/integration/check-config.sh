#!/usr/bin/env bash
# `iscsi-mpio check-config` against real tgtd targets on loopback (needs root for tgtd):
#   - two portals of one target, CHAP: exit 0, the table, both paths on `lo` flagged as one
#     path (a warning; --strict makes it exit 1), every session logged out afterwards;
#   - a path to a closed port: exit 1 naming the path;
#   - a wrong CHAP secret: exit 1, "authentication failure";
#   - a LUN the target does not have: exit 1, the LUNs it has;
#   - two targets whose LUNs have different identities: exit 1, "different devices", with and
#     without target.wwid;
#   - --offline: the local facts only, no traffic; the configurations of docs/kubernetes/ load;
#   - a bad configuration or command line: exit 2.
# Every tgtd started here is stopped through tests/testbed/tgtd-target.sh on every exit path.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo
readonly im_bin=${IM_BIN:?path to iscsi-mpio}
readonly testbed=$repo/tests/testbed
# shellcheck source=tests/testbed/lib.sh
source "$testbed/lib.sh"

work=$(mktemp -d /tmp/im-check-config.XXXXXX)
readonly work
passed=0
failed=0

stop_target() {
  local env_file=$1
  [[ -s $env_file ]] || return 0
  (
    # shellcheck disable=SC1090
    source "$env_file"
    "$testbed/tgtd-target.sh" stop
  ) || echo "could not stop the target of $env_file" >&2
}

cleanup() {
  local status=$? env_file
  set +e
  for env_file in "$work"/*.env; do
    [[ -e $env_file ]] && stop_target "$env_file"
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_target NAME OPTIONS...: a tgtd whose variables land in $work/NAME.env.
start_target() {
  local name=$1
  shift
  touch "$work/$name.env"
  "$testbed/tgtd-target.sh" start --dir "$work/$name" --size 64M "$@" >"$work/$name.env"
}

# target_var NAME VAR: one TGT_* variable of a started target.
target_var() {
  # shellcheck disable=SC1090
  (source "$work/$1.env" && printf '%s' "${!2}")
}

# check NAME EXPECTED_EXIT PATTERN... -- COMMAND...: every extended regex must match the output.
check() {
  local name=$1 want=$2
  shift 2
  local -a patterns=()
  while [[ $1 != -- ]]; do
    patterns+=("$1")
    shift
  done
  shift
  local rc=0 pattern ok=1 started=$SECONDS
  timeout 90 "$@" >"$work/out" 2>&1 || rc=$?
  [[ $rc -eq $want ]] || ok=0
  for pattern in "${patterns[@]}"; do
    grep -qE -- "$pattern" "$work/out" || { ok=0; echo "  missing /$pattern/"; }
  done
  if ((ok)); then
    echo "PASS: $name ($((SECONDS - started)) s)"
    passed=$((passed + 1))
  else
    echo "FAIL: $name (exit $rc, wanted $want):"
    failed=$((failed + 1))
  fi
  sed 's/^/    /' "$work/out"
}

# write_config FILE SECRET LUN WWID PORTAL...: a configuration with CHAP user `check`.
write_config() {
  local file=$1 secret=$2 lun=$3 wwid=$4
  shift 4
  {
    echo "initiator: {name: iqn.2026-11.org.iscsi-mpio:check-config}"
    echo "target:"
    echo "  iqn: iqn.2026-11.org.iscsi-mpio:test"
    echo "  lun: $lun"
    echo "  login_timeout: 5"
    [[ -z $wwid ]] || echo "  wwid: \"$wwid\""
    echo "  auth: {method: chap, username: check, secret: $secret}"
    echo "paths:"
    local portal
    for portal in "$@"; do echo "  - {portal: \"$portal\"}"; done
    echo "nbd: {listen: \"unix:$work/lun.sock\", export: lun}"
    echo "control: {socket: \"$work/control.sock\"}"
  } >"$file"
}

readonly chap_secret=check-secret-12
start_target one --portal 127.0.0.1 --portal 127.0.0.2 --chap "check:$chap_secret"
port_one=$(target_var one TGT_PORT)
ctl_one=$(target_var one TGT_CTL)

# --- every path fine ------------------------------------------------------------------------
write_config "$work/good.yaml" "$chap_secret" 1 "" "127.0.0.1:$port_one" "127.0.0.2:$port_one"
check all-paths-fine 0 \
  '^PATH +INTERFACE +MTU +CONNECT +LOGIN +WWID +SIZE +VERDICT$' \
  "^127\.0\.0\.1:$port_one +lo +[0-9]+ +ok [0-9.]+ms +ok +[0-9a-zS][^ ]+ +64M +ok, warning$" \
  "^127\.0\.0\.2:$port_one +lo +[0-9]+ +ok [0-9.]+ms +ok +[0-9a-zS][^ ]+ +64M +ok, warning$" \
  "^warning: paths 127\.0\.0\.1:$port_one and 127\.0\.0\.2:$port_one both leave through interface lo: that is one path, not two" \
  '^all 2 paths usable and consistent, 1 warning$' \
  -- "$im_bin" check-config "$work/good.yaml"
check strict-makes-warnings-fail 1 'one path, not two' -- \
  "$im_bin" check-config --strict "$work/good.yaml"

# Both sessions logged out: tgtd lists no I_T nexus for the target any more.
# A tgtadm that fails lists nothing either: its failure is a FAIL, not "no session".
if ! targets=$(tgtadm -C "$ctl_one" --lld iscsi --op show --mode target 2>&1) ||
  ! grep -q '^Target 1: ' <<<"$targets"; then
  echo "FAIL: sessions-logged-out (tgtadm could not list the target: ${targets:-no output})"
  failed=$((failed + 1))
elif nexus=$(grep -c 'I_T nexus: ' <<<"$targets" || true) && [[ $nexus == 0 ]]; then
  echo "PASS: sessions-logged-out"
  passed=$((passed + 1))
else
  echo "FAIL: sessions-logged-out ($nexus I_T nexus still at the target)"
  failed=$((failed + 1))
fi

# The WWID both paths showed: the device target.wwid must name below.
wwid=$(awk -v p="127.0.0.1:$port_one" '$1 == p { print $7 }' "$work/out")

# --- a path to a closed port ----------------------------------------------------------------
closed_port=$(tb_free_port "" 127.0.0.1)
write_config "$work/closed.yaml" "$chap_secret" 1 "" "127.0.0.1:$port_one" "127.0.0.1:$closed_port"
check closed-port 1 \
  "^127\.0\.0\.1:$closed_port +lo +[0-9]+ +refused +- +- +- +FAIL$" \
  "^error: path 127\.0\.0\.1:$closed_port: connect failed: Connection refused$" \
  '^1 of 2 paths reachable, 1 error' \
  -- "$im_bin" check-config "$work/closed.yaml"

# --- a wrong CHAP secret --------------------------------------------------------------------
write_config "$work/chap.yaml" wrong-secret-123 1 "" "127.0.0.1:$port_one"
check wrong-chap-secret 1 \
  "^127\.0\.0\.1:$port_one +lo +[0-9]+ +ok [0-9.]+ms +authentication failure \(0201\) +- +- +FAIL$" \
  "^error: path 127\.0\.0\.1:$port_one: login failed: .*authentication failure" \
  -- "$im_bin" check-config "$work/chap.yaml"

# --- a LUN the target does not have ---------------------------------------------------------
write_config "$work/lun.yaml" "$chap_secret" 7 "" "127.0.0.1:$port_one"
check missing-lun 1 \
  "^error: path 127\.0\.0\.1:$port_one: LUN 7 does not exist on the target \(the target has LUNs 0, 1\)$" \
  -- "$im_bin" check-config "$work/lun.yaml"

# --- two targets presenting different devices -----------------------------------------------
start_target two --portal 127.0.0.1 --chap "check:$chap_secret"
port_two=$(target_var two TGT_PORT)
tgtadm -C "$(target_var two TGT_CTL)" --lld iscsi --mode logicalunit --op update --tid 1 --lun 1 \
  --params scsi_id=other,scsi_sn=other1
write_config "$work/different.yaml" "$chap_secret" 1 "" "127.0.0.1:$port_one" "127.0.0.1:$port_two"
check different-devices 1 \
  "^127\.0\.0\.1:$port_one +lo .* ok, warning$" \
  "^127\.0\.0\.1:$port_two +lo .* OTHER DEVICE$" \
  "^error: paths present different devices: 127\.0\.0\.1:$port_one presents [^ ]+; 127\.0\.0\.1:$port_two presents [^ ]+ " \
  -- "$im_bin" check-config "$work/different.yaml"
write_config "$work/pinned.yaml" "$chap_secret" 1 "$wwid" "127.0.0.1:$port_two"
check not-target-wwid 1 \
  "^error: different devices: path 127\.0\.0\.1:$port_two presents [^ ]+, not target\.wwid $wwid " \
  -- "$im_bin" check-config "$work/pinned.yaml"

# --- --offline: no traffic, local facts only -------------------------------------------------
check offline 0 \
  "^127\.0\.0\.1:$port_one +lo +[0-9]+ +- +- +- +- +not probed$" \
  '^warning: paths .* both leave through interface lo' \
  '^configuration valid, 2 paths not probed, 1 warning$' \
  -- "$im_bin" check-config --offline "$work/good.yaml"
# The configurations of docs/kubernetes/ load (their secret files made up here); their
# portals are never contacted.
mkdir -m 0700 "$work/secrets"
printf 'initiator-secret-1\n' >"$work/secrets/chap-secret"
printf 'target-secret-22\n' >"$work/secrets/chap-target-secret"
chmod 0600 "$work/secrets"/*
for manifest in "$repo"/docs/kubernetes/*.yaml; do
  name=$(basename "$manifest" .yaml)
  # The block scalar under `config.yaml: |`, its indentation removed.
  awk '/^  config\.yaml: \|$/ { inside = 1; next }
       inside && /^    / { print substr($0, 5); next }
       inside && /^[[:space:]]*$/ { print ""; next }
       { inside = 0 }' "$manifest" |
    sed "s#/var/run/secrets/iscsi-mpio/#$work/secrets/#" >"$work/$name.yaml"
  check "kubernetes-$name" 0 'configuration valid, 2 paths not probed' -- \
    "$im_bin" check-config --offline "$work/$name.yaml"
done

# --- bad configuration and command line -----------------------------------------------------
printf 'target:\n  iqn: iqn.2026-11.org.iscsi-mpio:test\n  lunn: 1\npaths: []\n' >"$work/bad.yaml"
check bad-config 2 "bad\.yaml:3:3: target\.lunn: unknown key 'lunn'" -- \
  "$im_bin" check-config "$work/bad.yaml"
check missing-file 2 'nothing\.yaml' -- "$im_bin" check-config "$work/nothing.yaml"
check no-argument 2 'config is required' -- "$im_bin" check-config

echo "$passed passed, $failed failed"
((failed == 0))
