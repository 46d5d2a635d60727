# shellcheck shell=bash
# Helpers of the qemu-io checks across attach restarts (socket activation, the systemd unit),
# sourced beside tests/testbed/lib.sh, whose tb_report and tb_wait_until they use.

# fill_pattern FILE MIB: the first MIB MiB of FILE all 0x5a, which qemu-io's `read -P 0x5a`
# checks.
fill_pattern() {
  dd if=/dev/zero bs=1M count="$2" status=none | tr '\0' '\132' |
    dd of="$1" bs=1M conv=notrunc status=none
}

# pattern_reads MIB GAP_MS PAUSE_MS: sets qemu_args to qemu-io commands reading the pattern 1 MiB
# at a time over MIB MiB, GAP_MS between reads and PAUSE_MS more after the fourth.
qemu_args=()
pattern_reads() {
  local off
  qemu_args=()
  for ((off = 0; off < $1; off++)); do
    qemu_args+=(-c "read -P 0x5a ${off}M 1M")
    ((off != 3 || $3 == 0)) || qemu_args+=(-c "sleep $3")
    ((off == $1 - 1 || $2 == 0)) || qemu_args+=(-c "sleep $2")
  done
}

# pattern_reads_ok FILE MIB: qemu-io's output FILE shows all MIB reads done and none failed.
pattern_reads_ok() {
  [[ $(grep -c '^read 1048576/1048576 bytes' "$1") == "$2" ]] && ! grep -qiE 'fail|error' "$1"
}
