#!/usr/bin/env bash
# Installs what iscsi-mpio needs on Debian 12, as root. Safe to run again: packages already
# present are left alone, and when nothing is missing apt is not touched at all.
#
#   tools/install-deps.sh            build + runtime + test peers + QEMU guest test +
#                                    benchmark plots + fuzz/sanitizer toolchain + ccache
#   tools/install-deps.sh --minimal  build + what `tools/demo.sh` needs at run time
set -euo pipefail

# Compiler and libraries. libboost1.81-dev by name: Debian's default libboost-dev (1.74) has an
# Asio whose C++20 coroutines do not compile with g++ 12; 1.81 replaces it (they conflict).
readonly build_packages=(g++ cmake ninja-build pkg-config libboost1.81-dev libspdlog-dev
  libcli11-dev libyaml-cpp-dev catch2 libnbd-dev libisal-dev nettle-dev libgnutls28-dev
  libsystemd-dev)
# The demo: a tgtd target to log in to and the NBD clients it suggests.
readonly runtime_packages=(tgt libnbd-bin python3 procps iproute2)
# Integration tests: a second target, the qemu-nbd/libiscsi peer, load and fault tools; curl
# (ops-checks.sh: metrics), openssl (unit.iscsi: CHAP digests computed by the openssl tool) and
# gnutls-bin (tls-checks.sh: certtool and psktool make the credentials); systemd
# (socket-activation.sh: systemd-socket-activate), systemd-container and mmdebstrap
# (systemd-unit.sh: a Debian root booted by systemd-nspawn); podman, runc and catatonit
# (podman-sidecar.sh: the Dockerfile built and run; runc because crun refuses a hybrid cgroup
# layout, catatonit for the pause image of `podman kube play`, python3-yaml for the pod it
# plays).
readonly peer_packages=(tgt istgt libiscsi-bin qemu-utils qemu-block-extra fio libnbd-bin nbdkit
  iproute2 nftables python3 python3-libnbd jq util-linux procps curl openssl gnutls-bin
  systemd systemd-container mmdebstrap podman runc catatonit python3-yaml)
# The guest test (tests/guest/): a QEMU TCG guest booting Debian's kernel package (fetched by
# the test itself) with busybox and e2fsprogs in a cpio initramfs.
readonly guest_packages=(qemu-system-x86 busybox-static e2fsprogs cpio)
# tools/bench: plots of the benchmark results.
readonly bench_packages=(gnuplot-nox)
# libFuzzer targets and the ASan/UBSan build; clang-format for the style check
# (tests/check_format.sh, CTest `format`).
readonly fuzz_packages=(clang-14 libclang-rt-14-dev clang-format)  # fuzz.sh calls clang-14 by name
# tools/run-tests.sh: a compile cache shared by the three trees it builds and kept across clones.
readonly test_build_packages=(ccache)

minimal=0
case ${1:-} in
  '') ;;
  --minimal) minimal=1 ;;
  -h | --help) sed -n '2,7{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  *) echo "usage: $0 [--minimal]" >&2; exit 2 ;;
esac

wanted=("${build_packages[@]}" "${runtime_packages[@]}")
((minimal)) ||
  wanted+=("${peer_packages[@]}" "${guest_packages[@]}" "${bench_packages[@]}" "${fuzz_packages[@]}"
    "${test_build_packages[@]}")

missing=()
for package in $(printf '%s\n' "${wanted[@]}" | sort -u); do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#wanted[@]} packages already installed"
  exit 0
fi
if ((EUID != 0)); then
  echo "install-deps: missing ${missing[*]}; run as root (sudo $0)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/install-deps.XXXXXX.log)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Use-Pty=0 "${missing[@]}"; } >"$log" 2>&1; then
  echo "install-deps: apt-get failed; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
rm -f "$log"
echo "install-deps: done"
