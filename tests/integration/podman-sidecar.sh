#!/usr/bin/env bash
# The Dockerfile built and run by a real engine (issue 24, part 1): Debian's podman builds the
# repository's Dockerfile unchanged and runs the sidecar shape of docs/kubernetes/ against a
# tgtd on this host, with the commands README's "Containers and Kubernetes" section gives:
#
#   base        debian:bookworm-slim, the FROM of the Dockerfile, made once from Debian's
#               packages (mmdebstrap --variant=minbase bookworm, podman import): no registry
#   build       `podman build --pull=never --network=host .`, tagged with a hash of what the
#               build stage reads (not docs/ or tests/) and of the base image: a second run on
#               the same sources builds nothing; on new sources the apt layer stays cached
#   sidecar     the image as UID 10001 with --read-only, --cap-drop ALL, --security-opt
#               no-new-privileges, --network=host; the configuration from a read-only mount, the
#               CHAP and mutual CHAP secrets from read-only secret files (secret_file:), the NBD
#               unix socket in a named volume. Checked from the host: the process's UIDs, no
#               capability, NoNewPrivs, a read-only root, two sessions on tgtd
#   two-paths   two portals (127.0.0.1, 127.0.0.2) left from two source addresses, both active
#               and both carrying commands. Two podman networks would need netavark or CNI and
#               firewall rules on this host: the paths are two loopback addresses instead, two
#               sessions over one link (attach warns that both leave through lo)
#   client      a second container (tests/integration/nbd-client.Containerfile: libnbd-bin, no
#               network, the same UID, the same volume) runs nbdinfo, then nbdcopy writes 16 MiB
#               of random data and reads the disk back: checked against the input and in tgtd's
#               backing file on the host
#   stop        `podman stop`: attach drains, flushes and logs out; exit code 0, "logged out" in
#               its log, tgtd shows no session
#
# Each run removes every container, volume and image it made, even on failure, except the
# cached images (the base, the current build and its build stage, the client) in their own
# podman storage under IM_PODMAN_CACHE, so that they never mix with the host's images.
#
#   tests/integration/podman-sidecar.sh [--build-only]
# --build-only: make the cached images and stop (tools/run-tests.sh starts it in the
# background; the test proper then waits on the cache's lock and finds them built).
#
# Environment: IM_PODMAN_CACHE (default /var/tmp/iscsi-mpio-podman), KEEP_WORKDIR=1. Needs
# root, podman and runc, mmdebstrap and a Debian mirror for the first run and whenever the
# sources change (apt-get runs in the build), tgtd.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo
# shellcheck source=tests/testbed/lib.sh
source "$repo/tests/testbed/lib.sh"
readonly cache=${IM_PODMAN_CACHE:-/var/tmp/iscsi-mpio-podman}
readonly base_image=docker.io/library/debian:bookworm-slim
readonly image_repo=localhost/iscsi-mpio
readonly client_repo=localhost/iscsi-mpio-nbd-client
readonly sidecar_uid=10001

build_only=0
[[ ${1:-} != --build-only ]] || build_only=1

for tool in podman runc mmdebstrap tgtd tgtadm jq; do
  command -v "$tool" >/dev/null || { echo "missing $tool"; echo "0 passed, 1 failed"; exit 1; }
done

work=$(mktemp -d /tmp/im-podman.XXXXXX)
chmod 755 "$work"
passed=0
failed=0
tgt_started=0
engine_locked=0
summary_printed=0
report_log=$work/sidecar.log

# The store is this test's own and one run holds its lock at a time: every pod, container and
# volume in it is this run's (podman kube play names its ConfigMap volumes after the ConfigMap).
remove_engine_objects() {
  podman pod rm -af -t 0 >/dev/null 2>&1 || true
  podman rm -af -t 0 >/dev/null 2>&1 || true
  # The working containers of an interrupted build.
  podman ps -aq --external 2>/dev/null | xargs -r podman rm -f >/dev/null 2>&1 || true
  podman volume rm -af >/dev/null 2>&1 || true
}
cleanup() {
  local rc=$?
  trap - EXIT
  [[ -z $timed_pid ]] || tb_kill_tree "$timed_pid"
  ((!engine_locked)) || remove_engine_objects
  tb_remove_testbed
  ((summary_printed)) || { echo "$passed passed, $failed failed"; ((rc != 0)) || rc=1; }
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---------------------------------------------------------------- the engine and its own storage
# containers.conf: what Debian 12's podman 4.3 needs on this kind of host (the same settings
# as --runtime runc --cgroup-manager cgroupfs --ulimit ... on each command): crun refuses the
# hybrid cgroup layout, and the default ulimits exceed the hard limits. storage.conf: a store of
# the test's own, the cache.
mkdir -p "$cache"
cat >"$cache/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
cat >"$cache/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "/run/iscsi-mpio-podman"
EOF
export CONTAINERS_CONF=$cache/containers.conf CONTAINERS_STORAGE_CONF=$cache/storage.conf
# One run at a time uses the cache (a second would rebuild the same image beside it).
exec 9>"$cache/lock"
flock -w 1800 9 || { echo "the cache $cache stays locked"; echo "0 passed, 1 failed"; exit 1; }
engine_locked=1
remove_engine_objects  # what a run killed before its cleanup left

# timed NAME COMMAND...: COMMAND with its output in $work/NAME.log and its seconds in
# timings[]; the log's end is shown when it fails.
# It runs in the background and is waited for, so that a TERM (CTest's timeout) reaches the
# trap at once, which stops the whole tree (a build's RUN container included).
timings=()
timed_pid=''
timed() {
  local name=$1 started=$SECONDS rc=0
  shift
  "$@" </dev/null >"$work/$name.log" 2>&1 &
  timed_pid=$!
  wait "$timed_pid" || rc=$?
  timed_pid=''
  timings+=("$name $((SECONDS - started)) s")
  ((rc == 0)) || { echo "$name failed (status $rc):"; tail -n 30 "$work/$name.log" | sed 's/^/    | /'; }
  return "$rc"
}

# ---------------------------------------------------------------- base image, once
# What the registry's debian:bookworm-slim is: Debian 12 minbase, with its PATH and CMD (a
# plain import has neither, and `podman kube play` runs commands by the image's PATH). The
# label names this recipe: a base made by another one is made again.
readonly base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly base_recipe="mmdebstrap --variant=minbase bookworm; PATH=$base_path; CMD bash"
base_label() { podman image inspect -f '{{index .Labels "org.iscsi-mpio.base"}}' "$base_image" 2>/dev/null; }
if [[ $(base_label) != "$base_recipe" ]]; then
  echo "making $base_image from Debian's packages (once)"
  if ! timed mmdebstrap timeout 900 mmdebstrap --variant=minbase bookworm "$work/base.tar" ||
    ! timed import podman import --change "ENV PATH=$base_path" --change 'CMD ["bash"]' \
      --change "LABEL org.iscsi-mpio.base=\"$base_recipe\"" "$work/base.tar" "$base_image"; then
    tb_report base 0 "no base image"
    exit 1
  fi
  rm -f "$work/base.tar"
  [[ $(base_label) == "$base_recipe" ]] || { tb_report base 0 "label: '$(base_label)'"; exit 1; }
fi
base_id=$(podman image inspect -f '{{.Id}}' "$base_image")

# ---------------------------------------------------------------- the image, per input hash
# The runtime image holds the binary and its libraries only, so its key is what the build
# stage reads to make them: the Dockerfile, the top CMakeLists.txt and the directories it adds
# with IM_TESTS=OFF (tools/ with install-deps.sh), less the .dockerignore patterns and *.md,
# hashed in name order with fixed owners and times, and the base image. A change to docs/ or
# tests/ alone keeps the image; `podman build` itself would run again on any change in the
# build context (COPY . .).
mapfile -t ignored < <(grep -vE '^[[:space:]]*(#|$)' "$repo/.dockerignore")
readonly -a build_inputs=(Dockerfile CMakeLists.txt common config initiator mpio nbd-bridge tools)
input_hash=$(
  {
    tar -C "$repo" "${ignored[@]/#/--exclude=}" --exclude='*.md' --sort=name --mtime=@0 \
      --owner=0 --group=0 --numeric-owner -cf - "${build_inputs[@]}"
    echo "$base_id"
  } | sha256sum | cut -c1-16
)
readonly image=$image_repo:in-$input_hash
client_hash=$({ cat "$repo/tests/integration/nbd-client.Containerfile"; echo "$base_id"; } |
  sha256sum | cut -c1-16)
readonly client=$client_repo:in-$client_hash

if podman image exists "$image"; then
  echo "image $image cached (same build inputs): no build"
else
  echo "building $image"
  # The build stage tagged too: the apt layer under it is then no dangling image for the prune
  # below, and stays cached for the next sources.
  if ! timed build-stage podman build --pull=never --network=host --target build \
    -t "$image_repo-build:in-$input_hash" "$repo" ||
    ! timed build podman build --pull=never --network=host -t "$image" "$repo"; then
    tb_report build 0 "podman build failed"
    exit 1
  fi
fi
if ! podman image exists "$client"; then
  if ! timed client-build podman build --pull=never --network=host -t "$client" \
    -f "$repo/tests/integration/nbd-client.Containerfile" "$repo/tests/integration"; then
    tb_report client-build 0 "podman build of the NBD client image failed"
    exit 1
  fi
fi
# Older builds go: only the current tags (and the layers under them) stay in the cache.
podman images --format '{{.Repository}}:{{.Tag}}' |
  grep -E "^($image_repo|$image_repo-build|$client_repo):in-" |
  grep -vxF -e "$image" -e "$image_repo-build:in-$input_hash" -e "$client" |
  xargs -r podman rmi >/dev/null 2>&1 || true
podman image prune -f >/dev/null 2>&1 || true
tb_report build 1
echo "image $image: $(podman image inspect -f '{{.Size}}' "$image" | numfmt --to=iec) bytes;" \
  "${timings[*]:-nothing built}"
if ((build_only)); then
  summary_printed=1
  exit 0
fi

# ---------------------------------------------------------------- target and files
readonly chap_user=k8s-lun1 chap_secret=sidecar-secret-01 target_user=storage
readonly target_secret=target-secret-02
eval "$("$repo/tests/testbed/tgtd-target.sh" start --size 32M --portal 127.0.0.1 \
  --portal 127.0.0.2 --chap "$chap_user:$chap_secret" --mutual-chap "$target_user:$target_secret" \
  --dir "$work/tgt")"
tgt_started=1

# The ConfigMap and the Secret of docs/kubernetes/iscsi-mpio-sidecar.yaml, as host directories.
mkdir -m 755 "$work/etc" "$work/secrets" "$work/data"
cat >"$work/etc/config.yaml" <<EOF
initiator: {name: iqn.2026-11.org.iscsi-mpio:podman-sidecar}
target:
  iqn: $TGT_IQN
  lun: $TGT_LUN
  auth:
    method: chap
    username: $chap_user
    secret_file: /var/run/secrets/iscsi-mpio/chap-secret
    mutual:
      username: $target_user
      secret_file: /var/run/secrets/iscsi-mpio/chap-target-secret
paths:
  - {portal: "127.0.0.1:$TGT_PORT", source: 127.0.0.1}
  - {portal: "127.0.0.2:$TGT_PORT", source: 127.0.0.2}
multipath: {no_path_retry: queue, noop_out_interval: 1, noop_out_timeout: 2}
nbd: {listen: "unix:/run/iscsi-mpio/lun1.sock", export: lun1}
EOF
chmod 644 "$work/etc/config.yaml"
echo "$chap_secret" >"$work/secrets/chap-secret"
echo "$target_secret" >"$work/secrets/chap-target-secret"
chown "$sidecar_uid:$sidecar_uid" "$work/secrets"/* "$work/data"
chmod 400 "$work/secrets"/*
head -c 16M /dev/urandom >"$work/data/in.bin"

# ---------------------------------------------------------------- the sidecar
readonly sidecar=lun1 volume=lun1-run
podman volume create "$volume" >/dev/null
started=$SECONDS
podman run -d --name "$sidecar" \
  --user "$sidecar_uid:$sidecar_uid" --read-only --cap-drop ALL \
  --security-opt no-new-privileges --network host \
  -v "$work/etc:/etc/iscsi-mpio:ro" -v "$work/secrets:/var/run/secrets/iscsi-mpio:ro" \
  -v "$volume:/run/iscsi-mpio" "$image" >/dev/null
sidecar_log() { podman logs "$sidecar" >"$report_log" 2>&1 || true; }
# The startupProbe of the Kubernetes example: `iscsi-mpio status` answers once the export is
# served.
status_json() {
  podman exec "$sidecar" iscsi-mpio status --json /etc/iscsi-mpio/config.yaml 2>/dev/null ||
    echo '{"paths":[]}'
}
both_active() { (($(status_json | jq '[.paths[] | select(.state == "active")] | length') == 2)); }
ok=1
tb_wait_until 60 both_active || ok=0
sidecar_log
tb_report sidecar-start "$ok" "two active paths not reached in 60 s: $(status_json)"
echo "sidecar serving after $((SECONDS - started)) s"

# What the engine made of the options, read from the host: the container's main process.
pid=$(podman inspect -f '{{.State.Pid}}' "$sidecar")
proc_field() { awk -v key="$1:" '$1 == key { $1 = ""; print substr($0, 2) }' "/proc/$pid/status"; }
ok=1
notes=()
[[ $(cat "/proc/$pid/comm") == iscsi-mpio ]] || { ok=0; notes+=("comm $(cat "/proc/$pid/comm")"); }
for field in Uid Gid; do
  [[ $(proc_field "$field" | tr -s '\t ' ' ') == "$sidecar_uid $sidecar_uid $sidecar_uid $sidecar_uid" ]] ||
    { ok=0; notes+=("$field: $(proc_field "$field")"); }
done
for field in CapInh CapPrm CapEff CapBnd CapAmb; do
  [[ $(proc_field "$field") == 0000000000000000 ]] || { ok=0; notes+=("$field: $(proc_field "$field")"); }
done
[[ $(proc_field NoNewPrivs) == 1 ]] || { ok=0; notes+=("NoNewPrivs: $(proc_field NoNewPrivs)"); }
# The root mount (mountinfo field 5 is the mount point, 6 its options).
root_options=$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo")
[[ ,$root_options, == *,ro,* ]] || { ok=0; notes+=("root mounted $root_options"); }
# As root (the owner of /usr/local/bin) only the read-only mount can refuse the write.
if podman exec --user 0 "$sidecar" touch /usr/local/bin/probe >"$work/touch.out" 2>&1 ||
  ! grep -q 'Read-only file system' "$work/touch.out"; then
  ok=0
  notes+=("writing under /usr/local/bin as root: $(cat "$work/touch.out")")
fi
tb_report sidecar-confinement "$ok" "${notes[@]}"

# Both sessions on tgtd, one from each source address.
sessions() { tgtadm -C "$TGT_CTL" --lld iscsi --op show --mode target >"$work/tgt-show.txt" 2>&1; }
# "I_T nexus information:" heads the list even when it is empty; each session is "I_T nexus: N".
has_session() { grep -qE 'I_T nexus: [0-9]+' "$work/tgt-show.txt"; }
ok=1
sessions || ok=0
addresses=$(grep -oE 'IP Address: [0-9.]+' "$work/tgt-show.txt" | awk '{ print $3 }' | sort | tr '\n' ' ')
[[ $addresses == "127.0.0.1 127.0.0.2 " ]] || ok=0
tb_report two-sessions "$ok" "tgtd's connections from: ${addresses:-none}"

# ---------------------------------------------------------------- the client container
readonly uri='nbd+unix:///lun1?socket=/run/iscsi-mpio/lun1.sock'
# client NAME COMMAND...: COMMAND in a new container of the client image, output in
# $work/NAME.out: no network, nothing writable but the data directory, the sidecar's volume.
client_run() {
  local name=$1
  shift
  podman run --rm --name "$name" \
    --user "$sidecar_uid:$sidecar_uid" --read-only --cap-drop ALL \
    --security-opt no-new-privileges --network none \
    -v "$volume:/run/iscsi-mpio" -v "$work/data:/data" "$client" "$@" >"$work/$name.out" 2>&1
}
ok=1
# --no-content: the content line needs file(1), which the client image has not.
client_run nbdinfo nbdinfo --no-content --json "$uri" || ok=0
size=$(jq -r '.exports[0]."export-size" // empty' "$work/nbdinfo.out" 2>/dev/null || true)
[[ $size == $((32 << 20)) ]] || ok=0
tb_report client-nbdinfo "$ok" "export size '${size}', want $((32 << 20)):" "$(head -n 20 "$work/nbdinfo.out")"

ok=1
commands_before=$(status_json | jq -c '[.paths[].commands]')
client_run nbdcopy-write nbdcopy /data/in.bin "$uri" || ok=0
client_run nbdcopy-read nbdcopy "$uri" /data/out.bin || ok=0
commands_after=$(status_json | jq -c '[.paths[].commands]')
cmp -n $((16 << 20)) "$work/data/in.bin" "$work/data/out.bin" >"$work/cmp.out" 2>&1 || ok=0
cmp -n $((16 << 20)) "$work/data/in.bin" "$TGT_BACKING" >>"$work/cmp.out" 2>&1 || ok=0
tb_report client-data "$ok" "$(cat "$work/nbdcopy-write.out" "$work/nbdcopy-read.out" "$work/cmp.out")"
# Both paths carried the copy's commands (the default round-robin within the active group).
ok=1
mapfile -t per_path < <(jq -n --argjson a "$commands_after" --argjson b "$commands_before" \
  '[$a, $b] | transpose[] | .[0] - .[1]')
((${#per_path[@]} == 2 && per_path[0] > 0 && per_path[1] > 0)) || ok=0
tb_report two-paths-carry "$ok" "commands per path during the copies: ${per_path[*]:-none}"

# ---------------------------------------------------------------- podman stop: the clean logout
ok=1
started=$SECONDS
podman stop --time 90 "$sidecar" >/dev/null 2>&1 || ok=0
stop_seconds=$((SECONDS - started))
exit_code=$(podman inspect -f '{{.State.ExitCode}}' "$sidecar")
sidecar_log
[[ $exit_code == 0 ]] || ok=0
grep -q 'logged out' "$report_log" || ok=0
sessions || ok=0
has_session && ok=0
tb_report stop-logout "$ok" "exit code $exit_code after $stop_seconds s; tgtd:" \
  "$(grep -A3 -E 'I_T nexus: [0-9]+' "$work/tgt-show.txt" | head -n 8)"
echo "podman stop took $stop_seconds s"
# The data stays in the backing file after the logout (SYNCHRONIZE CACHE on the way out).
ok=1
cmp -n $((16 << 20)) "$work/data/in.bin" "$TGT_BACKING" >/dev/null 2>&1 || ok=0
tb_report data-after-stop "$ok" "the backing file differs from the data written"

# ---------------------------------------------------------------- the Kubernetes manifest, played
# Debian has no schema validator for these manifests (its kubectl validates against a cluster),
# so podman plays the pod of docs/kubernetes/iscsi-mpio-sidecar.yaml instead, changed only where
# podman 4.3 or this host need it (kube-pod-shape.py says where and why). Not played:
# iscsi-mpio-nbd-device.yaml (privileged, the host's nbd module and /dev/nbd0), the probes
# (podman 4.3 has no startupProbe; the livenessProbe would need systemd timers),
# terminationGracePeriodSeconds (podman stop --time gives it), nodeSelector, fsGroup.
readonly manifest=$repo/docs/kubernetes/iscsi-mpio-sidecar.yaml
readonly pod=lun1-app-pod-0
head -c 16M /dev/urandom >"$work/data/in-kube.bin"
chown "$sidecar_uid:$sidecar_uid" "$work/data/in-kube.bin"
ok=1
notes=()
if /usr/bin/python3 "$repo/tests/integration/kube-pod-shape.py" "$manifest" "$work/pod.yaml" \
  "$image" "$client" "$work/etc/config.yaml" "$work/secrets" "$work/data" >"$work/shape.out" 2>&1 &&
  timeout 120 podman kube play "$work/pod.yaml" >"$work/play.out" 2>&1; then
  # The application container exits once its copy is done.
  app_exit=$(timeout 120 podman wait "$pod-app" 2>&1) || true
  podman logs "$pod-app" >"$work/app.out" 2>&1 || true
  [[ $app_exit == 0 ]] || { ok=0; notes+=("app exit '$app_exit':" "$(tail -n 20 "$work/app.out")"); }
  cmp -n $((16 << 20)) "$work/data/in-kube.bin" "$TGT_BACKING" >/dev/null 2>&1 ||
    { ok=0; notes+=("the backing file does not hold the app's data"); }
  pid=$(podman inspect -f '{{.State.Pid}}' "$pod-iscsi-mpio" 2>/dev/null || echo 0)
  if ((pid > 0)); then
    [[ $(proc_field Uid | tr -s '\t ' ' ') == "$sidecar_uid $sidecar_uid $sidecar_uid $sidecar_uid" &&
      $(proc_field CapEff) == 0000000000000000 && $(proc_field NoNewPrivs) == 1 &&
      ,$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo"), == *,ro,* ]] ||
      { ok=0; notes+=("sidecar: $(grep -E '^(Uid|CapEff|NoNewPrivs)' "/proc/$pid/status" | tr '\n' ' ')"); }
  else
    ok=0
    notes+=("the iscsi-mpio container is not running")
  fi
  podman pod stop --time 90 "$pod" >/dev/null 2>&1 || ok=0
  sidecar_exit=$(podman inspect -f '{{.State.ExitCode}}' "$pod-iscsi-mpio" 2>&1)
  podman logs "$pod-iscsi-mpio" >"$report_log" 2>&1 || true
  if [[ $sidecar_exit != 0 ]] || ! grep -q 'logged out' "$report_log"; then
    ok=0
    notes+=("sidecar exit code '$sidecar_exit' after pod stop")
  fi
  if ! sessions || has_session; then
    ok=0
    notes+=("tgtd still has a session")
  fi
  timeout 60 podman kube down "$work/pod.yaml" >/dev/null 2>&1 || ok=0
else
  ok=0
  notes+=("$(cat "$work/shape.out" "$work/play.out" 2>/dev/null | tail -n 20)")
fi
tb_report kube-play "$ok" "${notes[@]}"

echo "$passed passed, $failed failed"
summary_printed=1
((failed == 0))
