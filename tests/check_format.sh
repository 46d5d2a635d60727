#!/usr/bin/env bash
# Every C++ file the repository tracks is formatted as .clang-format says: the style is checked,
# not hoped for. Fix findings with `clang-format -i FILE`.
set -u
root=${1:?project root}
cd "$root" || exit 1
if ! command -v clang-format >/dev/null; then
  echo "clang-format is not installed (tools/install-deps.sh installs it)" >&2
  exit 1
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked files that still exist (a deletion not yet committed is not a finding).
  mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' | while read -r f; do [ -f "$f" ] && echo "$f"; done)
else
  mapfile -t files < <(find . -path ./build\* -prune -o \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' \) -print)
fi
if ((${#files[@]} == 0)); then
  echo "no C++ files found under $root" >&2
  exit 1
fi
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "formatting differs from .clang-format in the files above" >&2
  exit 1
fi
echo "format ok: ${#files[@]} files"
