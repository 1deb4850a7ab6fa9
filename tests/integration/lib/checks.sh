# Check bookkeeping shared by the integration tests (POSIX sh). The caller
# sets NAME before sourcing, and this file creates the scratch folder $tmp
# from it. Each check prints one "ok" or "FAILED" line, fail counts the
# failures, and the test ends with `finish`.
# Environment: DISTML_TEST_TMP (scratch space, /tmp by default).
: "${NAME:?set NAME before sourcing checks.sh}"

tmp="${DISTML_TEST_TMP:-/tmp}/$NAME.$$"
rm -rf "$tmp"
mkdir -p "$tmp" || exit 2
failures=0
started=$(date +%s)

pass() { echo "ok     $1"; }
fail() {
    echo "FAILED $1"
    failures=$((failures + 1))
}

# expect_equal NAME ACTUAL EXPECTED [WHAT]: passes when ACTUAL is EXPECTED,
# labelled "NAME: WHAT is EXPECTED", or "NAME: EXPECTED" without WHAT. The
# label is built in $1 with `set --`, which changes only the function's
# arguments, so no variable of the caller (such as $label) is overwritten.
expect_equal() {
    if [ "$#" -ge 4 ]; then
        set -- "$1: $4 is" "$2" "$3"
    else
        set -- "$1:" "$2" "$3"
    fi
    if [ "$2" = "$3" ]; then
        pass "$1 $3"
    else
        fail "$1 '$2', expected '$3'"
    fi
}

# finish [COMMAND [ARGS...]]: prints the run time and exits. After a failed
# check it keeps $tmp, runs COMMAND (for example to print log lines) and
# exits 1. Otherwise it removes $tmp and exits 0.
# shellcheck disable=SC2120 # most tests call finish with no arguments
finish() {
    echo "took $(($(date +%s) - started)) s"
    if [ "$failures" -ne 0 ]; then
        echo "$failures checks failed; files kept in $tmp"
        [ "$#" -eq 0 ] || "$@"
        exit 1
    fi
    rm -rf "$tmp"
    echo "all checks passed"
    exit 0
}
