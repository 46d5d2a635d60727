#!/usr/bin/env bash
# A stand-in for systemd's service manager holding a .socket unit's listener, for
# socket-activation.sh:
#
#   systemd-socket-activate -l PATH socket-restarter.sh IM_BIN CONFIG STATE_DIR
#
# systemd-socket-activate binds PATH, waits for the first client and execs us with the listener
# as descriptor 3 (LISTEN_FDS=1), as systemd starts a socket-activated service. We keep that
# descriptor open and run `IM_BIN attach CONFIG` with it, LISTEN_PID set to the attach's own
# PID, as systemd does for each start of the service. SIGUSR1 restarts the attach the way
# `systemctl restart` does: SIGTERM, wait for the exit, start again, with the socket held all
# along so clients connecting meanwhile wait in its backlog.
#
# STATE_DIR/attach.pid holds the running attach's PID, STATE_DIR/restarts counts the restarts.
# With STATE_DIR/hold present, a restart waits (up to 60 s) after the stop, with STATE_DIR/down
# created, until the test removes `hold`: the window in which the test connects a client.
# SIGTERM stops the attach and exits with its status. The attach's stdout and stderr go to
# STATE_DIR/attach.out and attach.log, appended.
set -uo pipefail

im_bin=$1 config=$2 state=$3
unset LISTEN_PID LISTEN_FDS LISTEN_FDNAMES
child=''
restart_requested=0
stop_requested=0
trap 'restart_requested=1' USR1
trap 'stop_requested=1' TERM INT

start_attach() {
  # LISTEN_PID must be the attach's PID: sh exports its own, then execs the attach in place.
  sh -c 'LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec "$0" attach "$1"' \
    "$im_bin" "$config" >>"$state/attach.out" 2>>"$state/attach.log" &
  child=$!
  echo "$child" >"$state/attach.pid"
}

# Stops the attach (SIGTERM, up to 60 s for its clean logout) and sets `status` to its exit.
status=0
stop_attach() {
  kill -TERM "$child" 2>/dev/null
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$child" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$child" 2>/dev/null
  wait "$child"
  status=$?
}

start_attach
restarts=0
while :; do
  wait "$child"
  status=$?
  if ((stop_requested)); then
    stop_attach
    exit "$status"
  fi
  if ((restart_requested)); then
    restart_requested=0
    stop_attach
    echo "$status" >"$state/stop-status.$restarts"
    if [[ -e $state/hold ]]; then
      touch "$state/down"
      for ((i = 0; i < 600; i++)); do
        if [[ ! -e $state/hold ]] || ((stop_requested)); then break; fi
        sleep 0.1
      done
      rm -f "$state/down"
    fi
    restarts=$((restarts + 1))
    echo "$restarts" >"$state/restarts"
    ((stop_requested)) && exit "$status"
    start_attach
    continue
  fi
  exit "$status"  # the attach ended by itself
done
