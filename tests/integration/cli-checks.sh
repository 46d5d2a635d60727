#!/usr/bin/env bash
# Command-line behaviour that needs no target: exit codes and the messages an admin relies on.
# Traffic goes only to closed ports on 127.0.0.1/127.0.0.2.
set -euo pipefail
im_bin=${IM_BIN:?path to iscsi-mpio}
work=$(mktemp -d /tmp/im-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# check NAME EXPECTED_EXIT PATTERN -- COMMAND...
check() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local rc=0
  timeout 30 "$@" >"$work/out" 2>&1 || rc=$?
  if [[ $rc -eq $want ]] && grep -qE "$pattern" "$work/out"; then
    echo "PASS: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name (exit $rc, wanted $want and /$pattern/):"
    sed 's/^/    /' "$work/out"
    failed=$((failed + 1))
  fi
}

cat >"$work/bad.yaml" <<'YAML'
target:
  iqn: iqn.2026-11.org.iscsi-mpio:test
  lun: 1
  lnu: 2
paths:
  - {portal: "127.0.0.1:99999"}
YAML
check bad-config 2 "bad.yaml:4:3: target.lnu: unknown key 'lnu'.*did you mean 'lun'" -- \
  "$im_bin" attach "$work/bad.yaml"
check bad-config-portal 2 "bad.yaml:6:.*paths\[0\].portal" -- "$im_bin" attach "$work/bad.yaml"

# Two paths through the loopback interface: warned as one path, then refused (ports closed).
cat >"$work/same.yaml" <<YAML
initiator: {name: iqn.2026-11.org.iscsi-mpio:cli}
target: {iqn: iqn.2026-11.org.iscsi-mpio:test, lun: 1}
paths:
  - {portal: "127.0.0.1:9"}
  - {portal: "127.0.0.2:9"}
nbd: {listen: "unix:$work/lun.sock", export: lun}
control: {socket: "$work/control.sock"}
YAML
check same-interface-warning 1 "both leave through interface lo: that is one path, not two" -- \
  "$im_bin" attach "$work/same.yaml"
check all-paths-refused 1 "login to 127.0.0.1:9 failed: .*refused; login to 127.0.0.2:9 failed" -- \
  "$im_bin" attach "$work/same.yaml"
check status-without-attach 1 "no running attach answers on $work/control.sock" -- \
  "$im_bin" status "$work/same.yaml"
check discover-bad-portal 2 "portal 'host:0'" -- "$im_bin" discover host:0
check unknown-verb 2 "" -- "$im_bin" frobnicate

echo "$passed passed, $failed failed"
((failed == 0))
