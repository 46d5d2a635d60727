#!/usr/bin/env bash
# The Dockerfile's steps without an engine, as far as they can be run so: the checks an engine
# build does not make (tests/integration/podman-sidecar.sh builds and runs the image with
# podman):
#
#   1. static checks: two stages on debian:bookworm-slim (this host must be Debian 12 for the
#      rest to mean anything), a non-root USER, the ENTRYPOINT, COPY --from=build of the binary
#      the build stage produces;
#   2. the build stage's RUN lines, run in order in a copy of the source tree made with the
#      .dockerignore exclusions, /src and /build mapped to directories under $STEPS_DIR
#      (default $BUILD/container-steps, kept between runs: files whose content changed are
#      replaced, so the Release build is incremental, as Docker's layer cache makes it);
#      tools/install-deps.sh --minimal only checks when the packages are already installed;
#   3. the runtime stage, not run (it would change this host): every package its apt-get
#      install names must exist in Debian's archive (apt-cache show), and the shared libraries
#      `ldd` lists for the binary built in step 2, and those it opens with dlopen, must come
#      from exactly those packages
#      (dpkg -S): none missing, none extra.
#
# Environment: BUILD (the CTest build tree; default <repo>/build), STEPS_DIR, DOCKERFILE (to
# check another file), JOBS (parallel compile jobs of the build step, default 2, as
# tools/run-tests.sh), CONTAINER_BUILD, IM_BIN.
# Step 2 runs only with CONTAINER_BUILD=1: its first run compiles iscsi-mpio in Release, about
# 10 minutes on a busy 2-core machine, too long for every CI run. Without it the RUN lines are
# checked to name scripts that exist, and step 3 checks IM_BIN, the binary the test command
# already built from the same sources with the same libraries.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly repo
readonly dockerfile=${DOCKERFILE:-$repo/Dockerfile}
readonly steps_dir=${STEPS_DIR:-${BUILD:-$repo/build}/container-steps}
passed=0
failed=0

pass() {
  echo "PASS: $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}

# ---- parse: one logical instruction per line (continuations joined), comments dropped --------
# Fills stage_base[N], and instructions[] as "N<TAB>KEYWORD<TAB>ARGUMENTS" lines.
declare -a stage_base=() stage_name=() instructions=()
parse() {
  local line logical='' stage=-1 keyword rest
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -z $logical && $line =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ $line =~ \\[[:space:]]*$ ]]; then
      logical+="${line%\\*} "
      continue
    fi
    logical+=$line
    keyword=${logical%%[[:space:]]*}
    keyword=${keyword^^}
    rest=$(sed -E 's/^[[:space:]]*[^[:space:]]+[[:space:]]*//' <<<"$logical")
    logical=''
    if [[ $keyword == FROM ]]; then
      stage=$((stage + 1))
      stage_base[stage]=${rest%% *}
      stage_name[stage]=''
      [[ $rest =~ [[:space:]][Aa][Ss][[:space:]]+([^[:space:]]+) ]] &&
        stage_name[stage]=${BASH_REMATCH[1]}
      continue
    fi
    ((stage >= 0)) || { fail "Dockerfile: $keyword before the first FROM"; continue; }
    instructions+=("$stage"$'\t'"$keyword"$'\t'"$rest")
  done <"$dockerfile"
}

# args_of STAGE KEYWORD: the arguments of each KEYWORD instruction of STAGE, one per line.
args_of() {
  local entry
  for entry in "${instructions[@]}"; do
    IFS=$'\t' read -r s k a <<<"$entry"
    [[ $s == "$1" && $k == "$2" ]] && printf '%s\n' "$a"
  done
  return 0
}

[[ -f $dockerfile ]] || { echo "no $dockerfile" >&2; exit 1; }
parse
readonly last=$((${#stage_base[@]} - 1))

# ---- 1. static checks --------------------------------------------------------------------------
if ((${#stage_base[@]} == 2)) && [[ ${stage_name[0]} == build ]]; then
  pass "two stages, the first named build"
else
  fail "expected two stages (build, runtime), found ${#stage_base[@]}: ${stage_base[*]}"
fi
for base in "${stage_base[@]}"; do
  [[ $base == debian:bookworm-slim ]] || fail "stage base $base is not debian:bookworm-slim"
done
# shellcheck disable=SC1091
if [[ $(. /etc/os-release && echo "$ID $VERSION_ID") == "debian 12" ]]; then
  pass "this host is Debian 12, as debian:bookworm-slim"
else
  fail "this host is not Debian 12: the package checks below would not describe the image"
fi
user=$(args_of "$last" USER | tail -n 1)
if [[ -n $user && ${user%%:*} != root && ${user%%:*} != 0 ]]; then
  pass "runtime stage runs as $user, not root"
else
  fail "runtime stage has no non-root USER (found '${user:-none}')"
fi
entrypoint=$(args_of "$last" ENTRYPOINT | tail -n 1)
readonly wanted_entrypoint='["/usr/local/bin/iscsi-mpio", "attach", "/etc/iscsi-mpio/config.yaml"]'
if [[ $entrypoint == "$wanted_entrypoint" ]]; then
  pass "ENTRYPOINT iscsi-mpio attach /etc/iscsi-mpio/config.yaml"
else
  fail "unexpected ENTRYPOINT $entrypoint"
fi
copy_from=$(args_of "$last" COPY | grep -E '^--from=build ' | head -n 1 || true)
built_binary=$(awk '{ print $2 }' <<<"$copy_from")
if [[ $built_binary == /build/* ]]; then
  pass "runtime stage copies $built_binary from the build stage"
else
  fail "no COPY --from=build of a file under /build in the runtime stage"
fi

# ---- 2. the build stage's RUN lines --------------------------------------------------------
if [[ ${CONTAINER_BUILD:-0} != 1 ]]; then
  mapfile -t build_runs < <(args_of 0 RUN)
  for run in "${build_runs[@]}"; do
    # shellcheck disable=SC2207 # words of a RUN line
    words=($run)
    for word in "${words[@]}"; do
      [[ $word == tools/* ]] || continue
      if [[ -e $repo/$word ]]; then pass "build step names $word, which exists"; else fail "build step names $word, which does not exist"; fi
    done
  done
  binary=${IM_BIN:-${BUILD:-$repo/build}/tools/iscsi-mpio/iscsi-mpio}
  echo "== build stage not run (CONTAINER_BUILD=1 runs it); checking $binary instead"
else
mkdir -p "$steps_dir/build" "$steps_dir/src"
# COPY . . with .dockerignore: its patterns as tar exclusions (plain names and globs only).
# The copy is staged, then only files whose content differs replace the kept copy, with a new
# modification time: the incremental build then rebuilds exactly what changed (content, as
# Docker's cache judges, not modification times carried over from the repository).
mapfile -t ignore < <(grep -vE '^[[:space:]]*(#|$)' "$repo/.dockerignore")
exclude_args=()
for pattern in "${ignore[@]}"; do exclude_args+=("--exclude=./$pattern"); done
rm -rf "$steps_dir/staging"
mkdir -p "$steps_dir/staging"
tar -C "$repo" "${exclude_args[@]}" -cf - . | tar -C "$steps_dir/staging" -xf -
if [[ -e $steps_dir/staging/.git ||
  -n $(find "$steps_dir/staging" -maxdepth 1 -name 'build*' -print -quit) ]]; then
  fail ".dockerignore exclusions not applied to the copy"
fi
changed=0
while IFS= read -r -d '' file; do
  if ! cmp -s "$steps_dir/staging/$file" "$steps_dir/src/$file"; then
    mkdir -p "$(dirname "$steps_dir/src/$file")"
    rm -f "$steps_dir/src/$file"
    cp -P --preserve=mode "$steps_dir/staging/$file" "$steps_dir/src/$file"
    changed=$((changed + 1))
  fi
done < <(cd "$steps_dir/staging" && find . \( -type f -o -type l \) -print0)
while IFS= read -r -d '' file; do
  [[ -e $steps_dir/staging/$file || -L $steps_dir/staging/$file ]] || rm -f "$steps_dir/src/$file"
done < <(cd "$steps_dir/src" && find . \( -type f -o -type l \) -print0)
rm -rf "$steps_dir/staging"
echo "== source copy: $changed files new or changed since the last run"

# /src and /build as whole path heads (after a space, = or the line start), so that the first
# substitution's result is never rewritten by the second.
map_paths() {
  sed -E -e "s#(^|[[:space:]=])/src(/|[[:space:]]|\$)#\1$steps_dir/src\2#g" \
    -e "s#(^|[[:space:]=])/build(/|[[:space:]]|\$)#\1$steps_dir/build\2#g" <<<"$1"
}

export CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2}  # what `cmake --build` runs at once
mapfile -t build_runs < <(args_of 0 RUN)
for run in "${build_runs[@]}"; do
  mapped=$(map_paths "$run")
  echo "== RUN $run"
  started=$SECONDS
  if (cd "$steps_dir/src" && bash -euo pipefail -c "$mapped") >"$steps_dir/run.log" 2>&1; then
    tail -n 3 "$steps_dir/run.log" | sed 's/^/    /'
    pass "build step ($((SECONDS - started)) s): ${run:0:70}"
  else
    tail -n 30 "$steps_dir/run.log" | sed 's/^/    /'
    fail "build step: $run"
  fi
done
binary=$(map_paths "$built_binary")
if [[ -x $binary ]]; then
  pass "the build stage produced $built_binary"
  "$binary" --help >/dev/null 2>&1 || fail "$built_binary --help failed"
else
  fail "the build stage did not produce $built_binary"
fi
fi

# ---- 3. the runtime stage's packages against ldd -------------------------------------------
runtime_packages=()
while IFS= read -r run; do
  # The words after `apt-get install` up to the next && that are not options.
  # shellcheck disable=SC2207 # words of a RUN line
  words=($(sed -nE 's/.*apt-get install ([^&]*).*/\1/p' <<<"$run"))
  for word in "${words[@]}"; do
    [[ $word == -* ]] || runtime_packages+=("$word")
  done
done < <(args_of "$last" RUN)
if ((${#runtime_packages[@]} == 0)); then
  fail "the runtime stage installs no package"
fi
for package in "${runtime_packages[@]}"; do
  if apt-cache show "$package" >/dev/null 2>&1; then
    pass "runtime package $package exists in the archive"
  else
    fail "runtime package $package: apt-cache show finds nothing"
  fi
done

# owner_of LIBRARY_PATH: the Debian package that ships it (usrmerge: /lib is /usr/lib).
owner_of() {
  local path=$1 candidate real
  real=$(readlink -f "$path")
  for candidate in "$path" "$real" "/usr$path" "/usr$real" "${path#/usr}" "${real#/usr}"; do
    dpkg -S "$candidate" 2>/dev/null | head -n 1 | cut -d: -f1 && return 0
  done
  return 1
}

if [[ -x $binary ]]; then
  needed=()
  ldd_out=$(ldd "$binary")
  if grep -q 'not found' <<<"$ldd_out"; then
    fail "ldd: unresolved libraries: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t' ' ')"
  fi
  while read -r library; do
    owner=$(owner_of "$library") || { fail "no package ships $library"; continue; }
    needed+=("$owner")
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
  # Libraries the binary opens with dlopen (GnuTLS when nbd.tls is on, libsystemd when systemd
  # starts it) are not in ldd's list: their sonames are string constants in the binary, and
  # ldconfig's cache says where they are installed here.
  while read -r soname; do
    grep -qF -- "$soname =>" <<<"$ldd_out" && continue # linked: counted above
    library=$(ldconfig -p | awk -v soname="$soname" '$1 == soname && /x86-64/ { print $NF; exit }')
    [[ -n $library ]] || { fail "the binary opens $soname, which is not installed here"; continue; }
    owner=$(owner_of "$library") || { fail "no package ships $library"; continue; }
    needed+=("$owner")
  done < <(grep -aoE 'lib[a-z0-9_+-]+\.so(\.[0-9]+)+' "$binary" | sort -u)
  mapfile -t needed < <(printf '%s\n' "${needed[@]}" | sort -u)
  mapfile -t listed < <(printf '%s\n' "${runtime_packages[@]}" | sort -u)
  missing=$(comm -23 <(printf '%s\n' "${needed[@]}") <(printf '%s\n' "${listed[@]}"))
  extra=$(comm -13 <(printf '%s\n' "${needed[@]}") <(printf '%s\n' "${listed[@]}"))
  if [[ -z $missing && -z $extra ]]; then
    pass "ldd's libraries come from exactly the runtime packages: ${needed[*]}"
  else
    [[ -z $missing ]] || fail "the runtime stage misses packages the binary needs: $missing"
    [[ -z $extra ]] || fail "the runtime stage installs packages the binary does not need: $extra"
  fi
fi

echo "$passed passed, $failed failed"
((failed == 0))
