#!/usr/bin/env bash
# Builds, once, the Debian root the LIO guest runs targetcli from (tests/guest/lio-target.sh):
# `mmdebstrap --variant=minbase` of Debian 12 with targetcli-fb (which brings python3,
# python3-rtslib-fb and python3-configshell-fb) and dbus-daemon (targetcli 2.1.53 will not
# start without a D-Bus system bus to ask for tcmu-runner's backstores), made into an ext4 image without a journal that
# the guest mounts read-only from a virtio disk and enters with chroot. A disk, not a cpio: the
# guest reads only the files python imports (a few MB) instead of unpacking 150 MB into RAM at
# every boot.
#
#   eval "$(tests/guest/make-targetcli-root.sh)"    # sets GUEST_TARGETCLI_ROOT (the image)
#
# Cache: $IM_GUEST_CACHE (default /var/tmp/iscsi-mpio-guest), one file
# targetcli-root-KEY.ext4, KEY a hash of what goes in it (suite, packages, the exclusions and
# this recipe's version): a change to any of them builds a new image. Nothing is downloaded when
# it is there. The first build needs a Debian mirror (about 1 to 4 minutes, 150 MB of
# packages), mmdebstrap and mke2fs; as a user other than root, also fakeroot.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$here/../testbed/lib.sh"

readonly cache=${IM_GUEST_CACHE:-/var/tmp/iscsi-mpio-guest}
readonly suite=bookworm
readonly packages=targetcli-fb,dbus-daemon
# Documentation, manual pages and translations: a fifth of the root, never read by targetcli.
# Removed from the unpacked root, not excluded from dpkg: some packages' doc directories are
# symbolic links that dpkg then fails to unpack into.
readonly excluded=(usr/share/doc usr/share/man usr/share/locale usr/share/info)
readonly recipe=1  # bump when the image is made differently

case ${1:-} in
  '') ;;
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "usage: $0" >&2; exit 2 ;;
esac

key=$(printf '%s\n' "$recipe" "$suite" "$packages" "${excluded[@]}" | sha256sum | cut -c1-12)
readonly image=$cache/targetcli-root-$key.ext4
if [[ ! -f $image ]]; then
  for tool in mmdebstrap mke2fs tar; do
    command -v "$tool" >/dev/null || tb_die "$tool not found (tools/install-deps.sh)"
  done
  wrap=()
  if ((EUID != 0)); then
    command -v fakeroot >/dev/null || tb_die "fakeroot not found: needed to build $image as a user"
    wrap=(fakeroot --)
  fi
  mkdir -p "$cache"
  # One build at a time (tools/run-tests.sh starts one early, in the background): a second
  # caller waits for it, then finds the image.
  exec {lock}>"$cache/targetcli-root.lock"
  flock -w 900 "$lock" || tb_die "another build of $image held its lock for 15 minutes"
fi
if [[ ! -f $image ]]; then
  tmp=$(mktemp -d "$cache/targetcli-root.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "building the targetcli guest root $image (once)" >&2
  timeout 900 mmdebstrap --variant=minbase --include="$packages" \
    "$suite" "$tmp/root.tar" >"$tmp/mmdebstrap.log" 2>&1 ||
    { tail -n 20 "$tmp/mmdebstrap.log" >&2; tb_die "mmdebstrap failed"; }
  # The files' owners as the tar holds them, kept (fakeroot's record, for a user) into mke2fs.
  # No journal: the guest mounts it read-only, and the image is smaller. Room: the files plus
  # a fifth, for the inodes and the ext4 metadata.
  # shellcheck disable=SC2016  # expanded by that sh
  "${wrap[@]}" sh -c 'tmp=$1 && shift && mkdir "$tmp/root" &&
    tar -xpf "$tmp/root.tar" -C "$tmp/root" --numeric-owner && rm "$tmp/root.tar" &&
    for path; do rm -rf "${tmp:?}/root/$path"; done &&
    kib=$(du -sk "$tmp/root" | cut -f1) &&
    mke2fs -q -t ext4 -O ^has_journal -L targetcli-root -d "$tmp/root" "$tmp/image" "$((kib * 6 / 5 + 16384))k"' \
    sh "$tmp" "${excluded[@]}" >"$tmp/mke2fs.log" 2>&1 || { cat "$tmp/mke2fs.log" >&2; tb_die "mke2fs -d failed"; }
  chmod 644 "$tmp/image"
  # Renamed into place: a run starting at the same time never sees half an image.
  mv "$tmp/image" "$image"
fi
tb_emit GUEST_TARGETCLI_ROOT "$image"
