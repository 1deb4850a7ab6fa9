#!/bin/sh
# Replays the reference autoscaling run against `distml router`. With scale
# target 1 (concurrency), `hey -c 5` brings up 5 ready replicas during the
# load, and the first scaling decision goes straight from 1 to 5. After the
# stable window the router returns to the minimum of 1 replica, and no
# reply is other than 2xx.
#
# The reference run used `hey -z 30s` and Knative's 60 s stable window. To
# keep the suite short this test defaults to 12 s of load and a 10 s
# stable window (so a 1 s panic window); the scaling rule is the same.
# Replay the reference with
#   DISTML_ROUTER_LOAD_SECONDS=30 DISTML_ROUTER_STABLE_WINDOW=60s sh tests/integration/router_autoscale.sh
# Each request carries 50 JPEGs, so that a predict takes a few ms and the
# router, not hey, holds the 5 requests most of the time.
# Traffic goes to 127.0.0.1 only.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u

: "${DISTML:?set DISTML to the distml binary}"
load_seconds="${DISTML_ROUTER_LOAD_SECONDS:-12}"
window="${DISTML_ROUTER_STABLE_WINDOW:-10s}"
here=$(dirname "$0")
fixtures="$here/../serve/fixtures"
NAME=router-autoscale
. "$here/lib/checks.sh"
. "$here/lib/models.sh"
. "$here/lib/server.sh"
. "$here/lib/router.sh"

if ! command -v hey >/dev/null; then
    echo "skipped: hey is not installed (scripts/bootstrap installs it)"
    exit 0
fi
window_seconds=${window%s}
case "$window_seconds" in
*[!0-9]*) echo "DISTML_ROUTER_STABLE_WINDOW must be whole seconds such as 60s"; exit 2 ;;
esac

root="$tmp/root"
make_noise_dataset "$root"
base="$tmp/models/fmnist"
make_model "$root" 1 2 "$base/1"
write_predict_body "$fixtures/F5-nonuniform-28.jpg" 50 "$tmp/body.json"

start_router "$tmp/router.log" --model_name fmnist --model_base_path "$base" \
    --scale_target 1 --scale_metric concurrency --min_replicas 1 --max_replicas 10 \
    --stable_window "$window"
wait_ready 1 30 || fail "start: the first replica is not ready within 30 s"

# Samples of "seconds-since-start ready desired", every 0.2 s.
sample() {
    echo "$(($(date +%s%N) / 1000000 - t0)) $(replicas_field "'%d %d' % (j['ready_replicas'], j['desired_replicas'])")" \
        >>"$tmp/samples"
}
# A decision at the end of the second in which the load starts counts only
# part of that second, so the load starts just after a decision.
wait_after_decision "$tmp/router.log"
t0=$(($(date +%s%N) / 1000000))
hey -z "${load_seconds}s" -c 5 -m POST -T application/json -D "$tmp/body.json" \
    "$url/v1/models/fmnist:predict" >"$tmp/hey.txt" 2>&1 &
hey_pid=$!
while kill -0 "$hey_pid" 2>/dev/null; do
    sample
    sleep 0.2
done
wait "$hey_pid"
load_end=$(($(date +%s%N) / 1000000 - t0))
sample
after_load=$(tail -1 "$tmp/samples")
deadline=$((load_end + (window_seconds + 30) * 1000))
minimum_at=""
while [ "$(($(date +%s%N) / 1000000 - t0))" -lt "$deadline" ]; do
    sample
    if [ "$(tail -1 "$tmp/samples" | cut -d' ' -f2-)" = "1 1" ]; then
        minimum_at=$(tail -1 "$tmp/samples" | cut -d' ' -f1)
        break
    fi
    sleep 0.2
done

expect_equal "hey: replies other than 2xx and errors" "$(hey_failures "$tmp/hey.txt")" 0
answered=$(awk '/^  \[200\]/ { print $2 }' "$tmp/hey.txt")
if [ "${answered:-0}" -gt 0 ]; then
    pass "hey: $answered replies with status 200"
else
    fail "hey: no replies with status 200"
    sed 's/^/    hey: /' "$tmp/hey.txt"
fi
most_ready=$(awk -v end="$load_end" '$1 <= end && $2 > m { m = $2 } END { print m + 0 }' "$tmp/samples")
most_desired=$(awk '$3 > m { m = $3 } END { print m + 0 }' "$tmp/samples")
expect_equal "during the load: most ready replicas" "$most_ready" 5
expect_equal "whole run: most desired replicas" "$most_desired" 5
if grep -q "scaling from 1 to 5 replicas" "$tmp/router.log"; then
    pass "first decision: straight from 1 to 5 replicas"
else
    fail "first decision: no 'scaling from 1 to 5 replicas' in the log"
    grep "scaling from" "$tmp/router.log" | sed 's/^/    log: /'
fi
expect_equal "right after the load: ready replicas" "$(echo "$after_load" | cut -d' ' -f2)" 5
if [ -n "$minimum_at" ]; then
    back=$((minimum_at - load_end))
    # The stable average falls below 1 only when most of the window has no
    # load, so the minimum comes back after at least half of it.
    if [ "$back" -ge $((window_seconds * 500)) ]; then
        pass "after the load: back to 1 replica after $back ms (stable window $window)"
    else
        fail "after the load: back to 1 replica after only $back ms (stable window $window)"
    fi
else
    fail "after the load: not back to 1 replica within $((window_seconds + 30)) s"
    tail -5 "$tmp/samples" | sed 's/^/    sample: /'
fi
for line in "replica-5 draining" "replica-5 stopped: pid"; do
    if grep -q "$line" "$tmp/router.log"; then
        pass "scale-down: log has '$line'"
    else
        fail "scale-down: log lacks '$line'"
    fi
done
if grep -q "crashed" "$tmp/router.log"; then
    fail "replicas: a replica crashed"
    grep "crashed" "$tmp/router.log" | sed 's/^/    log: /'
else
    pass "replicas: none crashed"
fi

stop_router
expect_equal "SIGTERM: exit status" "$router_status" 0

finish print_scaling_log "$tmp/router.log"
