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
