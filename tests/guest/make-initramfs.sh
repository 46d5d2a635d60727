#!/usr/bin/env bash
# Builds a QEMU test guest from Debian packages: the kernel of linux-image-amd64 (fetched with
# `apt-get download`, unpacked with `dpkg-deb -x`, kept in a cache outside the repository) and a
# busybox initramfs holding the modules the tests need, e2fsprogs and the given programs with
# the shared libraries `ldd` lists.
#
#   eval "$(tests/guest/make-initramfs.sh --out DIR --init FILE [options])"
#
# options:
#   --out DIR            where initramfs.cpio goes (made if missing)
#   --init FILE          the guest's /init (a busybox sh script)
#   --binary SRC:DEST    a program (stripped) and its shared libraries; repeatable
#   --file SRC:DEST      a file copied as is; repeatable
#   --module NAME        a kernel module (file name without .ko) loaded after the default ones
#                        (crc16 mbcache jbd2 crc32c_generic ext4 e1000 nbd); repeatable, in
#                        load order, dependencies first
#
# Prints, for eval: GUEST_KERNEL (vmlinuz in the cache) and GUEST_INITRD. The guest finds the
# modules as /lib/modules/NAME.ko and their names, in load order, in /etc/guest-modules.
# Cache: $IM_GUEST_CACHE (default /var/tmp/iscsi-mpio-guest), one directory per kernel package
# version; nothing is downloaded when it is already there. A module the cache lacks makes it
# fetch the package once more and add the missing modules.
#
# Facts relied on (Debian 12, linux-image-6.1.0-*-amd64): nbd, ext4 (with jbd2, mbcache, crc16),
# the crc32c that ext4 metadata checksums ask the crypto API for, and the e1000 NIC QEMU offers
# are modules, uncompressed .ko files without a modules.dep; busybox-static's busybox is static.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$here/../testbed/lib.sh"

readonly cache=${IM_GUEST_CACHE:-/var/tmp/iscsi-mpio-guest}
# Load order: dependencies first (each module's depends= field).
readonly default_modules=(crc16 mbcache jbd2 crc32c_generic ext4 e1000 nbd)

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "${1:-2}"
}

out='' init=''
binaries=() files=() modules=("${default_modules[@]}")
while (($#)); do
  case $1 in
    --out) out=${2:?}; shift 2 ;;
    --init) init=${2:?}; shift 2 ;;
    --binary) binaries+=("${2:?}"); shift 2 ;;
    --file) files+=("${2:?}"); shift 2 ;;
    --module) modules+=("${2:?}"); shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done
[[ -n $out && -n $init ]] || usage
[[ -f $init ]] || tb_die "no init script $init"
for tool in apt-get apt-cache dpkg-deb cpio ldd strip; do
  command -v "$tool" >/dev/null || tb_die "$tool not found (tools/install-deps.sh)"
done
[[ -x /bin/busybox ]] || tb_die "/bin/busybox not found (package busybox-static)"

# The versioned package linux-image-amd64 points at, e.g. linux-image-6.1.0-56-amd64.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

# download_package PACKAGE DIR: the .deb of PACKAGE into DIR. A stale package list names a
# version the mirror no longer has: refresh once and retry.
download_package() {
  local package=$1 dir=$2
  (cd "$dir" && apt-get download -qq -o APT::Sandbox::User=root "$package") >&2 && return 0
  apt-get update -qq >&2 || true
  (cd "$dir" && apt-get download -qq -o APT::Sandbox::User=root "$package") >&2
}

# copy_modules TREE DEST NAME...: each NAME.ko (or .ko.xz, decompressed) found under TREE into
# DEST as NAME.ko; fails naming the first module TREE lacks.
copy_modules() {
  local tree=$1 dest=$2 module path
  shift 2
  for module in "$@"; do
    path=$(find "$tree" -name "$module.ko" -o -name "$module.ko.xz" | head -n 1)
    [[ -n $path ]] || { echo "$module"; return 1; }
    if [[ $path == *.xz ]]; then
      xz -dc "$path" >"$dest/$module.ko.tmp"
    else
      cp "$path" "$dest/$module.ko.tmp"
    fi
    # Renamed into place: a build running at the same time never sees half a module.
    mv "$dest/$module.ko.tmp" "$dest/$module.ko"
  done
}

# fetch_kernel: fills $cache/PACKAGE with vmlinuz and the modules; prints that directory.
fetch_kernel() {
  local package
  package=$(kernel_package)
  if [[ -z $package ]]; then
    apt-get update -qq >&2 || true
    package=$(kernel_package)
  fi
  [[ -n $package ]] || tb_die "apt-cache does not know linux-image-amd64"
  local dir=$cache/$package module missing=()
  if [[ -f $dir/ready ]]; then
    for module in "${modules[@]}"; do
      [[ -f $dir/modules/$module.ko ]] || missing+=("$module")
    done
    if ((${#missing[@]} == 0)); then
      echo "$dir"
      return
    fi
  fi
  mkdir -p "$cache"
  local tmp lacking
  tmp=$(mktemp -d "$cache/fetch.XXXXXX")
  download_package "$package" "$tmp" || { rm -rf "$tmp"; tb_die "apt-get download $package failed"; }
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  if [[ -f $dir/ready ]]; then
    # A cached kernel lacking some of the modules asked for: add them.
    lacking=$(copy_modules "$tmp/x/lib/modules" "$dir/modules" "${missing[@]}") ||
      { rm -rf "$tmp"; tb_die "$package has no module $lacking"; }
  else
    mkdir -p "$tmp/kernel/modules"
    cp "$tmp"/x/boot/vmlinuz-* "$tmp/kernel/vmlinuz"
    lacking=$(copy_modules "$tmp/x/lib/modules" "$tmp/kernel/modules" "${modules[@]}") ||
      { rm -rf "$tmp"; tb_die "$package has no module $lacking"; }
    touch "$tmp/kernel/ready"
    rm -rf "$dir"
    mv "$tmp/kernel" "$dir"
  fi
  rm -rf "$tmp"
  echo "$dir"
}

# add_libraries ROOT PROGRAM: the shared libraries and loader PROGRAM needs, at their paths.
add_libraries() {
  local root=$1 program=$2 library
  for library in $(ldd "$program" 2>/dev/null |
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}'); do
    [[ -e $root$library ]] && continue
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
}

# add_binary ROOT SRC DEST: a stripped copy of SRC at DEST, with its libraries.
add_binary() {
  local root=$1 src=$2 dest=$3
  [[ -x $src ]] || tb_die "no program $src"
  mkdir -p "$root$(dirname "$dest")"
  strip -o "$root$dest" "$src" 2>/dev/null || cp "$src" "$root$dest"
  chmod 755 "$root$dest"
  add_libraries "$root" "$src"
}

kernel_dir=$(fetch_kernel)
mkdir -p "$out"
root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"  # the guest's /: mktemp's 0700 would lock out every user but root

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,lib/modules,proc,sys,dev,run,tmp,mnt}
cp /bin/busybox "$root/bin/busybox"
add_libraries "$root" /bin/busybox
for module in "${modules[@]}"; do
  cp "$kernel_dir/modules/$module.ko" "$root/lib/modules/"
done
echo "${modules[*]}" >"$root/etc/guest-modules"
# e2fsprogs under the names the tests call; mke2fs picks ext4 from its argv[0].
add_binary "$root" "$(command -v mke2fs)" /usr/sbin/mkfs.ext4
add_binary "$root" "$(command -v e2fsck)" /usr/sbin/fsck.ext4
add_binary "$root" "$(command -v resize2fs)" /usr/sbin/resize2fs
[[ ! -f /etc/mke2fs.conf ]] || cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"
for entry in ${binaries[@]+"${binaries[@]}"}; do
  add_binary "$root" "${entry%%:*}" "${entry#*:}"
done
for entry in ${files[@]+"${files[@]}"}; do
  mkdir -p "$root$(dirname "${entry#*:}")"
  cp "${entry%%:*}" "$root${entry#*:}"
done
cp "$init" "$root/init"
chmod 755 "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) \
  >"$out/initramfs.cpio"

tb_emit GUEST_KERNEL "$kernel_dir/vmlinuz" GUEST_INITRD "$out/initramfs.cpio"
