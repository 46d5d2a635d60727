#!/usr/bin/env bash
# NBD over TLS (nbd.tls; NBD protocol "TLS support") against a tgtd on loopback, with libnbd's
# tools as clients:
#   x509-data        mode require, verify_peer, tcp: listener; certificates made by certtool:
#                    nbdinfo, then nbdcopy writes the whole export and reads it back
#                    (nbds://...?tls-certificates=DIR); sha256 of what was written, of what was
#                    read and of the target's backing file agree
#   plaintext-refused  a client without TLS against require is refused (NBD_REP_ERR_TLS_REQD)
#   no-client-cert   verify_peer: a client with the CA but no certificate is refused
#   untrusted-cert   verify_peer: a client certificate from another CA is refused
#   psk-data         mode on with a psktool keys file, over a unix socket: nbdinfo and nbdcopy
#                    (tls-psk-file=FILE&tls-username=U) move verified data
#   psk-plaintext    mode on also serves a client without TLS
#   wrong-psk        the right user with another key is refused
#   plaintext-warning  check-config warns about a tcp: listener beyond loopback without TLS
#
# Environment: BUILD (build tree), IM_BIN. Needs root (tgtd), certtool and psktool (gnutls-bin),
# nbdinfo and nbdcopy (libnbd-bin). Every wait is bounded; everything started here is stopped by
# PID on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}

for tool in tgtd certtool psktool nbdinfo nbdcopy sha256sum; do
  command -v "$tool" >/dev/null || { echo "missing $tool"; echo "0 passed, 1 failed"; exit 1; }
done
[[ -x $im_bin ]] || { echo "iscsi-mpio not found: $im_bin"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/im-tls.XXXXXX)
im_pid=''
tgt_started=0
passed=0
failed=0
report_log=$work/attach.log  # shown by a failing report()

cleanup() {
  local rc=$?
  trap - EXIT
  stop_attach
  if ((tgt_started)); then "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1 || true; fi
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}

stop_attach() {
  [[ -n $im_pid ]] || return 0
  if tb_running "$im_pid"; then
    kill -TERM "$im_pid" 2>/dev/null || true
    tb_wait_gone "$im_pid" 15 || kill -KILL "$im_pid" 2>/dev/null || true
  fi
  wait "$im_pid" 2>/dev/null || true
  im_pid=''
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---------------------------------------------------------------- credentials

# X.509 in qemu's layout (ca-cert.pem, server-cert.pem, server-key.pem) for the server; libnbd's
# layout (ca-cert.pem, client-cert.pem, client-key.pem) for the clients.
make_ca() { # DIR CN
  mkdir -p "$1"
  printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 30\n' "$2" >"$1/ca.info"
  certtool --generate-privkey --outfile "$1/ca-key.pem" 2>/dev/null
  certtool --generate-self-signed --load-privkey "$1/ca-key.pem" --template "$1/ca.info" \
    --outfile "$1/ca-cert.pem" 2>/dev/null
}
make_cert() { # CA_DIR KEY_OUT CERT_OUT TEMPLATE_TEXT
  local info
  info=$(mktemp "$work/info.XXXXXX")
  printf '%s\n' "$4" >"$info"
  certtool --generate-privkey --outfile "$2" 2>/dev/null
  certtool --generate-certificate --load-privkey "$2" --load-ca-certificate "$1/ca-cert.pem" \
    --load-ca-privkey "$1/ca-key.pem" --template "$info" --outfile "$3" 2>/dev/null
}

make_ca "$work/ca" "iscsi-mpio test CA"
make_ca "$work/rogue-ca" "some other CA"
mkdir -p "$work/server" "$work/client" "$work/no-cert" "$work/untrusted"
make_cert "$work/ca" "$work/server/server-key.pem" "$work/server/server-cert.pem" \
  "$(printf 'organization = iscsi-mpio tests\ncn = localhost\ndns_name = localhost\ndns_name = %s\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 30' "$(hostname)")"
cp "$work/ca/ca-cert.pem" "$work/server/"
client_template=$'cn = nbd client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 30'
make_cert "$work/ca" "$work/client/client-key.pem" "$work/client/client-cert.pem" "$client_template"
make_cert "$work/rogue-ca" "$work/untrusted/client-key.pem" "$work/untrusted/client-cert.pem" \
  "$client_template"
for dir in client no-cert untrusted; do cp "$work/ca/ca-cert.pem" "$work/$dir/"; done
chmod 600 "$work"/*/*-key.pem

psktool -u alice -p "$work/keys.psk" >/dev/null
psktool -u alice -p "$work/wrong.psk" >/dev/null
chmod 600 "$work/keys.psk" "$work/wrong.psk"

# ---------------------------------------------------------------- target and attach

eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 32M --dir "$work/tgt")"
tgt_started=1
size=$(stat -c %s "$TGT_BACKING")

# start_attach NBD_YAML: an attach of the LUN with that nbd: mapping.
start_attach() {
  cat >"$work/tls.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:tls-checks}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths: [{portal: "127.0.0.1:$TGT_PORT"}]
nbd: $1
control: {socket: "$work/control.sock"}
EOF
  rm -f "$work/attach.out"
  "$im_bin" attach "$work/tls.yaml" >"$work/attach.out" 2>"$work/attach.log" &
  im_pid=$!
  has_uri() { [[ -s $work/attach.out ]]; }
  tb_wait_until 30 has_uri
}

# copy_and_verify NAME URI: nbdcopy random data onto the whole export and back.
copy_and_verify() {
  local name=$1 uri=$2 ok=1 notes=()
  head -c "$size" /dev/urandom >"$work/image.in"
  rm -f "$work/image.out"
  nbdcopy --flush "$work/image.in" "$uri" 2>"$work/nbdcopy.err" ||
    { ok=0; notes+=("nbdcopy write: $(cat "$work/nbdcopy.err")"); }
  nbdcopy "$uri" "$work/image.out" 2>"$work/nbdcopy.err" ||
    { ok=0; notes+=("nbdcopy read: $(cat "$work/nbdcopy.err")"); }
  local sum_in sum_out sum_backing
  sum_in=$(sha256sum <"$work/image.in" | cut -d' ' -f1)
  sum_out=$(sha256sum <"$work/image.out" 2>/dev/null | cut -d' ' -f1 || true)
  sum_backing=$(head -c "$size" "$TGT_BACKING" | sha256sum | cut -d' ' -f1)
  [[ $sum_in == "$sum_out" && $sum_in == "$sum_backing" ]] ||
    { ok=0; notes+=("sha256 written $sum_in, read $sum_out, backing file $sum_backing"); }
  tb_report "$name" "$ok" "${notes[@]}"
  echo "    ($((size >> 20)) MiB each way, sha256 $sum_in)"
}

# refused NAME URI: nbdinfo fails against URI.
refused() {
  local name=$1 uri=$2 rc=0 out
  out=$(timeout 30 nbdinfo "$uri" 2>&1) || rc=$?
  tb_report "$name" "$((rc != 0))" "nbdinfo exited $rc: $out"
  echo "    (client: $(tail -n 1 <<<"$out"))"
}

# ---------------------------------------------------------------- X.509, require, verify_peer

if start_attach "{listen: \"unix:$work/lun.sock\", export: lun, tls: {mode: require, x509_dir: \"$work/server\", verify_peer: true}}"; then
  base="nbds+unix:///lun?socket=$work/lun.sock"
  out=$(timeout 30 nbdinfo --size "$base&tls-certificates=$work/client" 2>&1) || true
  if [[ $out == "$size" ]]; then
    copy_and_verify x509-data "$base&tls-certificates=$work/client"
  else
    tb_report x509-data 0 "nbdinfo --size: $out (wanted $size)"
  fi
  rc=0
  out=$(timeout 30 nbdinfo "nbd+unix:///lun?socket=$work/lun.sock" 2>&1) || rc=$?
  ok=$((rc != 0))
  grep -qi "TLS" <<<"$out" || ok=0
  tb_report plaintext-refused "$ok" "nbdinfo exited $rc: $out"
  refused no-client-cert "$base&tls-certificates=$work/no-cert"
  refused untrusted-cert "$base&tls-certificates=$work/untrusted"
  # Both refused by the server's handshake (the clients trust the server's certificate).
  refusals=$(grep -c "TLS handshake failed" "$work/attach.log" || true)
  ((refusals == 2)) ||
    tb_report x509-refused-at-server 0 "the server logged $refusals failed TLS handshakes, not 2"
else
  tb_report x509-attach 0 "the attach did not start"
fi
stop_attach

# ---------------------------------------------------------------- PSK, on

# The PSK username goes in the URI's authority (libnbd 1.14 has no tls-username parameter).
port=$(tb_free_port "" 127.0.0.1)
if start_attach "{listen: \"tcp:127.0.0.1:$port\", export: lun, tls: {mode: on, psk_file: \"$work/keys.psk\"}}"; then
  psk_uri="nbds://alice@127.0.0.1:$port/lun?tls-psk-file=$work/keys.psk"
  out=$(timeout 30 nbdinfo --size "$psk_uri" 2>&1) || true
  if [[ $out == "$size" ]]; then
    copy_and_verify psk-data "$psk_uri"
  else
    tb_report psk-data 0 "nbdinfo --size: $out (wanted $size)"
  fi
  out=$(timeout 30 nbdinfo --size "nbd://127.0.0.1:$port/lun" 2>&1) || true
  tb_report psk-plaintext "$([[ $out == "$size" ]] && echo 1 || echo 0)" "nbdinfo --size: $out"
  refusals_before=$(grep -c "TLS handshake failed" "$work/attach.log" || true)
  refused wrong-psk "nbds://alice@127.0.0.1:$port/lun?tls-psk-file=$work/wrong.psk"
  # Refused by the server's TLS handshake, not by anything on the client's side.
  refusals=$(grep -c "TLS handshake failed" "$work/attach.log" || true)
  ((refusals > refusals_before)) ||
    tb_report wrong-psk-at-server 0 "the server logged no failed TLS handshake"
else
  tb_report psk-attach 0 "the attach did not start"
fi
stop_attach

# ---------------------------------------------------------------- the warning

rc=0
cat >"$work/open.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:tls-checks}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths: [{portal: "127.0.0.1:$TGT_PORT"}]
nbd: {listen: "tcp:0.0.0.0:$(tb_free_port "" 127.0.0.1)"}
EOF
out=$(timeout 60 "$im_bin" check-config "$work/open.yaml" 2>&1) || rc=$?
ok=1
grep -q "warning: .*nbd.listen: .*without TLS" <<<"$out" || ok=0
tb_report plaintext-warning "$ok" "check-config exited $rc: $out"

echo "$passed passed, $failed failed"
((failed == 0))
