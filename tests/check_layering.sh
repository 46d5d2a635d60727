#!/usr/bin/env bash
# The pure protocol libraries (../shared/conventions.md, "layers with a boundary") must not
# include Asio, Boost or spdlog: they are tested as byte vectors and fuzzed without a network.
set -u
root=${1:?project root}
status=0
for dir in common/include initiator/scsi initiator/proto nbd-bridge/proto mpio/include; do
  [ -d "$root/$dir" ] || continue
  if hits=$(grep -rnE '#include *[<"](boost/|asio|spdlog)' "$root/$dir"); then
    echo "layering violation in $dir:"
    echo "$hits"
    status=1
  fi
done
[ $status -eq 0 ] && echo "layering ok"
exit $status
