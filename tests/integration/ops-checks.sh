#!/usr/bin/env bash
# Daily operation of a running attach (issue "#5 daily operation"), against a tgtd on loopback
# with two paths to the same portal (source addresses 127.0.0.1 and 127.0.0.2):
#   paths-json        `paths --json` lists both paths with their fields
#   fail-path         `fail-path 1` under verified I/O: path 1 completes no more commands while
#                     I/O goes on through path 2 without error; `reinstate-path 1` brings it back
#   bad-ids           unknown path numbers, an ambiguous portal, malformed IDs: exit 1 or 2 and a
#                     message; unknown control requests get an error
#   metrics           GET /metrics is well-formed Prometheus text with the counters and states;
#                     other paths 404, other methods 405, an oversized request 431
#   json-log          every line of `--log-format json` parses with jq (an export name with
#                     quotes and a backslash checks the escaping)
#   second-attach     an attach on the same NBD socket or control socket exits 1 naming the
#                     running one, which keeps serving; stale socket files are replaced
#   limits            an attach with nbd.read_only, description, max_clients 2 and
#                     handshake_timeout 2: nbdinfo shows read-only and the description, a write
#                     fails with EPERM and leaves the backing file as it was, NBD_CMD_CACHE
#                     succeeds, a third client is
#                     refused with the limit's message while two keep reading, a client that
#                     says nothing is closed after the limit; the refusals are in the metrics
#   non-root          attach as user nobody, sockets in a directory nobody owns: serves I/O
#   detach            `iscsi-mpio detach` ends the attach: exit 0 once it has exited (status 0),
#                     no connection left at tgtd; a second detach finds no attach (exit 1)
#   shared-budget     two LUNs in one attach with nbd.total_buffer_mib 4, verified clients at
#                     queue depth 32 of up to 1 MiB on both: VmHWM grows by at most the budget
#                     plus one request per client plus 8 MiB, the waits are in the metrics
#
# Environment: BUILD (build tree), IM_BIN, EXERCISER. Needs root (tgtd, runuser), jq, curl,
# /usr/bin/python3. Every wait is bounded; everything started here is stopped by PID on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
build=${BUILD:-$repo/build}
im_bin=${IM_BIN:-$build/tools/iscsi-mpio/iscsi-mpio}
exerciser=${EXERCISER:-$build/tests/integration/nbd_exerciser}
python=/usr/bin/python3

for tool in jq curl tgtd runuser nbdinfo "$python"; do
  command -v "$tool" >/dev/null || { echo "missing $tool"; echo "0 passed, 1 failed"; exit 1; }
done
[[ -x $im_bin ]] || { echo "iscsi-mpio not found: $im_bin"; echo "0 passed, 1 failed"; exit 1; }
[[ -x $exerciser ]] ||
  { echo "nbd_exerciser not found: $exerciser"; echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/im-ops.XXXXXX)
chmod 755 "$work"  # user nobody must reach its own directory below
im_pid=''         # the attach under test
runuser_pid=''    # runuser running the non-root attach
ex_pid=''         # a background nbd_exerciser
tgt_started=0
passed=0
failed=0
report_log=$work/attach.log  # shown by a failing report()

# stop_pid PID: TERM, up to 15 s for a clean logout, then KILL. Returns the exit status when
# PID is our child, else 0.
stop_pid() {
  local pid=$1 rc=0
  [[ -n $pid ]] || return 0
  if tb_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    tb_wait_gone "$pid" 15 || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

# The attach runuser started: its only child.
runuser_child() { pgrep -P "$runuser_pid" | head -n 1; }

cleanup() {
  local rc=$?
  trap - EXIT
  if [[ -n $ex_pid ]]; then
    kill -TERM "$ex_pid" 2>/dev/null || true
    wait "$ex_pid" 2>/dev/null || true
  fi
  stop_pid "$im_pid" || true
  if [[ -n $runuser_pid ]]; then
    local child
    child=$(runuser_child || true)
    [[ -z $child ]] || stop_pid "$child" || true
    stop_pid "$runuser_pid" || true
  fi
  if ((tgt_started)); then "$repo/tests/testbed/tgtd-target.sh" stop >/dev/null 2>&1 || true; fi
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# expect NAME WANT_EXIT PATTERN COMMAND...: COMMAND exits WANT_EXIT within 30 s and its
# output (stdout and stderr) matches PATTERN. Sets $out to the output.
out=''
expect() {
  local name=$1 want=$2 pattern=$3
  shift 3
  local rc=0
  out=$(timeout 30 "$@" 2>&1) || rc=$?
  if ((rc == want)) && grep -qE -- "$pattern" <<<"$out"; then
    return 0
  fi
  echo "    $name: exit $rc (wanted $want), output: $out (wanted /$pattern/)"
  return 1
}

# control_request SOCKET LINE: what the attach answers to one raw request line.
control_request() {
  "$python" - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
sys.stdout.write(data.decode())
EOF
}

# ---------------------------------------------------------------- the target and the attach

eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 256M --dir "$work/tgt")"
tgt_started=1
metrics_port=$(tb_free_port "" 127.0.0.1)
# Quotes, a backslash and a space: the JSON log and the metrics labels must escape them (no
# single quote: the YAML below quotes it with those).
export_name='lun "ops" \ test'

# write_config FILE DIR [METRICS]: two paths to the one portal, sockets in DIR.
write_config() {
  local file=$1 dir=$2 metrics=${3:-}
  cat >"$file" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:ops-checks}
target: {iqn: $TGT_IQN, lun: $TGT_LUN, login_timeout: 5}
paths:
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.1}
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.2}
multipath: {polling_interval: 1, noop_out_interval: 1, noop_out_timeout: 2}
nbd: {listen: "unix:$dir/lun.sock", export: '$export_name'}
control: {socket: "$dir/control.sock"}
EOF
  [[ -z $metrics ]] || echo "metrics: {listen: \"$metrics\"}" >>"$file"
  chmod 644 "$file"
}
config=$work/ops.yaml
write_config "$config" "$work" "127.0.0.1:$metrics_port"

paths_json() { timeout 10 "$im_bin" paths --json "$1" 2>/dev/null || echo '[]'; }
active_paths() { paths_json "$1" | jq '[.[] | select(.state == "active")] | length'; }
both_active() { [[ $(active_paths "$1") == 2 ]]; }
# path_field CONFIG I FIELD: FIELD of path I (1-based).
path_field() { paths_json "$1" | jq -r ".[$(($2 - 1))].$3"; }

"$im_bin" --log-format json attach "$config" >"$work/attach.out" 2>"$work/attach.log" &
im_pid=$!
if ! tb_wait_until 30 both_active "$config"; then
  tb_report attach 0 "the attach did not bring both paths up"
  echo "$passed passed, $failed failed"
  exit 1
fi
uri=$(head -n 1 "$work/attach.out")

# ---------------------------------------------------------------- paths --json

check_paths_json() {
  local json ok=1
  json=$(paths_json "$config")
  jq -e --arg port "$TGT_PORT" '
    length == 2 and
    ([.[].index] == [1, 2]) and
    all(.[]; has("name") and has("state") and has("group") and has("priority") and
             has("in_flight") and has("iops") and has("commands") and has("bytes") and
             has("errors") and has("last_error")) and
    all(.[]; .state == "active" and .portal == "127.0.0.1:\($port)" and .commands > 0) and
    (.[0].name | endswith("from 127.0.0.1")) and (.[1].name | endswith("from 127.0.0.2"))
  ' <<<"$json" >/dev/null || ok=0
  local table
  table=$(timeout 10 "$im_bin" paths "$config" 2>&1) || ok=0
  grep -q "from 127.0.0.2" <<<"$table" || ok=0
  tb_report paths-json "$ok" "paths --json: $json" "paths: $table"
}
check_paths_json

# ---------------------------------------------------------------- fail-path under I/O

check_fail_path() {
  local ok=1 notes=()
  "$exerciser" --uri "$uri" --backing "$TGT_BACKING" --ops 1000000 --time-limit 14 \
    --max-len 256K >"$work/exerciser.log" 2>&1 &
  ex_pid=$!
  sleep 2
  local before after c2_before c2_after
  before=$(path_field "$config" 1 commands)
  sleep 1
  after=$(path_field "$config" 1 commands)
  ((after > before)) ||
    { ok=0; notes+=("path 1 carried no I/O before fail-path ($before -> $after)"); }

  expect fail-path-1 0 "^ok: path 127.0.0.1:$TGT_PORT from 127.0.0.1 failed" \
    "$im_bin" fail-path "$config" 1 || ok=0
  sleep 0.5  # commands already on path 1 complete normally
  before=$(path_field "$config" 1 commands)
  c2_before=$(path_field "$config" 2 commands)
  sleep 2
  after=$(path_field "$config" 1 commands)
  c2_after=$(path_field "$config" 2 commands)
  [[ $(path_field "$config" 1 state) == failed ]] || { ok=0; notes+=("path 1 is not failed"); }
  [[ $(path_field "$config" 1 last_error) == "failed by the operator" ]] ||
    { ok=0; notes+=("path 1 last_error: $(path_field "$config" 1 last_error)"); }
  ((after == before)) ||
    { ok=0; notes+=("failed path 1 still completed commands ($before -> $after)"); }
  ((c2_after > c2_before)) || { ok=0; notes+=("path 2 stopped too ($c2_before -> $c2_after)"); }
  # The metrics count the failover while the path is down.
  curl -s --max-time 5 "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.failed" || true
  grep -qE '^iscsi_mpio_path_failovers_total\{index="1",[^}]*\} 1$' "$work/metrics.failed" ||
    { ok=0; notes+=("no failover counted for path 1"); }
  grep -qE '^iscsi_mpio_path_state\{index="1",[^}]*state="failed"\} 1$' "$work/metrics.failed" ||
    { ok=0; notes+=("metrics do not show path 1 failed"); }

  expect reinstate-path-1 0 "^ok: path .* reinstated" "$im_bin" reinstate-path "$config" 1 || ok=0
  both_back() { [[ $(path_field "$config" 1 state) == active ]]; }
  tb_wait_until 10 both_back || { ok=0; notes+=("path 1 did not come back"); }
  before=$(path_field "$config" 1 commands)
  path1_moving() { (($(path_field "$config" 1 commands) > before)); }
  tb_wait_until 5 path1_moving || { ok=0; notes+=("path 1 carries no I/O after reinstate-path"); }

  local ex_rc=0
  wait "$ex_pid" || ex_rc=$?
  ex_pid=''
  if ((ex_rc != 0)) || ! grep -q " 0 mismatches" "$work/exerciser.log"; then
    ok=0
    notes+=("exerciser: exit $ex_rc, $(tail -n 2 "$work/exerciser.log")")
  fi
  tb_report fail-path "$ok" "${notes[@]}"
  echo "    (exerciser: $(grep -oE '[0-9]+ writes.*mismatches|longest I/O stall [0-9]+ ms' \
    "$work/exerciser.log" | paste -sd ' '))"
}
check_fail_path

# ---------------------------------------------------------------- bad IDs and requests

check_bad_ids() {
  local ok=1
  expect no-such-path 1 "^error: no path 9 \(paths: 1 127.0.0.1:$TGT_PORT from 127.0.0.1, 2 " \
    "$im_bin" fail-path "$config" 9 || ok=0
  expect not-an-id 2 "neither a path number .* nor a portal HOST:PORT" \
    "$im_bin" fail-path "$config" abc || ok=0
  expect zero 2 "path numbers start at 1" "$im_bin" reinstate-path "$config" 0 || ok=0
  expect ambiguous-portal 1 \
    "portal 127.0.0.1:$TGT_PORT is used by paths 1 and 2: give the path number" \
    "$im_bin" fail-path "$config" "127.0.0.1:$TGT_PORT" || ok=0
  expect unknown-portal 1 "no path to portal 127.0.0.9:3260" \
    "$im_bin" fail-path "$config" 127.0.0.9:3260 || ok=0
  expect not-failed 1 "was not failed by the operator \(it is active\)" \
    "$im_bin" reinstate-path "$config" 2 || ok=0
  expect missing-id 2 "id is required" "$im_bin" fail-path "$config" || ok=0
  write_config "$work/none.yaml" "$work/none"
  expect no-attach 1 "no running attach answers on $work/none/control.sock" \
    "$im_bin" fail-path "$work/none.yaml" 1 || ok=0
  local answer
  answer=$(control_request "$work/control.sock" "frobnicate" 2>&1) || true
  [[ $answer == "error: unknown request 'frobnicate' (requests: "* ]] ||
    { ok=0; echo "    unknown request answered: $answer"; }
  answer=$(control_request "$work/control.sock" "stats" 2>&1) || true
  jq -e '(.paths | length) == 2 and .nbd.requests > 0 and .paths[0].failovers == 1 and
         .paths[0].latency_seconds.count > 0' <<<"$answer" >/dev/null ||
    { ok=0; echo "    stats: $answer"; }
  # Nothing of the above changed a path.
  both_active "$config" || { ok=0; echo "    a path is no longer active"; }
  tb_report bad-ids "$ok"
}
check_bad_ids

# ---------------------------------------------------------------- metrics

check_metrics() {
  local ok=1 notes=()
  local headers=$work/metrics.headers body=$work/metrics.txt
  curl -s --max-time 5 -D "$headers" -o "$body" "http://127.0.0.1:$metrics_port/metrics" ||
    { ok=0; notes+=("curl failed"); }
  grep -q "^HTTP/1.0 200 OK" "$headers" || { ok=0; notes+=("status: $(head -n 1 "$headers")"); }
  grep -qi "^Content-Type: text/plain; version=0.0.4" "$headers" ||
    { ok=0; notes+=("content type"); }
  # Well-formed: every line a HELP/TYPE comment or `name{labels} value`, families contiguous,
  # histogram buckets cumulative with +Inf equal to _count; and the values we expect.
  local check
  if ! check=$("$python" - "$body" "$TGT_PORT" 2>&1 <<'EOF'
import math, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
port = sys.argv[2]
assert text.endswith("\n"), "no final newline"
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
sample_re = re.compile(rf'^({name})(\{{(?:{label})(?:,{label})*\}})? (\S+)$')
comment_re = re.compile(rf'^# (HELP|TYPE) ({name}) (.*)$')
families, samples, current = {}, [], None
for line in text.splitlines():
    m = comment_re.match(line)
    if m:
        if m.group(1) == "TYPE":
            assert m.group(2) not in families, "family twice: " + m.group(2)
            assert m.group(3) in ("counter", "gauge", "histogram"), line
            current = m.group(2)
            families[current] = m.group(3)
        continue
    m = sample_re.match(line)
    assert m, "malformed line: " + repr(line)
    value = float(m.group(3))
    assert not math.isnan(value), line
    assert m.group(1).startswith(current), "sample outside its family: " + line
    labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
    samples.append((m.group(1), labels, value))

def values(metric, **want):
    return [v for n, l, v in samples if n == metric and all(l.get(k) == w for k, w in want.items())]

for index, source in (("1", "127.0.0.1"), ("2", "127.0.0.2")):
    path = f"127.0.0.1:{port} from {source}"
    assert values("iscsi_mpio_path_state", index=index, path=path, state="active") == [1], index
    assert sum(values("iscsi_mpio_path_state", index=index)) == 1, "one state per path"
    assert values("iscsi_mpio_path_commands_total", index=index)[0] > 0
    assert values("iscsi_mpio_path_bytes_total", index=index)[0] > 0
    assert values("iscsi_mpio_path_errors_total", index=index) == [0]
    assert len(values("iscsi_mpio_path_iops", index=index)) == 1
    assert len(values("iscsi_mpio_path_in_flight", index=index)) == 1
    buckets = [(l["le"], v) for n, l, v in samples
               if n == "iscsi_mpio_path_command_latency_seconds_bucket" and l["index"] == index]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets not cumulative"
    assert buckets[-1][0] == "+Inf"
    count = values("iscsi_mpio_path_command_latency_seconds_count", index=index)
    assert count == [buckets[-1][1]] and count[0] > 0, "histogram count"
    assert values("iscsi_mpio_path_command_latency_seconds_sum", index=index)[0] > 0
assert values("iscsi_mpio_path_failovers_total", index="1") == [1]
assert values("iscsi_mpio_path_failovers_total", index="2") == [0]
assert values("iscsi_mpio_nbd_requests_total")[0] > 0
assert values("iscsi_mpio_nbd_errors_total") == [0]
assert len(values("iscsi_mpio_requests_in_flight")) == 1
assert 0 <= values("iscsi_mpio_nbd_buffer_bytes")[0] <= 2 * (32 << 20), "buffer bound"
assert values("iscsi_mpio_lun_info", export='lun \\"ops\\" \\\\ test') == [1], "escaped label"
assert families["iscsi_mpio_path_command_latency_seconds"] == "histogram"
print(f"{len(samples)} samples in {len(families)} families")
EOF
  ); then
    ok=0
    notes+=("exposition: $check")
  fi
  local code
  code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/")
  [[ $code == 404 ]] || { ok=0; notes+=("GET / gave $code"); }
  code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST \
    "http://127.0.0.1:$metrics_port/metrics")
  [[ $code == 405 ]] || { ok=0; notes+=("POST gave $code"); }
  # A head that never ends is cut off at 8 KiB, not buffered without bound.
  local big
  big=$("$python" - "$metrics_port" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
try:
    s.sendall(b"GET /metrics HTTP/1.0\r\nX-Filler: " + b"x" * 20000)
except OSError:
    pass
print(s.recv(200).split(b"\r\n")[0].decode())
EOF
  ) || true
  [[ $big == "HTTP/1.0 431 "* ]] || { ok=0; notes+=("oversized request: $big"); }
  tb_report metrics "$ok" "${notes[@]}"
  ((ok == 0)) || echo "    ($check)"
}
check_metrics

# ---------------------------------------------------------------- second attach

check_second_attach() {
  local ok=1
  # Same NBD socket, its own control socket; then the other way round.
  write_config "$work/second-nbd.yaml" "$work"
  sed -i "s#$work/control.sock#$work/other.control#" "$work/second-nbd.yaml"
  local running="another iscsi-mpio attach is running on the"
  expect same-nbd-socket 1 "$running NBD socket $work/lun.sock \(pid $im_pid: .*attach $config\)" \
    "$im_bin" attach "$work/second-nbd.yaml" || ok=0
  write_config "$work/second-control.yaml" "$work"
  sed -i "s#$work/lun.sock#$work/other.sock#" "$work/second-control.yaml"
  expect same-control-socket 1 "$running control socket $work/control.sock \(pid $im_pid" \
    "$im_bin" attach "$work/second-control.yaml" || ok=0
  # Refused before logging in: the first attach's sessions are untouched.
  grep -q "logging in" <<<"$out" && { ok=0; echo "    the second attach logged in first"; }
  both_active "$config" || { ok=0; echo "    the first attach lost a path"; }
  "$exerciser" --uri "$uri" --backing "$TGT_BACKING" --ops 100 --max-len 64K \
    >"$work/exerciser2.log" 2>&1 || { ok=0; echo "    the first attach no longer serves"; }

  # A clean stop removes the control socket; stale files of a killed attach are replaced.
  local rc=0
  stop_pid "$im_pid" || rc=$?
  im_pid=''
  ((rc == 0)) || { ok=0; echo "    SIGTERM: exit $rc"; }
  [[ ! -e $work/control.sock ]] || { ok=0; echo "    control socket left behind"; }
  "$python" - "$work/lun.sock" "$work/control.sock" <<'EOF'
import socket, sys
for path in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # bound and closed without unlink: what a SIGKILLed attach leaves
    s.close()
EOF
  "$im_bin" --log-format json attach "$config" >"$work/attach.out" 2>>"$work/attach.log" &
  im_pid=$!
  tb_wait_until 30 both_active "$config" || { ok=0; echo "    no attach over stale socket files"; }
  tb_report second-attach "$ok"
}
check_second_attach

# ---------------------------------------------------------------- JSON log

check_json_log() {
  local ok=1 lines bad verdicts
  lines=$(wc -l <"$work/attach.log")
  # One verdict per line, GOOD or BAD: a line that is not JSON, not an object, or whose time,
  # level or message is missing or of another type is BAD (the types are tested before the
  # values, so no line can make jq itself fail). Should jq fail anyway, the check fails: a
  # verdict missing is not a line that passed.
  if ! verdicts=$(jq -R -r 'fromjson? // "not json" |
          if type == "object" and (.time | type) == "string" and (.level | type) == "string" and
             (.message | type) == "string" and keys == ["level","message","time"] and
             (.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")) and
             (.level | IN("trace","debug","info","warn","error","critical"))
          then "GOOD" else "BAD" end' "$work/attach.log"); then
    ok=0
    verdicts=''
  fi
  bad=$(grep -c '^BAD$' <<<"$verdicts" || true)
  (($(grep -c '^GOOD$' <<<"$verdicts" || true) == lines)) || ok=0
  ((lines > 10 && bad == 0)) || ok=0
  # The export name came back unchanged through the escaping.
  jq -r .message "$work/attach.log" | grep -qF "serving export 'lun \"ops\" \\ test'" || ok=0
  jq -r .message "$work/attach.log" | grep -q "control: fail-path 1: path .* failed" || ok=0
  tb_report json-log "$ok" "$lines lines, $bad not well-formed"
}
check_json_log

# ---------------------------------------------------------------- detach

check_detach() {
  local ok=1 out rc=0 conns
  out=$("$im_bin" detach "$config" 2>&1) || { ok=0; echo "    detach: $out"; }
  grep -q "^ok: detaching: logging out (pid $im_pid)" <<<"$out" ||
    { ok=0; echo "    detach answered: $out"; }
  grep -q '^detached$' <<<"$out" || { ok=0; echo "    detach returned before the end"; }
  tb_running "$im_pid" && { ok=0; echo "    the attach still runs after detach"; }
  wait "$im_pid" || rc=$?
  im_pid=''
  ((rc == 0)) || { ok=0; echo "    the attach exited $rc"; }
  conns=$(tgtadm -C "$TGT_CTL" --lld iscsi --op show --mode conn --tid 1 | grep -c -i initiator ||
    true)
  ((conns == 0)) || { ok=0; echo "    $conns connection(s) left at the target"; }
  local again
  again=$("$im_bin" detach "$config" 2>&1) && { ok=0; echo "    a second detach succeeded"; }
  tb_report detach "$ok" "$(head -n 1 <<<"$out")" "second: $again"
}
check_detach

# ---------------------------------------------------------------- limits

check_limits() {
  local ok=1 dir=$work/limits port
  mkdir -p "$dir"
  port=$(tb_free_port "" 127.0.0.1)
  write_config "$dir/limits.yaml" "$dir" "127.0.0.1:$port"
  sed -i "s#^nbd: {#nbd: {read_only: true, description: 'ops read-only view', max_clients: 2, \
handshake_timeout: 2, #" "$dir/limits.yaml"
  "$im_bin" attach "$dir/limits.yaml" >"$dir/attach.out" 2>"$dir/attach.log" &
  local pid=$!
  if ! tb_wait_until 30 both_active "$dir/limits.yaml"; then
    stop_pid "$pid" || true
    tb_report limits 0 "the attach did not come up" "$(tail -n 5 "$dir/attach.log")"
    return
  fi
  local uri sum_before sum_after
  uri=$(head -n 1 "$dir/attach.out")
  expect nbdinfo 0 'is_read_only: true' nbdinfo "$uri" || ok=0
  grep -qF 'description: ops read-only view' <<<"$out" ||
    { ok=0; echo "    nbdinfo shows no description: $out"; }

  sum_before=$(md5sum <"$TGT_BACKING")
  # libnbd's strict mode would refuse these itself (the export says read-only): off, so the
  # server answers them.
  expect write-eperm 0 'write: .*EPERM.* trim: .*EPERM.* zero: .*EPERM' "$python" - "$uri" \
    <<'EOF' || ok=0
import nbd, sys
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(sys.argv[1])
for name, op in (("write", lambda: h.pwrite(b"x" * 4096, 0)),
                 ("trim", lambda: h.trim(4096, 0)),
                 ("zero", lambda: h.zero(4096, 0))):
    try:
        op()
        print(name, "succeeded")
    except nbd.Error as e:
        print(f"{name}: {e}", end=" ")
EOF
  grep -q succeeded <<<"$out" && { ok=0; echo "    a write succeeded: $out"; }
  # NBD_CMD_CACHE (PRE-FETCH(16), or answered at once where the LU refuses it) on a read-only
  # export.
  expect cache 0 'cache ok' "$python" - "$uri" <<'EOF' || ok=0
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert h.can_cache()
h.cache(1 << 20, 0)
h.cache(1 << 20, 0)
print("cache ok")
EOF
  sum_after=$(md5sum <"$TGT_BACKING")
  [[ $sum_before == "$sum_after" ]] || { ok=0; echo "    the backing file changed"; }

  # Two clients hold their connections; the third is refused with the limit's message (libnbd
  # says "server policy prevents NBD_OPT_GO" and logs the server's message as debug; qemu
  # prints it) and the two go on reading.
  expect max-clients 0 'third: .*policy prevents.*too many clients.*at most 2' \
    "$python" - "$uri" <<'EOF' || ok=0
import nbd, sys
held = []
for _ in range(2):
    h = nbd.NBD()
    h.connect_uri(sys.argv[1])
    held.append(h)
debug = []
try:
    third = nbd.NBD()
    third.set_debug(True)
    third.set_debug_callback(lambda context, msg: debug.append(msg))
    third.connect_uri(sys.argv[1])
    print("third: connected")
except nbd.Error as e:
    print("third:", e.string, [m for m in debug if "too many" in m])
for h in held:
    h.pread(65536, 0)
print("two still read")
EOF
  grep -q 'two still read' <<<"$out" || { ok=0; echo "    the two clients stopped reading"; }

  # A client that connects, reads the greeting and says nothing is closed after 2 s.
  expect silent-client 0 'closed after [0-9.]+ s' "$python" - "$dir/lun.sock" <<'EOF' || ok=0
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(15)
s.connect(sys.argv[1])
start = time.monotonic()
data = b""
while chunk := s.recv(4096):
    data += chunk
took = time.monotonic() - start
print(f"greeting {len(data)} bytes, closed after {took:.1f} s")
sys.exit(0 if len(data) == 18 and 1.5 <= took <= 6 else 1)
EOF
  grep -q "did not finish the handshake within 2000 ms" "$dir/attach.log" ||
    { ok=0; echo "    no log line for the silent client"; }

  local metrics
  metrics=$(curl -s --max-time 10 "http://127.0.0.1:$port/metrics" || true)
  grep -q '^iscsi_mpio_nbd_refused_total{reason="max_clients"} 1$' <<<"$metrics" ||
    { ok=0; echo "    max_clients refusal not counted"; }
  grep -q '^iscsi_mpio_nbd_refused_total{reason="handshake_timeout"} 1$' <<<"$metrics" ||
    { ok=0; echo "    handshake timeout not counted"; }
  local rc=0
  stop_pid "$pid" || rc=$?
  ((rc == 0)) || { ok=0; echo "    attach exited $rc"; }
  tb_report limits "$ok"
}
check_limits

# ---------------------------------------------------------------- shared payload budget

# status_kib PID FIELD: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# Two LUNs in one attach (target.luns) with nbd.total_buffer_mib 4 and client_buffer_mib 16,
# a verified client on each at queue depth 32 with requests up to 1 MiB: the attach's VmHWM
# grows by at most the shared budget, plus the one request per client it grants above it
# (2 x 1 MiB), plus 8 MiB of slack (heap, session and socket bookkeeping). Each client alone
# could hold 16 MiB in flight and as much kept, so without the shared budget the two would go
# well beyond it. Every byte is checked against the LUN's backing file; the waits are counted
# in the metrics.
check_shared_budget() {
  local ok=1 dir=$work/budget port backing2=$work/tgt/budget-lun2.img
  mkdir -p "$dir"
  truncate -s 64M "$backing2"
  if ! tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun 2 \
    -b "$backing2"; then
    tb_report shared-budget 0 "tgtadm could not add LUN 2"
    return
  fi
  port=$(tb_free_port "" 127.0.0.1)
  cat >"$dir/budget.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:ops-checks}
target: {iqn: $TGT_IQN, luns: [$TGT_LUN, 2], login_timeout: 5}
paths: [{portal: "127.0.0.1:$TGT_PORT"}]
nbd: {listen: "unix:$dir/luns.sock", client_buffer_mib: 16, total_buffer_mib: 4}
control: {socket: "$dir/luns.control"}
metrics: {listen: "127.0.0.1:$port"}
EOF
  "$im_bin" attach "$dir/budget.yaml" >"$dir/attach.out" 2>"$dir/attach.log" &
  local pid=$! lun1_uri lun2_uri
  two_exports() { (($(grep -c '^nbd' "$dir/attach.out") == 2)); }
  if ! tb_wait_until 30 two_exports; then
    stop_pid "$pid" || true
    report_log=$dir/attach.log tb_report shared-budget 0 "the attach did not serve two exports"
    tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op delete --tid 1 --lun 2 || true
    return
  fi
  lun1_uri=$(grep "/lun$TGT_LUN?" "$dir/attach.out")
  lun2_uri=$(grep '/lun2?' "$dir/attach.out")
  local hwm_before hwm_after
  hwm_before=$(status_kib "$pid" VmHWM)
  local -a ex_pids=()
  "$exerciser" --uri "$lun1_uri" --backing "$TGT_BACKING" --seed 31 --ops 1000000 \
    --time-limit 5 --queue-depth 32 --max-len 1M --span 64M >"$dir/exerciser1.log" 2>&1 &
  ex_pids+=($!)
  "$exerciser" --uri "$lun2_uri" --backing "$backing2" --seed 32 --ops 1000000 \
    --time-limit 5 --queue-depth 32 --max-len 1M --span 64M >"$dir/exerciser2.log" 2>&1 &
  ex_pids+=($!)
  local n=1 ex
  for ex in "${ex_pids[@]}"; do
    wait "$ex" || { ok=0; echo "    LUN client $n: $(tail -n 2 "$dir/exerciser$n.log")"; }
    n=$((n + 1))
  done
  hwm_after=$(status_kib "$pid" VmHWM)
  local grown=$((hwm_after - hwm_before)) bound=$(((4 + 2 + 8) * 1024)) waits
  echo "    VmHWM $hwm_before KiB before the clients, $hwm_after KiB after" \
    "(+$grown KiB, bound $bound KiB)"
  ((grown <= bound)) || { ok=0; echo "    VmHWM grew by $grown KiB, above $bound KiB"; }
  # One sample per LUN, every one the listener's count.
  waits=$(curl -s --max-time 10 "http://127.0.0.1:$port/metrics" |
    awk '$1 ~ /^iscsi_mpio_nbd_buffer_waits_total/ {print $2; exit}')
  echo "    clients held back for the shared budget: ${waits:-?} times;" \
    "$(grep -ho 'PASS.*mismatches' "$dir"/exerciser?.log | tr '\n' ' ')"
  ((${waits:-0} > 0)) || { ok=0; echo "    no wait counted: the budget was never reached"; }
  local rc=0
  stop_pid "$pid" || rc=$?
  ((rc == 0)) || { ok=0; echo "    attach exited $rc"; }
  tgtadm -C "$TGT_CTL" --lld iscsi --mode logicalunit --op delete --tid 1 --lun 2 || ok=0
  rm -f "$backing2"
  report_log=$dir/attach.log tb_report shared-budget "$ok"
}
check_shared_budget

# ---------------------------------------------------------------- non-root

check_non_root() {
  local ok=1 dir=$work/nobody
  mkdir -p "$dir"
  chown nobody: "$dir"
  chmod 700 "$dir"
  write_config "$work/nobody.yaml" "$dir"
  runuser -u nobody -- "$im_bin" attach "$work/nobody.yaml" >"$work/nobody.out" \
    2>"$work/nobody.log" &
  runuser_pid=$!
  if tb_wait_until 30 both_active "$work/nobody.yaml"; then
    local child user
    child=$(runuser_child)
    user=$(ps -o user= -p "$child" | tr -d ' ')
    [[ $user == nobody ]] || { ok=0; echo "    the attach runs as '$user'"; }
    [[ $(stat -c %U "$dir/lun.sock") == nobody ]] || { ok=0; echo "    NBD socket not nobody's"; }
    "$exerciser" --uri "$(head -n 1 "$work/nobody.out")" --backing "$TGT_BACKING" --ops 300 \
      --max-len 256K >"$work/exerciser3.log" 2>&1 ||
      { ok=0; echo "    I/O failed: $(tail -n 2 "$work/exerciser3.log")"; }
    local rc=0
    stop_pid "$child" || true
    stop_pid "$runuser_pid" || rc=$?
    runuser_pid=''
    ((rc == 0)) || { ok=0; echo "    attach as nobody exited $rc"; }
  else
    ok=0
    sed 's/^/    | /' "$work/nobody.log" | tail -n 10
  fi
  tb_report non-root "$ok" "$(grep -o 'PASS.*mismatches' "$work/exerciser3.log" 2>/dev/null || true)"
}
check_non_root

echo "$passed passed, $failed failed"
((failed == 0))
