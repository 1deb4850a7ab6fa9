#!/bin/sh
# Integration test for `distml serve` over loopback with curl. It covers
# version folders and their numeric order, TensorFlow Serving's predict,
# status and metadata, errors as strict JSON, both base64 alphabets, mixed
# instances, undecodable images and the resize convention end to end. Then
# body limits, KServe V2, metrics, version swaps under load and draining on
# SIGTERM.
# The server listens on 127.0.0.1 on a port it picks, and is stopped by PID.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u

: "${DISTML:?set DISTML to the distml binary}"
here=$(dirname "$0")
fixtures="$here/../serve/fixtures"
NAME=serve-sh
. "$here/lib/checks.sh"
. "$here/lib/models.sh"
. "$here/lib/server.sh"

root="$tmp/root"
make_noise_dataset "$root"
make_model "$root" 1 2 "$tmp/models/a"
make_model "$root" 2 40 "$tmp/models/b"

# Versions 1, 2 and 10 beside folders that are not version numbers.
base="$tmp/models/fmnist"
mkdir -p "$base"
cp -r "$tmp/models/a" "$base/1"
cp -r "$tmp/models/b" "$base/2"
cp -r "$tmp/models/a" "$base/10"
for name in tmp v0.1 11.partial; do cp -r "$tmp/models/b" "$base/$name"; done

# --- flag combinations that cannot work are rejected before the server starts ---
# expect_flag_error NAME MESSAGE FLAGS...: distml serve exits 2 with MESSAGE.
expect_flag_error() {
    name="$1" message="$2"
    shift 2
    "$DISTML" serve --model_base_path "$base" --rest_api_port 0 "$@" >"$tmp/flags.out" 2>&1
    status=$?
    expect_equal "flags: $name: exit status" "$status" 2
    if grep -qF "$message" "$tmp/flags.out"; then
        pass "flags: $name: message"
    else
        fail "flags: $name: the output lacks '$message'"
        sed 's/^/    output: /' "$tmp/flags.out"
    fi
}
expect_flag_error "header timeout over the idle timeout" \
    "invalid --header_timeout_in_ms 60000: the idle timeout --rest_api_timeout_in_ms (30000) also bounds the headers" \
    --header_timeout_in_ms 60000
expect_flag_error "per-address limit over the connection limit" \
    "invalid --max_connections_per_ip 11: more than --max_connections (10)" \
    --max_connections 10 --max_connections_per_ip 11

start_server "$tmp/server.log" --model_name fmnist --model_base_path "$base" \
    --file_system_poll_wait_seconds 1 --rest_api_timeout_in_ms 2000
M=fmnist
F1=$(b64_file "$fixtures/F1-gray128-baseline-28.jpg")
F3=$(b64_file "$fixtures/F3-stripes1px-56.jpg")
F4=$(b64_file "$fixtures/F4-stripes2px-56.jpg")
predict() { request "$1" POST "/v1/models/$M:predict" -H 'Content-Type: application/json' --data-binary "$2"; }
one_prediction="isinstance(j['predictions'], list) and len(j['predictions']) == 1 and len(j['predictions'][0]) == 10 and abs(sum(j['predictions'][0]) - 1) < 1e-5"

# --- version folders: numeric order, non-integer folders ignored ---
request "status" GET "/v1/models/$M"
expect_code "status" 200
expect_json_type "status"
expect_json "status" "[(s['version'], s['state']) for s in j['model_version_status']] == [('10', 'AVAILABLE')]"
expect_json "status" "j['model_version_status'][0]['status'] == {'error_code': 'OK', 'error_message': ''}"
request "status of version 10" GET "/v1/models/$M/versions/10"
expect_code "status of version 10" 200
request "status of version 2" GET "/v1/models/$M/versions/2"
expect_error "status of version 2" 404 "Could not find version 2 of model fmnist"
request "predict version 2" POST "/v1/models/$M/versions/2:predict" --data-binary \
    '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_error "predict version 2" 404 "Servable not found for request: Specific(fmnist, 2)"
request "predict version 10" POST "/v1/models/$M/versions/10:predict" --data-binary \
    '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "predict version 10" 200
expect_json "predict version 10" "$one_prediction"
request "metadata" GET "/v1/models/$M/metadata"
expect_code "metadata" 200
expect_json "metadata" "j['model_spec'] == {'name': 'fmnist', 'signature_name': '', 'version': '10'}"
expect_json "metadata" "'image_bytes' in j['metadata']['signature_def']['signature_def']['serving_default']['inputs']"
if grep -qE "v0\.1|11\.partial|$base/tmp" "$tmp/server.log"; then
    fail "version folders: the log mentions a folder that is not a version"
else
    pass "version folders: folders that are not versions are ignored silently"
fi

# --- base64 alphabets and padding ---
predict "standard base64" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "standard base64" 200
expect_json_type "standard base64"
expect_json "standard base64" "$one_prediction"
cp "$tmp/body" "$tmp/f1-standard.json"
U=$(printf '%s' "$F1" | tr '+/' '-_')
predict "url-safe base64" '{"instances":[{"image_bytes":{"b64":"'"$U"'"}}]}'
expect_code "url-safe base64" 200
if cmp -s "$tmp/body" "$tmp/f1-standard.json"; then
    pass "url-safe base64: same reply as the standard alphabet"
else
    fail "url-safe base64: reply differs from the standard alphabet"
fi
predict "missing padding" '{"instances":[{"image_bytes":{"b64":"QQ"}}]}'
expect_error "missing padding" 400 "Failed to process element: 0 of 'instances' list. Error: Unable to decode image"
predict "illegal character" '{"instances":[{"image_bytes":{"b64":"abc$"}}]}'
expect_error "illegal character" 400 "element: 0 of 'instances' list. Error: Unable to base64 decode"
request "healthy after errors" GET "/v1/models/$M"
expect_code "healthy after errors" 200

# --- instances of different sizes and kinds ---
predict "two image sizes" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}},{"image_bytes":{"b64":"'"$F3"'"}}]}'
expect_code "two image sizes" 200
expect_json "two image sizes" "len(j['predictions']) == 2 and all(len(p) == 10 for p in j['predictions'])"
predict "wrong key" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}},{"image":{"b64":"'"$F1"'"}}]}'
expect_error "wrong key" 400 "Failed to process element: 1 of 'instances' list. Error: JSON object: does not have named input: image_bytes"
expect_json "wrong key" "'predictions' not in j"
n784=$("$PYTHON" -c 'print(",".join(["0.5"] * 784))')
n783=$("$PYTHON" -c 'print(",".join(["0.5"] * 783))')
predict "784 and 783 numbers" "{\"instances\":[[$n784],[$n783]]}"
expect_error "784 and 783 numbers" 400 "element: 1 of 'instances' list. Error: Expecting tensor size: 784 but got: 783"

# --- the resize convention end to end: F3 is all 0.5, F4 alternates 0 and 1 ---
predict "F3 image" '{"instances":[{"b64":"'"$F3"'"}]}'
cp "$tmp/body" "$tmp/f3.json"
predict "uniform 0.5 pixels" "{\"instances\":[[$n784]]}"
if cmp -s "$tmp/body" "$tmp/f3.json"; then
    pass "F3 image: same prediction as 784 pixels of 0.5"
else
    fail "F3 image: prediction differs from 784 pixels of 0.5"
fi
stripes=$("$PYTHON" -c 'print(",".join(["[" + ",".join(["0", "1"] * 14) + "]"] * 28))')
predict "F4 image" '{"instances":[{"b64":"'"$F4"'"}]}'
cp "$tmp/body" "$tmp/f4.json"
predict "alternating pixels" "{\"instances\":[[$stripes]]}"
if cmp -s "$tmp/body" "$tmp/f4.json"; then
    pass "F4 image: same prediction as columns alternating 0 and 1"
else
    fail "F4 image: prediction differs from columns alternating 0 and 1"
fi

# --- bytes that are not a JPEG ---
"$PYTHON" - "$tmp/small.png" <<'EOF'
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\0" + bytes((x * 9 + y * 5) % 256 for x in range(28)) for y in range(28))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open(sys.argv[1], "wb").write(png)
EOF
head -c 784 /dev/zero | tr '\0' '\100' >"$tmp/raw784"
head -c 200 "$fixtures/F1-gray128-baseline-28.jpg" >"$tmp/f1-cut.jpg"
predict "full PNG" '{"instances":[{"b64":"'"$(b64_file "$tmp/small.png")"'"}]}'
expect_code "full PNG" 200
expect_json "full PNG" "$one_prediction"
for value in iVBORw0KGgo= R0lGODlh aGVsbG8gd29ybGQ= "$(b64_file "$tmp/raw784")" \
    "$(b64_file "$tmp/f1-cut.jpg")"; do
    predict "not an image" '{"instances":[{"image_bytes":{"b64":"'"$value"'"}}]}'
    expect_error "not an image ($(printf '%s' "$value" | cut -c1-16))" 400 "Unable to decode image"
done
predict "GIF header" '{"instances":[{"image_bytes":{"b64":"R0lGODlh"}}]}'
expect_error "GIF header" 400 "unsupported image format GIF"
predict "F1 after bad images" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "F1 after bad images" 200

# --- error messages stay valid JSON ---
predict "no instances" '{"signature_name":"serving_default"}'
expect_error "no instances" 400 "Missing 'inputs' or 'instances' key"
predict "both keys" '{"instances":[1],"inputs":[1]}'
expect_error "both keys" 400 "only one of 'inputs' or 'instances'"
request "quote and backslash in name" POST "/v1/models/a%22b%5Cc:predict" --data-binary '{"instances":[]}'
expect_error "quote and backslash in name" 404 'Servable not found for request: Latest(a"b\c)'
request "NUL in model name" POST "/v1/models/$M%00xyz:predict" \
    --data-binary '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_error "NUL in model name" 400 "Malformed request"
predict "raw control characters" "$(printf '{"instances":[{"image_bytes":{"b64":"\001\n"}}]}')"
expect_error "raw control characters" 400 "JSON Parse error: Invalid encoding in string."
predict "escaped control characters" '{"instances":[{"image_bytes":{"b64":"\u0001\n"}}]}'
expect_error "escaped control characters" 400 "$(printf "invalid character '\001'")"
if grep -qF '\u0001' "$tmp/body"; then
    pass "escaped control characters: written as \\u0001"
else
    fail "escaped control characters: no \\u0001 in the body"
fi
predict "empty body" ''
expect_error "empty body" 400 "JSON Parse error: The document is empty"
request "unknown path" GET "/nothing/here"
expect_error "unknown path" 404 "Not found: GET /nothing/here"
request "predict with GET" GET "/v1/models/$M:predict"
expect_error "predict with GET" 400 "Malformed request: GET /v1/models/fmnist:predict"

# --- request body limits ---
"$PYTHON" - "$F1" "$tmp" <<'EOF'
import sys
b64, tmp = sys.argv[1], sys.argv[2]
one = '{"image_bytes":{"b64":"%s"}}' % b64
count = 64 * 1024 * 1024 // (len(one) + 1) + 1
open(tmp + "/64mib.json", "w").write('{"instances":[' + ",".join([one] * count) + "]}")
# One instance padded with spaces to 1 KiB under the 32 MiB limit.
body = '{"instances":[%s]}' % one
open(tmp + "/under-limit.json", "w").write(body[:-1] + " " * (32 * 1024 * 1024 - 1024 - len(body)) + "}")
EOF
predict "64 MiB body" "@$tmp/64mib.json"
expect_error "64 MiB body" 413 "larger than the maximum of 33554432 bytes"
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
data, seconds = send(1024 * 1024)
print("stalled", data.split(b"\r\n", 1)[0].decode() or "closed", round(seconds, 1))
EOF
if grep -q "^announced64 HTTP/1.1 413 .* 0\.[0-9]$" "$tmp/stall.out"; then
    pass "64 MiB announced, 1 KiB sent: 413 at once"
else
    fail "64 MiB announced, 1 KiB sent: $(grep announced64 "$tmp/stall.out")"
fi
if awk '/^stalled/ { exit !($NF >= 1.5 && $NF < 8) }' "$tmp/stall.out"; then
    pass "stalled upload: closed after the 2 s timeout ($(grep stalled "$tmp/stall.out"))"
else
    fail "stalled upload: $(grep stalled "$tmp/stall.out")"
fi
predict "F1 after body limits" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "F1 after body limits" 200

# --- KServe V2 ---
rows=$("$PYTHON" -c 'print(",".join(["[" + ",".join(["0.5"] * 28) + "]"] * 28))')
infer() { request "$1" POST "/v2/models/$M/infer" --data-binary "$2"; }
v2_input='{"inputs":[{"name":"input-0","shape":%s,"datatype":"%s","data":%s}]}'
infer "V2 nested data" "$(printf "$v2_input" '[1,28,28]' FP32 "[[$rows]]")"
expect_code "V2 nested data" 200
expect_json_type "V2 nested data"
expect_json "V2 nested data" "[(o['name'], o['shape'], o['datatype'], len(o['data'])) for o in j['outputs']] == [('predictions', [1, 10], 'FP32', 10)]"
expect_json "V2 nested data" "j['model_name'] == 'fmnist' and j['model_version'] == '10'"
"$PYTHON" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["outputs"]))' "$tmp/body" >"$tmp/nested-outputs"
infer "V2 flat data" "$(printf "$v2_input" '[1,28,28]' FP32 "[$n784]")"
expect_code "V2 flat data" 200
"$PYTHON" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["outputs"]))' "$tmp/body" >"$tmp/flat-outputs"
if cmp -s "$tmp/nested-outputs" "$tmp/flat-outputs"; then
    pass "V2 flat data: outputs identical to nested data"
else
    fail "V2 flat data: outputs differ from nested data"
fi
infer "V2 783 values" "$(printf "$v2_input" '[1,28,28]' FP32 "[$n783]")"
expect_error "V2 783 values" 400 "Input 'input-0': 'data' has 783 values"
infer "V2 INT64" "$(printf "$v2_input" '[1,28,28]' INT64 "[$n784]")"
expect_error "V2 INT64" 400 "Input 'input-0': unsupported datatype 'INT64'"
infer "V2 string shape" "$(printf "$v2_input" '"1,28,28"' FP32 "[$n784]")"
expect_error "V2 string shape" 400 "Input 'input-0': 'shape' must be a list"
infer "V2 BYTES" '{"inputs":[{"name":"image_bytes","shape":[1],"datatype":"BYTES","data":["'"$F1"'"]}]}'
expect_code "V2 BYTES" 200
for path in /v2/health/live /v2/health/ready "/v2/models/$M" "/v2/models/$M/ready" \
    "/v2/models/$M/versions/10/ready" /v2; do
    request "GET $path" GET "$path"
    expect_code "GET $path" 200
    expect_json_type "GET $path"
done
request "V2 unknown model" GET /v2/models/other
expect_error "V2 unknown model" 404 "Model with name other does not exist."
predict "V1 after V2" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
expect_code "V1 after V2" 200

# --- metrics ---
request "metrics" GET /metrics
expect_code "metrics" 200
case "$type" in
text/plain*) pass "metrics: Content-Type $type" ;;
*) fail "metrics: Content-Type '$type'" ;;
esac
for line in 'distml_requests_total{code="200"}' 'distml_requests_total{code="413"}' \
    'distml_request_duration_seconds_bucket{le="+Inf"}' 'distml_requests_in_flight 1' \
    'distml_batch_size_count' 'distml_model_version{model="fmnist"} 10'; do
    if grep -qF "$line" "$tmp/body"; then
        pass "metrics: has $line"
    else
        fail "metrics: no $line"
    fi
done

# --- selection adds version 11, which the server loads while requests run ---
"$DISTML" select --data_root "$root" --model_base_path "$base" --blas_threads 1 >"$tmp/select.out" 2>&1
if grep -qF "is copied to $base/11" "$tmp/select.out" && [ ! -e "$base/3" ]; then
    pass "select: copied the best model to version 11"
else
    fail "select: $(cat "$tmp/select.out")"
fi
: >"$tmp/versions-seen"
swap_failures=0
for i in $(seq 40); do
    infer "during the swap" "$(printf "$v2_input" '[1,784]' FP32 "[$n784]")"
    [ "$code" = 200 ] || swap_failures=$((swap_failures + 1))
    "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_version"])' \
        "$tmp/body" >>"$tmp/versions-seen" 2>/dev/null
    grep -q '^11$' "$tmp/versions-seen" && [ "$i" -ge 10 ] && break
    sleep 0.1
done
if [ "$swap_failures" -eq 0 ]; then
    pass "version swap: every request succeeded"
else
    fail "version swap: $swap_failures requests failed"
fi
if grep -q '^11$' "$tmp/versions-seen" && ! grep -qv '^1[01]$' "$tmp/versions-seen"; then
    pass "version swap: replies came from version 10, then 11"
else
    fail "version swap: versions seen: $(sort -u "$tmp/versions-seen" | tr '\n' ' ')"
fi
request "status after the swap" GET "/v1/models/$M"
expect_json "status after the swap" "('11', 'AVAILABLE') in [(s['version'], s['state']) for s in j['model_version_status']]"

# A half-written version 12 (no manifest yet) is skipped until complete.
mkdir "$base/12"
cp "$base/11/model.json" "$base/11/variables.safetensors" "$base/12/"
sleep 2.5
request "half-written version" GET "/v1/models/$M/versions/11"
expect_json "half-written version" "j['model_version_status'][0]['state'] == 'AVAILABLE'"
warnings=$(grep -c "skipping version 12" "$tmp/server.log")
if [ "$warnings" -eq 1 ]; then
    pass "half-written version: one warning for version 12"
else
    fail "half-written version: $warnings warnings for version 12"
fi
cp "$base/11/manifest.json" "$base/12/"
for _ in $(seq 40); do
    grep -q "serving version 12" "$tmp/server.log" && break
    sleep 0.1
done
if grep -q "serving version 12 of model fmnist in place of version 11" "$tmp/server.log" &&
    grep -q "unloaded version 11 of model fmnist" "$tmp/server.log"; then
    pass "completed version: 12 loaded, then 11 unloaded"
else
    fail "completed version: the log does not show 12 replacing 11"
fi

predict "F1 from version 12" '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
cp "$tmp/body" "$tmp/f1-version12.json"

# --- SIGTERM exits 0 ---
stop_server
if [ "$server_status" -eq 0 ]; then
    pass "SIGTERM: exit status 0"
else
    fail "SIGTERM: exit status $server_status"
fi
for line in "stopping on SIGTERM" "stopped"; do
    if grep -q "$line" "$tmp/server.log"; then
        pass "SIGTERM: log has '$line'"
    else
        fail "SIGTERM: log lacks '$line'"
    fi
done

# --- batching: concurrent V1 and V2 requests merge into one forward pass ---
# The timeout is long, so a batch runs when every announced request is
# queued: held_requests.py lets all four bodies finish together.
start_server "$tmp/merge.log" --model_name fmnist --model_base_path "$base" \
    --enable_batching --max_batch_size 8 --batch_timeout_micros 5000000
v1_body='{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}'
printf '%s' "$v1_body" >"$tmp/merge-v1.json"
printf '%s' '{"id":"r7","inputs":[{"name":"image_bytes","shape":[1],"datatype":"BYTES","data":["'"$F1"'"]}]}' \
    >"$tmp/merge-v2.json"
mkdir -p "$tmp/merge"
"$PYTHON" "$here/lib/held_requests.py" "${url##*:}" "$tmp/merge" \
    "/v1/models/$M:predict@$tmp/merge-v1.json" "/v2/models/$M/infer@$tmp/merge-v2.json" \
    "/v1/models/$M:predict@$tmp/merge-v1.json" "/v2/models/$M/infer@$tmp/merge-v2.json" ||
    fail "batching: held_requests.py failed"
# A batch of 4 may take other sgemm kernels than a single image, so the
# probabilities match the unbatched reply to about 1e-6, not bit for bit.
same_probabilities="all(abs(a - b) <= 1e-5 * b for a, b in zip(PROBABILITIES, json.load(open('$tmp/f1-version12.json'))['predictions'][0]))"
for i in 1 3; do
    expect_equal "batching: V1 request $i status" "$(cat "$tmp/merge/$i.code")" 200
    cp "$tmp/merge/$i.json" "$tmp/body"
    expect_json "batching: V1 reply $i matches the unbatched one" \
        "len(j['predictions']) == 1 and $(echo "$same_probabilities" | sed "s/PROBABILITIES/j['predictions'][0]/")"
done
for i in 2 4; do
    expect_equal "batching: V2 request $i status" "$(cat "$tmp/merge/$i.code")" 200
    cp "$tmp/merge/$i.json" "$tmp/body"
    expect_json "batching: V2 reply $i names" \
        "j['id'] == 'r7' and j['model_name'] == 'fmnist' and j['outputs'][0]['shape'] == [1, 10]"
    expect_json "batching: V2 reply $i equals the V1 reply in its batch" \
        "j['outputs'][0]['data'] == json.load(open('$tmp/merge/1.json'))['predictions'][0]"
done
expect_metrics() {
    request "$1: metrics" GET "/metrics"
    for line in "distml_batch_size_count $2" "distml_batch_size_sum $3"; do
        if grep -qx "$line" "$tmp/body"; then
            pass "$1: metrics have '$line'"
        else
            fail "$1: metrics lack '$line'"
            grep '^distml_batch_size_[cs]' "$tmp/body" | sed 's/^/    metrics: /'
        fi
    done
}
expect_metrics "batching: one forward pass" 1 4

# A client that hangs up while its request waits in a batch: the batch
# still runs for the others, and the server goes on serving.
mkdir -p "$tmp/hangup"
"$PYTHON" "$here/lib/held_requests.py" "${url##*:}" "$tmp/hangup" \
    "/v1/models/$M:predict@$tmp/merge-v1.json@hangup" "/v1/models/$M:predict@$tmp/merge-v1.json" ||
    fail "hang-up: held_requests.py failed"
expect_equal "hang-up: the other request's status" "$(cat "$tmp/hangup/2.code")" 200
expect_metrics "hang-up: both in one forward pass" 2 6
predict "hang-up: the next request" "$v1_body"
expect_code "hang-up: the next request" 200
expect_metrics "hang-up: the next request alone" 3 7

# A request larger than --max_batch_size runs in forward passes of at most
# that many examples, and the metrics count each pass.
ten='{"image_bytes":{"b64":"'"$F1"'"}}'
for _ in 2 3 4 5 6 7 8 9 10; do ten="$ten"',{"image_bytes":{"b64":"'"$F1"'"}}'; done
predict "batching: 10 examples" '{"instances":['"$ten"']}'
expect_code "batching: 10 examples" 200
expect_json "batching: 10 examples" "len(j['predictions']) == 10"
expect_metrics "batching: 10 examples in passes of 8 and 2" 5 17
stop_server
expect_equal "batching: SIGTERM exit status" "$server_status" 0

# --- with batching, SIGTERM lets a queued request finish ---
start_server "$tmp/batching.log" --model_name fmnist --model_base_path "$base" \
    --enable_batching --max_batch_size 8 --batch_timeout_micros 1500000
curl -s -o "$tmp/drained.json" -w '%{http_code}' -X POST "$url/v1/models/$M:predict" \
    --data-binary '{"instances":[{"image_bytes":{"b64":"'"$F1"'"}}]}' >"$tmp/drained.code" &
client_pid=$!
sleep 0.5
stop_server
wait "$client_pid"
if [ "$(cat "$tmp/drained.code")" = 200 ] && [ "$server_status" -eq 0 ]; then
    pass "drain: the request queued before SIGTERM got 200 and the server exited 0"
else
    fail "drain: request status $(cat "$tmp/drained.code"), exit status $server_status"
    sed 's/^/    log: /' "$tmp/batching.log"
fi
if cmp -s "$tmp/drained.json" "$tmp/f1-version12.json"; then
    pass "drain: batched reply equals the unbatched one"
else
    fail "drain: batched reply differs from the unbatched one"
fi

# --- with batching, SIGTERM under load whose drain limit runs out ---
# The clients keep their connections open and send more requests while
# the server stops, so requests are still being submitted to the batcher
# after the drain gives up. Every one must get a reply or a closed
# connection, and the server must exit 0.
printf '%s' "$v1_body" >"$tmp/load.json"
start_server "$tmp/load.log" --model_name fmnist --model_base_path "$base" \
    --enable_batching --rest_api_timeout_in_ms 1000
hey -z 4s -c 20 -m POST -T application/json -D "$tmp/load.json" \
    "$url/v1/models/$M:predict" >"$tmp/load-hey.txt" 2>&1 &
hey_pid=$!
sleep 1
stop_server
wait "$hey_pid"
expect_equal "drain under load: SIGTERM exit status" "$server_status" 0
if grep -q "Fatal error" "$tmp/load.log"; then
    fail "drain under load: libmicrohttpd aborted"
    grep "Fatal error" "$tmp/load.log" | sed 's/^/    log: /'
else
    pass "drain under load: no abort in the log"
fi
if grep -q '\[200\]' "$tmp/load-hey.txt"; then
    pass "drain under load: requests before SIGTERM got 200"
else
    fail "drain under load: no request got 200"
    sed 's/^/    hey: /' "$tmp/load-hey.txt" | head -30
fi

finish
