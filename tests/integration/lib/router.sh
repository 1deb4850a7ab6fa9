# Helpers for the router integration tests; source after lib/server.sh
# (for request and the expect_ helpers), with $DISTML and $tmp set.
#   start_router LOG ARGS...  start `distml router ARGS` on a free loopback
#                             port; sets $router_pid and $url
#   stop_router               SIGTERM, then wait; sets $router_status
#   wait_ready N SECONDS      wait until N replicas are ready; returns 1 on
#                             timeout
#   replicas_field EXPRESSION print a Python expression over the /replicas
#                             JSON, `j`
#   hey_failures FILE         print the replies other than 2xx plus the
#                             errors in a hey report
#   hey_count FILE STATUS     print hey's count of replies with STATUS
#   now_ms                    print the wall clock in milliseconds
#   wait_after_decision LOG   wait until the router of LOG is 100 to 400 ms
#                             past a scaling decision
#   print_scaling_log LOG     print the scaling and panic lines of LOG,
#                             indented, for a failed test's output

start_router() {
    log="$1"
    shift
    rm -f "$log"
    "$DISTML" router --port 0 --bind_address 127.0.0.1 "$@" 2>"$log" &
    router_pid=$!
    url=""
    for _ in $(seq 100); do
        # The router's own line, not a replica's, which the router logs
        # under the replica's name.
        port=$(sed -n 's|^[^ ]* [0-9]* I listening on http://127\.0\.0\.1:\([0-9]*\) for model .* replicas:.*|\1|p' \
            "$log" 2>/dev/null | head -1)
        if [ -n "$port" ]; then
            url="http://127.0.0.1:$port"
            return 0
        fi
        kill -0 "$router_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "the router did not start:"
    sed 's/^/    log: /' "$log"
    kill "$router_pid" 2>/dev/null
    exit 2
}

stop_router() {
    kill -TERM "$router_pid"
    wait "$router_pid"
    router_status=$?
}

replicas_field() {
    curl -s -m 5 "$url/replicas" | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
print(eval(sys.argv[1]))
' "$1" 2>/dev/null
}

wait_ready() {
    steps=$(($2 * 10))
    for _ in $(seq "$steps"); do
        [ "$(replicas_field "j['ready_replicas']")" = "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

hey_failures() {
    awk '
        /^  \[[0-9]+\][[:space:]]+[0-9]+ responses/ { if ($1 !~ /^\[2[0-9][0-9]\]$/) bad += $2 }
        /^Error distribution:/ { errors = 1; next }
        errors && /^  \[[0-9]+\]/ { bad += substr($1, 2, length($1) - 2) }
        END { print bad + 0 }
    ' "$1"
}

# A predict body of COUNT copies of the JPEG FILE, written to OUT.
write_predict_body() {
    "$PYTHON" - "$1" "$2" "$3" <<'PY'
import base64, sys
image, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
one = '{"image_bytes":{"b64":"%s"}}' % base64.b64encode(open(image, "rb").read()).decode()
open(out, "w").write('{"instances":[' + ",".join([one] * count) + "]}")
PY
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Milliseconds since the router armed its one-second sampling timer, which
# it does just before it logs the line that start_router reads the port from.
router_clock() {
    pattern='s|^\([^ ]*\) [0-9]* I listening on http://127\.0\.0\.1:[0-9]* for model .*|\1|p'
    stamp=$(sed -n "$pattern" "$1" | head -1)
    echo $(($(now_ms) - $(date -d "$stamp" +%s%3N)))
}

# Waits until the router's clock is 100 to 400 ms past a scaling decision,
# which it makes every 2 s from its start.
wait_after_decision() {
    while :; do
        phase=$(($(router_clock "$1") % 2000))
        [ "$phase" -ge 100 ] && [ "$phase" -lt 400 ] && return 0
        sleep "$(((2100 - phase) % 2000 / 1000)).$(printf '%03d' $(((2100 - phase) % 1000)))"
    done
}

# hey's count of replies with STATUS, 0 when it got none.
hey_count() {
    awk -v code="[$2]" '$1 == code { n = $2 } END { print n + 0 }' "$1"
}

print_scaling_log() {
    grep -E "scaling|panic" "$1" | sed 's/^/    log: /'
}
