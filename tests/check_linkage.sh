#!/usr/bin/env bash
# The shared libraries the iscsi-mpio binary needs at start (ELF DT_NEEDED). Each one mapped adds
# the text its code touches, with the kernel's fault-around, to every attach's resident memory
# (docs/architecture.md, "Memory"): the C++ libraries are linked in, GnuTLS and libsystemd are
# opened with dlopen where they are used. A library not listed here is a change to that budget:
# link it statically or dlopen it, or add it here with the reason.
set -u
binary=${1:?path of the iscsi-mpio binary}
# libc and the dynamic loader; libnettle for CHAP's digests; libisal for CRC32C (header and data
# digests, RFC 7143 §11.2 / §13.1).
allowed='^(libc\.so\.6|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|libnettle\.so\.[0-9]+|libisal\.so\.[0-9]+)$'
# readelf on its own, so that its failure (no such file, not ELF) is the one reported.
dynamic=$(readelf -d "$binary" 2>&1) || {
  echo "linkage: cannot read the dynamic section of $binary: $dynamic"
  exit 1
}
needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' <<<"$dynamic")
[[ -n $needed ]] || { echo "linkage: $binary lists no needed library (not a dynamic ELF?)"; exit 1; }
status=0
while read -r lib; do
  if ! [[ $lib =~ $allowed ]]; then
    echo "linkage: $binary needs $lib: a shared library mapped into every attach (see $0)"
    status=1
  fi
done <<<"$needed"
((status == 0)) && echo "linkage: $(tr '\n' ' ' <<<"$needed")- all expected"
exit "$status"
