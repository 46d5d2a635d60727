#!/usr/bin/env bash
# The demo (README "Quick start", command 1, after install and build): a tgtd target on
# 127.0.0.1 with a temporary sparse LUN, `iscsi-mpio attach` in front of it in the foreground,
# and the commands to try against the NBD export. Ctrl-C stops everything and removes the files.
#
# Environment: BUILD (default <repo>/build), IM_BIN (default $BUILD/tools/iscsi-mpio/iscsi-mpio),
#              DEMO_SIZE (LUN size, default 1G).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo
readonly build=${BUILD:-$repo/build}
readonly im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
readonly size=${DEMO_SIZE:-1G}

if [[ ! -x $im_bin ]]; then
  echo "demo: $im_bin not found; build first (tools/setup.sh demo does both)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/iscsi-mpio-demo.XXXXXX)
readonly work
cleanup() {
  local status=$?
  set +e
  if [[ -n ${TGT_PID:-} ]]; then
    "$repo/tests/testbed/tgtd-target.sh" stop
    echo "demo: target stopped"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# Through a variable: `eval "$(cmd)"` would hide a failing start from set -e.
target_env=$("$repo/tests/testbed/tgtd-target.sh" start --dir "$work/target" --size "$size" --thin)
eval "$target_env"

readonly socket=$work/lun1.sock
readonly uri="nbd+unix:///lun1?socket=$socket"
cat >"$work/demo.yaml" <<YAML
# Written by tools/demo.sh; config/example.yaml documents every key.
target:
  iqn: $TGT_IQN
  lun: $TGT_LUN
paths:
  - {portal: "127.0.0.1:$TGT_PORT"}
nbd:
  listen: unix:$socket
  export: lun1
YAML

cat <<EOF

  iSCSI target (tgtd)  $TGT_IQN, LUN $TGT_LUN, portal 127.0.0.1:$TGT_PORT
                       backing file $TGT_BACKING ($size, sparse)
  configuration        $work/demo.yaml
  NBD export           $uri

  In another terminal, once iscsi-mpio reports the export ready:
    URI='$uri'
    nbdinfo "\$URI"
    qemu-img info "\$URI"
    nbdcopy "\$URI" /tmp/copy.img          # read the LUN into a file
    nbdcopy /path/to/disk.img "\$URI"      # write an image to the LUN
    mkdir -p /tmp/lun1 && nbdfuse /tmp/lun1 "\$URI" &   # the LUN as the file /tmp/lun1/nbd

  Ctrl-C stops iscsi-mpio and the target and removes the temporary files.

EOF

# In the foreground, so Ctrl-C reaches it; cleanup runs when it exits.
"$im_bin" attach "$work/demo.yaml"
