#!/bin/sh
# Integration test for `distml router` over loopback with curl. It covers
# usage errors, proxying to two replicas and spreading requests over them,
# /replicas and /metrics, and body limits (64 MiB bodies, chunked bodies, a
# stalled upload). Then SIGTERM, the bounded queue, and the request timeout
# at a replica and while queued for a replica that never becomes ready.
# The router listens on 127.0.0.1 on a port it picks, and is stopped by PID.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u

: "${DISTML:?set DISTML to the distml binary}"
here=$(dirname "$0")
fixtures="$here/../serve/fixtures"
NAME=router-sh
. "$here/lib/checks.sh"
. "$here/lib/models.sh"
. "$here/lib/server.sh"
. "$here/lib/router.sh"

# expect_exit NAME STATUS TEXT COMMAND...: COMMAND exits with STATUS and
# its stderr contains TEXT.
expect_exit() {
    name="$1" expected="$2" text="$3"
    shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    status=$?
    if [ "$status" -eq "$expected" ] && grep -qF -- "$text" "$tmp/err" "$tmp/out"; then
        pass "$name: exit status $expected, '$text'"
    else
        fail "$name: exit status $status, expected $expected with '$text'"
        sed 's/^/    stderr: /' "$tmp/err"
    fi
}

# --- usage errors ---
expect_exit "help" 0 "--stable_window DURATION          averaging window, 6s to 1h [60s]" \
    "$DISTML" router --help
expect_exit "unknown option" 2 "unknown option --nope" "$DISTML" router --nope
expect_exit "short stable window" 2 "invalid stable window 5 s: expected 6 s to 1 h" \
    "$DISTML" router --stable_window 5s
expect_exit "bad duration" 2 "invalid --stable_window '10x'" "$DISTML" router --stable_window 10x
expect_exit "bad metric" 2 "invalid --scale_metric 'cpu': expected concurrency or rps" \
    "$DISTML" router --scale_metric cpu
expect_exit "max under min" 2 "invalid maximum of 2 replicas: expected 3 (the minimum)" \
    "$DISTML" router --min_replicas 3 --max_replicas 2
expect_exit "low threshold" 2 "panic threshold percentage 100: expected 110 to 1000" \
    "$DISTML" router --panic_threshold_percentage 100
expect_exit "bad model name" 2 "invalid --model_name 'a/b'" "$DISTML" router --model_name a/b
expect_exit "bad bind address" 1 "invalid bind address 'nowhere'" \
    "$DISTML" router --bind_address nowhere --port 0

root="$tmp/root"
make_noise_dataset "$root"
base="$tmp/models/fmnist"
make_model "$root" 1 2 "$base/1"
M=fmnist
F1=$(b64_file "$fixtures/F1-gray128-baseline-28.jpg")
# predict NAME BODY [CURL ARGS...]
predict() {
    name="$1" data="$2"
    shift 2
    request "$name" POST "/v1/models/$M:predict" -H 'Content-Type: application/json' \
        --data-binary "$data" "$@"
}
one_prediction="isinstance(j['predictions'], list) and len(j['predictions']) == 1 and len(j['predictions'][0]) == 10"

# --- two replicas ---
start_router "$tmp/router.log" --model_name "$M" --model_base_path "$base" \
    --min_replicas 2 --max_replicas 2 --rest_api_timeout_in_ms 2000 --request_timeout_ms 20000
if wait_ready 2 30; then
    pass "two replicas: both ready"
else
    fail "two replicas: not ready within 30 s"
    sed 's/^/    log: /' "$tmp/router.log"
fi
request "replicas" GET /replicas
expect_code "replicas" 200
expect_json_type "replicas"
expect_json "replicas" "[r['name'] for r in j['replicas']] == ['replica-1', 'replica-2']"
expect_json "replicas" "all(r['state'] == 'ready' for r in j['replicas'])"
expect_json "replicas" "len({r['port'] for r in j['replicas']}) == 2 and all(r['port'] > 0 for r in j['replicas'])"
expect_json "replicas" "all(r['in_flight'] == 0 and r['restarts'] == 0 and r['pid'] > 0 for r in j['replicas'])"
expect_json "replicas" "all(isinstance(r['age_seconds'], (int, float)) for r in j['replicas'])"
expect_json "replicas" "j['desired_replicas'] == 2 and j['ready_replicas'] == 2"
expect_json "replicas" "j['autoscaler']['metric'] == 'concurrency' and j['autoscaler']['target'] == 70"
replica_port=$(replicas_field "j['replicas'][0]['port']")
replica_pids=$(replicas_field "' '.join(str(r['pid']) for r in j['replicas'])")

predict "predict" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "predict" 200
expect_json "predict" "$one_prediction"
cp "$tmp/body" "$tmp/routed.json"
router_url="$url"
url="http://127.0.0.1:$replica_port"
predict "predict at the replica" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
url="$router_url"
if cmp -s "$tmp/body" "$tmp/routed.json"; then
    pass "predict: same reply through the router as from the replica"
else
    fail "predict: the reply through the router differs from the replica's"
fi
request "V2 ready" GET /v2/health/ready
expect_code "V2 ready" 200
request "model status" GET "/v1/models/$M"
expect_json "model status" "j['model_version_status'][0]['state'] == 'AVAILABLE'"
request "unknown path" GET /nothing/here
expect_error "unknown path" 404 "Not found: GET /nothing/here"
request "POST /replicas" POST /replicas --data-binary '{}'
expect_error "POST /replicas" 405 "Method POST is not allowed on /replicas; use GET"

# Sequential requests alternate between the two idle replicas.
for _ in $(seq 10); do
    curl -s -o /dev/null -X POST "$url/v1/models/$M:predict" \
        --data-binary '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
done
for p in $(replicas_field "' '.join(str(r['port']) for r in j['replicas'])"); do
    served=$(curl -s "http://127.0.0.1:$p/metrics" | sed -n 's/^distml_requests_total{code="200"} //p')
    if [ "${served:-0}" -ge 3 ]; then
        pass "spreading: the replica on port $p served $served requests"
    else
        fail "spreading: the replica on port $p served ${served:-0} requests"
    fi
done

# --- request body limits, checked by the router before it reads a body ---
"$PYTHON" - "$F1" "$tmp" <<'EOF'
import sys
b64, tmp = sys.argv[1], sys.argv[2]
one = '{"image_bytes":{"b64":"%s"}}' % b64
count = 64 * 1024 * 1024 // (len(one) + 1) + 1
open(tmp + "/64mib.json", "w").write('{"instances":[' + ",".join([one] * count) + "]}")
body = '{"instances":[%s]}' % one
open(tmp + "/under-limit.json", "w").write(body[:-1] + " " * (32 * 1024 * 1024 - 1024 - len(body)) + "}")
EOF
predict "64 MiB body" "@$tmp/64mib.json"
expect_error "64 MiB body" 413 "larger than the maximum of 33554432 bytes (set by --max_body_bytes)"
expect_error "64 MiB body" 413 "Request body of 67"
predict "64 MiB chunked body" "@$tmp/64mib.json" -H 'Transfer-Encoding: chunked'
expect_error "64 MiB chunked body" 413 "Request body is larger than the maximum of 33554432 bytes"
predict "chunked body" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}' -H 'Transfer-Encoding: chunked'
expect_code "chunked body" 200
expect_json "chunked body" "$one_prediction"
predict "body under the limit" "@$tmp/under-limit.json"
expect_code "body under the limit" 200
"$PYTHON" - "${url#http://127.0.0.1:}" >"$tmp/stall.out" <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
def send(length):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % length + b" " * 1024)
    s.settimeout(10)
    start = time.time()
    data = b""
    try:
        while True:
            part = s.recv(4096)
            if not part:
                break
            data += part
    except socket.timeout:
        pass
    return data, time.time() - start
data, seconds = send(64 * 1024 * 1024)
print("announced64", data.split(b"\r\n", 1)[0].decode(), round(seconds, 1))
print("body", data.split(b"\r\n\r\n", 1)[-1].decode())
data, seconds = send(1024 * 1024)
print("stalled", data.split(b"\r\n", 1)[0].decode() or "closed", round(seconds, 1))
EOF
if grep -q "^announced64 HTTP/1.1 413 .* 0\.[0-9]$" "$tmp/stall.out" &&
    grep -q '^body {"error":"Request body of 67108864 bytes' "$tmp/stall.out"; then
    pass "64 MiB announced, 1 KiB sent: JSON 413 at once"
else
    fail "64 MiB announced, 1 KiB sent: $(cat "$tmp/stall.out")"
fi
if awk '/^stalled/ { exit !($NF >= 1.5 && $NF < 8) }' "$tmp/stall.out"; then
    pass "stalled upload: closed after the 2 s timeout ($(grep stalled "$tmp/stall.out"))"
else
    fail "stalled upload: $(grep stalled "$tmp/stall.out")"
fi
# Framing: a header block over 64 KiB, two pipelined requests of which the
# second is too large, and a chunked body sent a few bytes at a time.
"$PYTHON" - "${url#http://127.0.0.1:}" "$F1" >"$tmp/framing.out" <<'EOF'
import json, re, socket, sys, time
port, b64 = int(sys.argv[1]), sys.argv[2]
def read_all(s):
    s.settimeout(10)
    data = b""
    try:
        while True:
            part = s.recv(65536)
            if not part:
                break
            data += part
    except socket.timeout:
        pass
    return data
def statuses(data):
    return [code.decode() for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /v1/models/fmnist HTTP/1.1\r\nHost: t\r\nX-Padding: " + b"a" * 70000 + b"\r\n\r\n")
data = read_all(s)
print("headers", " ".join(statuses(data)), b"larger than the maximum of 65536 bytes" in data)
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /v1/models/fmnist HTTP/1.1\r\nHost: t\r\n\r\n"
          b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: t\r\nContent-Length: 67108864\r\n\r\n")
data = read_all(s)
print("pipelined", " ".join(statuses(data)), b'"AVAILABLE"' in data)
body = json.dumps({"instances": [{"image_bytes": {"b64": b64}}]}).encode()
chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100])
                  for i in range(0, len(body), 100))
message = (b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
s = socket.create_connection(("127.0.0.1", port))
for i in range(0, len(message), 7):
    s.sendall(message[i:i + 7])
    time.sleep(0.0005)
data = read_all(s)
print("trickled", " ".join(statuses(data)), b'"predictions"' in data)
EOF
if grep -q "^headers 431 True$" "$tmp/framing.out"; then
    pass "header block over 64 KiB: JSON 431"
else
    fail "header block over 64 KiB: $(grep headers "$tmp/framing.out")"
fi
if grep -q "^pipelined 200 413 True$" "$tmp/framing.out"; then
    pass "pipelined requests: 200 for the first, 413 for the oversized second"
else
    fail "pipelined requests: $(grep pipelined "$tmp/framing.out")"
fi
if grep -q "^trickled 200 True$" "$tmp/framing.out"; then
    pass "chunked body sent 7 bytes at a time: 200 with a prediction"
else
    fail "chunked body sent 7 bytes at a time: $(grep trickled "$tmp/framing.out")"
fi
predict "F1 after body limits" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "F1 after body limits" 200
expect_equal "replicas after body limits" "$(replicas_field "j['ready_replicas']")" 2

# --- metrics ---
request "metrics" GET /metrics
expect_code "metrics" 200
case "$type" in
text/plain*) pass "metrics: Content-Type $type" ;;
*) fail "metrics: Content-Type '$type'" ;;
esac
for line in 'distml_router_requests_total{code="200"}' 'distml_router_requests_total{code="413"}' \
    'distml_router_request_duration_seconds_bucket{le="+Inf"}' 'distml_router_replicas{state="ready"} 2' \
    'distml_router_replica_in_flight{replica="replica-1"} 0' 'distml_router_desired_replicas 2' \
    'distml_router_retries_total 0' 'distml_router_panic_mode 0'; do
    if grep -qF "$line" "$tmp/body"; then
        pass "metrics: has $line"
    else
        fail "metrics: no $line"
    fi
done

# --- SIGTERM stops the replicas and exits 0 ---
stop_router
expect_equal "SIGTERM" "$router_status" 0
for line in "stopping on SIGTERM" "replica-1 stopped: pid" "replica-2 stopped: pid" " I stopped"; do
    if grep -qF "$line" "$tmp/router.log"; then
        pass "SIGTERM: log has '$line'"
    else
        fail "SIGTERM: log lacks '$line'"
    fi
done
for pid in $replica_pids; do
    if kill -0 "$pid" 2>/dev/null; then
        fail "SIGTERM: replica pid $pid still runs"
        kill "$pid"
    else
        pass "SIGTERM: replica pid $pid has exited"
    fi
done

# --- the bounded queue: one replica serving one request at a time ---
# 16,000 images take a replica about half a second on one core.
write_predict_body "$fixtures/F5-nonuniform-28.jpg" 16000 "$tmp/slow.json"
start_router "$tmp/queue.log" --model_name "$M" --model_base_path "$base" \
    --max_replicas 1 --container_concurrency 1 --max_queued_requests 2 --request_timeout_ms 60000
wait_ready 1 30 || fail "queue: the replica is not ready"
clients=""
for i in 1 2 3 4 5 6; do
    curl -s -o "$tmp/queue-$i.json" -w '%{http_code}' -X POST "$url/v1/models/$M:predict" \
        --data-binary "@$tmp/slow.json" >"$tmp/queue-$i.code" &
    clients="$clients $!"
done
# Only the clients: a bare `wait` would wait for the router too.
wait $clients
ok=0 full=0
for i in 1 2 3 4 5 6; do
    case "$(cat "$tmp/queue-$i.code")" in
    200) ok=$((ok + 1)) ;;
    503)
        grep -q '"The request queue is full: 2 requests are waiting for a replica' "$tmp/queue-$i.json" &&
            full=$((full + 1))
        ;;
    esac
done
expect_equal "queue: requests served" "$ok" 3
expect_equal "queue: JSON 503s for a full queue" "$full" 3
stop_router
expect_equal "queue: SIGTERM exit status" "$router_status" 0

# --- the request timeout at a replica ---
start_router "$tmp/timeout.log" --model_name "$M" --model_base_path "$base" \
    --max_replicas 1 --request_timeout_ms 100
wait_ready 1 30 || fail "timeout: the replica is not ready"
request "slow at the replica" POST "/v1/models/$M:predict" --data-binary "@$tmp/slow.json"
expect_error "slow at the replica" 504 "replica-1 did not reply within 100 ms (--request_timeout_ms)"
predict "after the timeout" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "after the timeout" 200
stop_router
expect_equal "timeout: SIGTERM exit status" "$router_status" 0

# --- the request timeout while queued: a replica that never becomes ready ---
mkdir -p "$tmp/empty"
start_router "$tmp/empty.log" --model_name "$M" --model_base_path "$tmp/empty" \
    --request_timeout_ms 1000
sleep 0.5
expect_equal "no model: replica state" "$(replicas_field "j['replicas'][0]['state']")" starting
predict "no model" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_error "no model" 503 "No replica was ready to serve the request within 1000 ms"
stop_router
expect_equal "no model: SIGTERM exit status" "$router_status" 0

# --- the rps metric: 40 requests in about a second with a target of 1 rps ---
start_router "$tmp/rps.log" --model_name "$M" --model_base_path "$base" \
    --scale_metric rps --scale_target 1 --max_replicas 3
wait_ready 1 30 || fail "rps: the first replica is not ready"
for _ in $(seq 40); do
    curl -s -o /dev/null -X POST "$url/v1/models/$M:predict" \
        --data-binary '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
done
if wait_ready 3 10; then
    pass "rps: 3 replicas ready after the burst"
else
    fail "rps: $(replicas_field "j['ready_replicas']") replicas ready after the burst, expected 3"
fi
if grep -qE "scaling from 1 to [23] replicas: stable rps" "$tmp/rps.log"; then
    pass "rps: the scaling decision counts requests per second"
else
    fail "rps: no 'scaling from 1 to 2 or 3 replicas: stable rps' in the log"
    grep "scaling" "$tmp/rps.log" | sed 's/^/    log: /'
fi
stop_router
expect_equal "rps: SIGTERM exit status" "$router_status" 0

finish
