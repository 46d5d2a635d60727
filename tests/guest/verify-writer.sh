#!/bin/busybox sh
# shellcheck shell=sh
# The verifying writer of the guest's restart cases (tests/guest/guest-init.sh), for a guest
# root without fio. Busybox only.
#
#   verify-writer.sh run DIR POOL STOP LOG     write until the file STOP exists
#   verify-writer.sh check DIR POOL LOG        every file against what was last written to it
#   verify-writer.sh stall LOG T0 T1           the longest time between two operations from
#                                              the last one done before uptime T0 to the first
#                                              one done after T1 (a restart between T0 and T1)
#   verify-writer.sh median LOG                the median time between two operations
#
# run: operation N writes the 256 KiB slice N mod 48 of POOL (4 MiB of random bytes) to
# DIR/f(N mod 32) with fsync (so every operation reaches the device, flush included), reads the
# file back with O_DIRECT (from the device, not the page cache) and compares it with the slice,
# then appends "N FILE SLICE UPTIME" to LOG. An error (a failed write, read or comparison) is
# an "ERROR ..." line in LOG and exit status 1. Exit 0 when STOP appears.
set -u

slice() { dd if="$1" bs=64k skip=$(($2 * 4)) count=4 2>/dev/null; }

case $1 in
  run)
    dir=$2 pool=$3 stop=$4 log=$5
    mkdir -p "$dir" || exit 1
    n=0
    while [ ! -e "$stop" ]; do
      n=$((n + 1))
      file=f$((n % 32)) part=$((n % 48))
      if ! slice "$pool" "$part" | dd of="$dir/$file" bs=64k conv=fsync 2>/dev/null; then
        echo "ERROR write $n $file" >>"$log"
        exit 1
      fi
      if ! dd if="$dir/$file" bs=64k iflag=direct 2>/dev/null >"$dir.back"; then
        echo "ERROR read $n $file" >>"$log"
        exit 1
      fi
      if ! slice "$pool" "$part" | cmp -s - "$dir.back"; then
        echo "ERROR verify $n $file" >>"$log"
        exit 1
      fi
      echo "$n $file $part $(cut -d' ' -f1 /proc/uptime)" >>"$log"
    done
    exit 0
    ;;
  check)
    dir=$2 pool=$3 log=$4
    checked=0
    for k in $(seq 0 31); do
      part=$(awk -v f="f$k" '$2 == f {p = $3} END {print p}' "$log")
      [ -n "$part" ] || continue
      slice "$pool" "$part" | cmp -s - "$dir/f$k" || { echo "f$k differs from slice $part"; exit 1; }
      checked=$((checked + 1))
    done
    echo "$checked files equal their last write"
    ;;
  stall)
    awk -v t0="$3" -v t1="$4" '
      $1 ~ /^ERROR/ { next }
      $4 <= t0 { prev = $4; next }
      prev == "" || after { next }
      { if ($4 - prev > longest) longest = $4 - prev; prev = $4; if ($4 > t1) after = 1 }
      END { if (!after) print "none"; else printf "%.2f\n", longest }' "$2"
    ;;
  median)
    awk '$1 !~ /^ERROR/ { if (seen) print $4 - prev; prev = $4; seen = 1 }' "$2" | sort -n |
      awk '{ gap[NR] = $1 } END { if (NR == 0) print "none"; else printf "%.2f\n", gap[int((NR + 1) / 2)] }'
    ;;
  *)
    echo "usage: verify-writer.sh run|check|stall|median ..." >&2
    exit 2
    ;;
esac
