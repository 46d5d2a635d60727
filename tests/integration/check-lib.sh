# Helpers of the scripted integration checks, sourced. The script sets `passed=0 failed=0` and,
# optionally, report_log: a log whose last lines a failing check shows.

# report NAME OK [DETAIL...]: count a check and print its outcome.
report() {
  local name=$1 ok=$2
  shift 2
  if ((ok)); then
    echo "PASS: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    local line
    for line in "$@"; do echo "    $line"; done
    [[ -z ${report_log:-} || ! -s $report_log ]] || tail -n 15 "$report_log" | sed 's/^/    | /'
    failed=$((failed + 1))
  fi
}

# wait_until SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
