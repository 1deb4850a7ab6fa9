#!/bin/sh
# Replica failures under load. `kill -9` of a replica while `hey -c 20`
# runs against three replicas gives no failed request, because the router
# retries each request the replica was serving on another one, and it
# restarts the replica. A second crash waits twice as long before the
# restart. A router killed with SIGKILL takes its replicas with it.
# Traffic goes to 127.0.0.1 only; every process is stopped by PID.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u

: "${DISTML:?set DISTML to the distml binary}"
here=$(dirname "$0")
fixtures="$here/../serve/fixtures"
NAME=router-faults
. "$here/lib/checks.sh"
. "$here/lib/models.sh"
. "$here/lib/server.sh"
. "$here/lib/router.sh"

expect_log() {
    if grep -qE -- "$2" "$tmp/router.log"; then
        pass "$1: log has '$2'"
    else
        fail "$1: log lacks '$2'"
    fi
}

if ! command -v hey >/dev/null; then
    echo "skipped: hey is not installed (scripts/bootstrap installs it)"
    exit 0
fi

root="$tmp/root"
make_noise_dataset "$root"
base="$tmp/models/fmnist"
make_model "$root" 1 2 "$base/1"
write_predict_body "$fixtures/F5-nonuniform-28.jpg" 50 "$tmp/body.json"

start_router "$tmp/router.log" --model_name fmnist --model_base_path "$base" \
    --scale_target 1 --min_replicas 3 --max_replicas 3
wait_ready 3 30 || fail "start: 3 replicas are not ready within 30 s"
victim=$(replicas_field "j['replicas'][1]['pid']")

hey -z 8s -c 20 -m POST -T application/json -D "$tmp/body.json" \
    "$url/v1/models/fmnist:predict" >"$tmp/hey.txt" 2>&1 &
hey_pid=$!
sleep 3
kill -9 "$victim"
wait "$hey_pid"

expect_equal "kill -9 under load: failed requests" "$(hey_failures "$tmp/hey.txt")" 0
answered=$(awk '/^  \[200\]/ { print $2 }' "$tmp/hey.txt")
if [ "${answered:-0}" -gt 0 ]; then
    pass "kill -9 under load: $answered replies with status 200"
else
    fail "kill -9 under load: no replies with status 200"
    sed 's/^/    hey: /' "$tmp/hey.txt"
fi
expect_log "crash" "replica-2 crashed: pid $victim, killed by signal 9 \(Killed\) after .* restarting in 1.0 s \(restart 1\)"
expect_log "restart" "replica-2 restarting \(restart 1\)"
expect_log "retry" "failed on replica-2 \(.*\); retrying on another replica"
if wait_ready 3 20; then
    pass "restart: 3 replicas ready again"
else
    fail "restart: 3 replicas are not ready again within 20 s"
fi
expect_equal "restart: restarts of replica-2" "$(replicas_field "j['replicas'][1]['restarts']")" 1
restarted=$(replicas_field "j['replicas'][1]['pid']")
if [ -n "$restarted" ] && [ "$restarted" != "$victim" ]; then
    pass "restart: replica-2 runs as a new process, pid $restarted"
else
    fail "restart: replica-2 pid is '$restarted', the killed one was $victim"
fi
request "metrics" GET /metrics
for line in 'distml_router_replica_crashes_total 1' 'distml_router_requests_total{code="200"}'; do
    if grep -qF "$line" "$tmp/body"; then
        pass "metrics: has $line"
    else
        fail "metrics: no $line"
    fi
done
if grep -q '^distml_router_requests_total{code="5' "$tmp/body"; then
    fail "metrics: the router answered with a 5xx status"
else
    pass "metrics: no 5xx replies"
fi

# A second crash of the same replica doubles the backoff.
kill -9 "$restarted"
for _ in $(seq 50); do
    grep -q "restart 2)" "$tmp/router.log" && break
    sleep 0.1
done
expect_log "second crash" "replica-2 crashed: pid $restarted, .* restarting in 2.0 s \(restart 2\)"
wait_ready 3 20 || fail "second crash: 3 replicas are not ready again within 20 s"

# Without the router, no replica stays behind.
pids=$(replicas_field "' '.join(str(r['pid']) for r in j['replicas'])")
kill -9 "$router_pid"
wait "$router_pid" 2>/dev/null
# Each replica gets SIGTERM and shuts down as usual.
for _ in $(seq 100); do
    running=0
    for pid in $pids; do
        kill -0 "$pid" 2>/dev/null && running=1
    done
    [ "$running" -eq 0 ] && break
    sleep 0.1
done
for pid in $pids; do
    if kill -0 "$pid" 2>/dev/null; then
        fail "router killed: replica pid $pid still runs"
        kill "$pid"
    else
        pass "router killed: replica pid $pid has exited"
    fi
done

finish
