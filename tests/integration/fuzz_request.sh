#!/bin/sh
# Builds the request-decoding fuzz target (fuzz/fuzz_request.c) with clang's
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer and runs it
# for DISTML_FUZZ_SECONDS (default 10) from the seed corpus in
# fuzz/corpus/request. Skips when clang is not installed.
# Environment: DISTML_SOURCE_DIR (the checkout), DISTML_TEST_TMP (scratch).
set -u

source_dir="${DISTML_SOURCE_DIR:-$(dirname "$0")/../..}"
tmp="${DISTML_TEST_TMP:-/tmp}/fuzz-request.$$"
seconds="${DISTML_FUZZ_SECONDS:-10}"
if ! command -v clang >/dev/null 2>&1; then
    echo "skip   fuzz_request: clang is not installed"
    echo "0 passed, 0 failed"
    exit 0
fi
rm -rf "$tmp"
mkdir -p "$tmp/corpus" || exit 2
cp "$source_dir"/fuzz/corpus/request/* "$tmp/corpus/"

serve="$source_dir/src/serve"
# shellcheck disable=SC2046
if ! clang -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I "$source_dir/src" \
    "$source_dir/fuzz/fuzz_request.c" "$serve/request.c" "$serve/json.c" "$serve/base64.c" \
    "$serve/image.c" $(pkg-config --cflags --libs libturbojpeg spng) -lm \
    -o "$tmp/fuzz_request" 2>"$tmp/build.log"; then
    echo "FAILED fuzz_request: the fuzz target does not build"
    sed 's/^/    /' "$tmp/build.log"
    echo "0 passed, 1 failed"
    exit 1
fi
# The fuzzer's own output goes to a file; it exits non-zero on a crash,
# a sanitizer report, a leak or a timeout of one input.
if "$tmp/fuzz_request" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$tmp/" "$tmp/corpus" >"$tmp/fuzz.log" 2>&1; then
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$tmp/fuzz.log")
    echo "ok     fuzz_request: ${runs:-?} inputs in ${seconds} s without a crash or sanitizer report"
    rm -rf "$tmp"
    echo "1 passed, 0 failed"
    exit 0
fi
echo "FAILED fuzz_request: see $tmp/fuzz.log; the crashing input is saved in $tmp"
grep -A20 "ERROR\|runtime error" "$tmp/fuzz.log" | head -40 | sed 's/^/    /'
echo "0 passed, 1 failed"
exit 1
