#!/usr/bin/env bash
# The layers of docs/architecture.md, "Layers": the pure libraries must not include Asio, Boost
# spdlog or GnuTLS (they are tested as byte vectors and fuzzed without a network), and the two sides
# of the block-device boundary must not include each other's headers.
set -u
root=${1:?project root}
status=0
# report DIR REGEX WHAT: every include in DIR matching REGEX is a violation.
report() {
  local dir=$1 regex=$2 what=$3 hits
  [ -d "$root/$dir" ] || { echo "layering: $dir is missing"; status=1; return; }
  if hits=$(grep -rnE "#include *[<\"]($regex)" "$root/$dir"); then
    echo "layering violation in $dir ($what):"
    echo "$hits"
    status=1
  fi
}
for dir in common/include common/blockdev/include initiator/scsi initiator/iscsi nbd-bridge/nbd \
  mpio/include; do
  report "$dir" 'boost/|asio|spdlog|gnutls/' "a pure library includes Asio, Boost, spdlog or GnuTLS"
done
report nbd-bridge "mpio/|iscsi/|iscsi_io/|scsi/" "the NBD side includes the iSCSI side"
report mpio "nbd/|nbd_server/|nbd_kernel/" "the iSCSI side includes the NBD side"
report common/blockdev/include "mpio/|nbd/|nbd_server/|nbd_kernel/|iscsi/|iscsi_io/|scsi/" \
  "the boundary includes a side"
[ $status -eq 0 ] && echo "layering ok"
exit $status
