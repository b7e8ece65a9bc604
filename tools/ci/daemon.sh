# shellcheck shell=bash
# Shared by the CI helpers that start a background service (sourced, not run).

# wait_until_answers NAME PID LOG WAIT_S CHECK...: wait until the command CHECK...
# succeeds while process PID (the service just started) runs, at most WAIT_S seconds;
# otherwise print the end of LOG and exit with an error.
wait_until_answers() {
  local name=$1 pid=$2 log=$3 wait_s=$4
  shift 4
  local deadline=$((SECONDS + wait_s))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "$name: did not answer (waited up to ${wait_s}s); last lines of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 1
  done
}
