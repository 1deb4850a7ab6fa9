#!/bin/sh
# A burst of 10 clients against one replica that serves one request at a
# time. In Knative Serving of October 2018, the queue-proxy of a container
# with concurrency 1 queued only one more request, so 10 clients got many
# 503s, each replica reported a concurrency of at most 2, and the
# autoscaler scaled up 1 -> 2 -> 4 -> 8 -> 10. `distml router` instead
# queues the burst (up to --max_queued_requests, 10000 by default), counts
# queued requests toward the observed concurrency, and its first scale-up
# sets the desired count to ceil(10 / effective target 1) = 10 replicas.
# The checks:
#   part 1 (--container_concurrency 1, 1 to 10 replicas, `hey -c 10`):
#     every reply is 2xx and the router rejects nothing. Requests wait in
#     the queue. The first scale-up decision goes from 1 straight to 10,
#     with about 10 observed while 1 replica is ready. /replicas then lists
#     10 ready replicas.
#   part 2 (--max_queued_requests 2, at most 1 replica): requests past the
#     bound get a 503 whose JSON body has an "error" field, and the others
#     are served.
#
# Each request carries 1000 JPEGs, so that a predict takes 100 to 140 ms
# (measured with curl against one `distml serve` on an idle 2-core
# machine), far longer than a client's turnaround between two requests. The
# stable window is 10 s, so the panic window is 1 s, and the panic average
# that sets the first scale-up covers only the last whole second. The
# router samples the load every second and decides every 2 s from its
# start. A decision at the end of the second in which the burst starts
# counts only part of it (a burst that started 350 ms into that second gave
# 1 -> 6 -> 10). So the load starts 100 to 400 ms after a decision, and the
# first decision counts a whole second of the burst.
# Load seconds default to 10; set DISTML_ROUTER_LOAD_SECONDS for more.
# Traffic goes to 127.0.0.1 only; every process is stopped by PID.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u

: "${DISTML:?set DISTML to the distml binary}"
load_seconds="${DISTML_ROUTER_LOAD_SECONDS:-10}"
here=$(dirname "$0")
fixtures="$here/../serve/fixtures"
NAME=router-queue-burst
. "$here/lib/checks.sh"
. "$here/lib/models.sh"
. "$here/lib/server.sh"
. "$here/lib/router.sh"

# A test that stops early still stops its router and hey. The replicas get
# SIGTERM when the router exits.
router_pid=""
hey_pid=""
stop_leftovers() {
    [ -n "$hey_pid" ] && kill "$hey_pid" 2>/dev/null
    [ -n "$router_pid" ] && kill "$router_pid" 2>/dev/null
}
trap stop_leftovers EXIT

if ! command -v hey >/dev/null; then
    echo "skipped: hey is not installed (scripts/bootstrap installs it)"
    exit 0
fi

# The value of the unlabelled /metrics sample NAME.
metric() {
    curl -s -m 5 "$url/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

root="$tmp/root"
make_noise_dataset "$root"
base="$tmp/models/fmnist"
make_model "$root" 1 2 "$base/1"
write_predict_body "$fixtures/F5-nonuniform-28.jpg" 1000 "$tmp/body.json"

# ---- part 1: the burst fits in the queue ----

start_router "$tmp/router.log" --model_name fmnist --model_base_path "$base" \
    --scale_target 1 --scale_metric concurrency --min_replicas 1 --max_replicas 10 \
    --container_concurrency 1 --stable_window 10s
wait_ready 1 30 || fail "start: the first replica is not ready within 30 s"

# Samples of "ms-since-the-load-started ready desired queued listed",
# every 0.2 s.
sample() {
    counts=$(replicas_field "'%d %d %d %d' % (j['ready_replicas'], j['desired_replicas'], \
j['requests_queued'], len(j['replicas']))")
    echo "$(($(now_ms) - t0)) $counts" >>"$tmp/samples"
}
wait_after_decision "$tmp/router.log"
phase=$(($(router_clock "$tmp/router.log") % 2000))
t0=$(now_ms)
hey -z "${load_seconds}s" -c 10 -m POST -T application/json -D "$tmp/body.json" \
    "$url/v1/models/fmnist:predict" >"$tmp/hey.txt" 2>&1 &
hey_pid=$!
while kill -0 "$hey_pid" 2>/dev/null; do
    sample
    sleep 0.2
done
wait "$hey_pid"
hey_pid=""
load_end=$(($(now_ms) - t0))
grep "scaling from" "$tmp/router.log" >"$tmp/decisions"
echo "load started $phase ms after a decision and ran $load_end ms"

expect_equal "burst: replies other than 2xx and errors" "$(hey_failures "$tmp/hey.txt")" 0
answered=$(hey_count "$tmp/hey.txt" 200)
if [ "$answered" -gt 0 ]; then
    pass "burst: $answered replies with status 200"
else
    fail "burst: no replies with status 200"
    sed 's/^/    hey: /' "$tmp/hey.txt"
fi
expect_equal "burst: distml_router_queue_full_total" "$(metric distml_router_queue_full_total)" 0
expect_equal "burst: distml_router_queue_timeouts_total" \
    "$(metric distml_router_queue_timeouts_total)" 0

# With one request per replica, anything past the ready count waits in the
# queue, so 10 clients and 1 ready replica leave up to 9 queued.
most_queued=$(awk '$4 > m { m = $4 } END { print m + 0 }' "$tmp/samples")
if [ "$most_queued" -ge 5 ]; then
    pass "burst: up to $most_queued requests queued"
else
    fail "burst: at most $most_queued requests queued, expected at least 5"
fi

# The first decision that scales up. A decision line reads "scaling from A
# to B replicas: stable concurrency S over 10 s, panic P over 1 s, target T
# per replica, R ready, M mode".
first=$(awk 'match($0, /scaling from [0-9]+ to [0-9]+ /) {
    split(substr($0, RSTART, RLENGTH), word, " ")
    if (word[5] + 0 > word[3] + 0) { print; exit }
}' "$tmp/decisions")
first_from=$(echo "$first" | sed -n 's/.*scaling from \([0-9]*\) to .*/\1/p')
first_to=$(echo "$first" | sed -n 's/.*scaling from [0-9]* to \([0-9]*\) replicas.*/\1/p')
first_panic=$(echo "$first" | sed -n 's/.*, panic \([0-9.]*\) over .*/\1/p')
first_ready=$(echo "$first" | sed -n 's/.* \([0-9]*\) ready, .*/\1/p')
expect_equal "first decision: from" "${first_from:-none}" 1
expect_equal "first decision: to" "${first_to:-none}" 10
expect_equal "first decision: ready replicas" "${first_ready:-none}" 1
# In flight is at most 1 (one ready replica, one request each), so a panic
# value near 10 counts the queued requests.
if awk -v p="${first_panic:-0}" 'BEGIN { exit !(p > 9) }'; then
    pass "first decision: observed concurrency $first_panic with 1 ready, above 9"
else
    fail "first decision: observed concurrency '${first_panic:-none}', expected above 9"
fi
if [ "$(wc -l <"$tmp/decisions")" -ne 1 ]; then
    fail "decisions: more than one scaling decision during the load"
    sed 's/^/    log: /' "$tmp/decisions"
else
    pass "decisions: one scaling decision during the load"
fi
first_desired=$(awk '$3 != 1 { print $3; exit }' "$tmp/samples")
expect_equal "/replicas: first desired count other than 1" "${first_desired:-none}" 10

all_ready_at=$(awk '$2 == 10 && $5 == 10 { print $1; exit }' "$tmp/samples")
if [ -n "$all_ready_at" ]; then
    pass "/replicas: 10 replicas listed and ready $all_ready_at ms into the load"
else
    fail "/replicas: never 10 replicas listed and ready during the load"
    tail -5 "$tmp/samples" | sed 's/^/    sample: /'
fi
expect_equal "burst: distml_router_replica_starts_total" \
    "$(metric distml_router_replica_starts_total)" 10
if grep -q "crashed" "$tmp/router.log"; then
    fail "burst: a replica crashed"
    grep "crashed" "$tmp/router.log" | sed 's/^/    log: /'
else
    pass "burst: no replica crashed"
fi

stop_router
router_pid=""
expect_equal "burst: SIGTERM exit status" "$router_status" 0

# ---- part 2: the burst overflows a queue of 2 ----

start_router "$tmp/router-small.log" --model_name fmnist --model_base_path "$base" \
    --scale_target 1 --min_replicas 1 --max_replicas 1 --container_concurrency 1 \
    --max_queued_requests 2 --stable_window 10s
wait_ready 1 30 || fail "small queue: the replica is not ready within 30 s"

# 1 request in flight and 2 queued leave 7 clients that get a 503 at once
# and send again, so -q 20 limits each client to 20 requests per second.
hey -z 4s -c 10 -q 20 -m POST -T application/json -D "$tmp/body.json" \
    "$url/v1/models/fmnist:predict" >"$tmp/hey-small.txt" 2>&1 &
hey_pid=$!
sleep 1
# A free queue slot may take this request too, so try a few times.
code=""
for _ in $(seq 20); do
    request "small queue: curl" POST /v1/models/fmnist:predict -H 'Expect:' \
        -H 'Content-Type: application/json' --data-binary "@$tmp/body.json"
    [ "$code" = 503 ] && break
    sleep 0.1
done
wait "$hey_pid"
hey_pid=""

expect_error "small queue: curl" 503 "The request queue is full: 2 requests are waiting"
rejected=$(hey_count "$tmp/hey-small.txt" 503)
served=$(hey_count "$tmp/hey-small.txt" 200)
if [ "$rejected" -gt 0 ]; then
    pass "small queue: hey got $rejected replies with status 503"
else
    fail "small queue: hey got no reply with status 503"
    sed 's/^/    hey: /' "$tmp/hey-small.txt"
fi
if [ "$served" -gt 0 ]; then
    pass "small queue: hey got $served replies with status 200"
else
    fail "small queue: hey got no reply with status 200"
fi
expect_equal "small queue: replies other than 200 and 503, and errors" \
    "$(($(hey_failures "$tmp/hey-small.txt") - rejected))" 0
full=$(metric distml_router_queue_full_total)
if [ "${full:-0}" -ge "$rejected" ]; then
    pass "small queue: distml_router_queue_full_total $full counts hey's $rejected 503s"
else
    fail "small queue: distml_router_queue_full_total '${full:-none}', below hey's $rejected 503s"
fi
if grep -q "rejected POST /v1/models/fmnist:predict: the queue is full with 2 requests" \
    "$tmp/router-small.log"; then
    pass "small queue: the log names the full queue of 2"
else
    fail "small queue: no 'the queue is full with 2 requests' in the log"
fi
# Rejections are logged at most 10 a second, and the rest are counted.
logged=$(grep -c "rejected POST" "$tmp/router-small.log")
if [ "$rejected" -gt 60 ] && [ "$logged" -le 60 ] &&
    grep -q "more request warnings were not logged" "$tmp/router-small.log"; then
    pass "small queue: $logged of $rejected rejections logged, the rest counted"
elif [ "$rejected" -le 60 ]; then
    pass "small queue: only $rejected rejections, too few to check the log's rate limit"
else
    fail "small queue: $logged rejection lines logged for $rejected rejections in 4 s"
fi
if grep -q "scaling from" "$tmp/router-small.log"; then
    fail "small queue: the router scaled past its maximum of 1 replica"
    grep "scaling from" "$tmp/router-small.log" | sed 's/^/    log: /'
else
    pass "small queue: no scaling past the maximum of 1 replica"
fi

stop_router
router_pid=""
expect_equal "small queue: SIGTERM exit status" "$router_status" 0

finish print_scaling_log "$tmp/router.log"
