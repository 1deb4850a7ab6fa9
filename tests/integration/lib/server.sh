# Helpers for the model-server integration tests; source after setting
# $DISTML and $tmp, and define pass and fail first.
#   start_server LOG ARGS...   start `distml serve ARGS` on a free loopback
#                              port; sets $server_pid and $url
#   stop_server                SIGTERM, then wait; sets $server_status
#   request NAME METHOD PATH [curl args]
#                              send a request; the reply's status, content
#                              type and body land in $code, $type, $tmp/body
#   expect_json NAME EXPRESSION
#                              the body is strict JSON (no NaN) and the
#                              Python EXPRESSION over it, `j`, is true

PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

start_server() {
    log="$1"
    shift
    rm -f "$log"
    "$DISTML" serve --rest_api_port 0 --bind_address 127.0.0.1 "$@" 2>"$log" &
    server_pid=$!
    url=""
    for _ in $(seq 100); do
        port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$log" 2>/dev/null)
        if [ -n "$port" ]; then
            url="http://127.0.0.1:$port"
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "the server did not start:"
    sed 's/^/    log: /' "$log"
    kill "$server_pid" 2>/dev/null
    exit 2
}

stop_server() {
    kill -TERM "$server_pid"
    wait "$server_pid"
    server_status=$?
}

request() {
    name="$1"
    method="$2"
    path="$3"
    shift 3
    reply=$(curl -s -o "$tmp/body" -w '%{http_code} %{content_type}' -X "$method" "$@" \
        "$url$path")
    code=${reply%% *}
    type=${reply#* }
}

expect_code() {
    if [ "$code" = "$2" ]; then
        pass "$1: status $2"
    else
        fail "$1: status $code, expected $2"
        sed 's/^/    body: /' "$tmp/body" | head -20
    fi
}

expect_json_type() {
    if [ "$type" = "application/json" ]; then
        pass "$1: Content-Type application/json"
    else
        fail "$1: Content-Type '$type'"
    fi
}

expect_json() {
    if "$PYTHON" -c '
import json, sys
def reject(token):
    raise ValueError("non-standard token " + token)
j = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"), parse_constant=reject)
sys.exit(0 if eval(sys.argv[2]) else 1)
' "$tmp/body" "$2" 2>"$tmp/json-error"; then
        pass "$1: $2"
    else
        fail "$1: not true for the body: $2"
        sed 's/^/    /' "$tmp/json-error"
        head -c 600 "$tmp/body" | sed 's/^/    body: /'
        echo
    fi
}

# expect_error NAME STATUS TEXT: a JSON error reply with STATUS whose
# message contains TEXT.
expect_error() {
    expect_code "$1" "$2"
    expect_json_type "$1"
    expect_json "$1" "isinstance(j, dict) and isinstance(j.get('error'), str)"
    expect_json "$1" "$(printf '%s' "$3" | "$PYTHON" -c 'import sys; print(repr(sys.stdin.read()))') in j['error']"
    if grep -qF "\\'" "$tmp/body"; then
        fail "$1: the body contains the invalid escape \\'"
    fi
}

# base64 of a file on one line.
b64_file() { base64 -w0 "$1"; }
