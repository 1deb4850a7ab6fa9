# Helpers sourced by the train and evaluate integration tests (POSIX sh).
# The caller sets NAME before sourcing. lib/checks.sh, which this file
# sources, creates the scratch folder $tmp from NAME and defines pass,
# fail, expect_equal and finish. The checks print one "ok" or "FAILED" line
# each and count failures, and the caller ends with `finish`.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
: "${DISTML:?set DISTML to the distml binary}"
: "${NAME:?set NAME before sourcing common.sh}"
# An absolute path, because some checks run the binary from another folder.
case "$DISTML" in
/*) ;;
*) DISTML="$PWD/$DISTML" ;;
esac

# One BLAS thread makes every run bit-for-bit deterministic, and no
# DISTML_DATA_ROOT from the caller's shell may redirect a run.
OPENBLAS_NUM_THREADS=1
export OPENBLAS_NUM_THREADS
unset DISTML_DATA_ROOT

. "$(dirname "$0")/lib/checks.sh"

# Runs the command with stdout in $tmp/out, stderr in $tmp/err, status in $status.
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    status=$?
}

expect_status() {
    if [ "$status" -eq "$2" ]; then
        pass "$1: exit status $2"
    else
        fail "$1: exit status $status, expected $2"
        sed 's/^/    stderr: /' "$tmp/err"
    fi
}

# expect_in NAME out|err TEXT: the captured stream contains TEXT.
expect_in() {
    if grep -qF -- "$3" "$tmp/$2"; then
        pass "$1: $2 contains '$3'"
    else
        fail "$1: $2 does not contain '$3'"
        sed "s/^/    $2: /" "$tmp/$2"
    fi
}

# expect_not_in NAME out|err TEXT: the captured stream does not contain TEXT.
expect_not_in() {
    if grep -qF -- "$3" "$tmp/$2"; then
        fail "$1: $2 contains '$3'"
        grep -F -- "$3" "$tmp/$2" | sed "s/^/    $2: /"
    else
        pass "$1: $2 does not contain '$3'"
    fi
}

expect_file() {
    if [ -f "$2" ]; then
        pass "$1: $2 exists"
    else
        fail "$1: $2 is missing"
    fi
}

expect_no_path() {
    if [ -e "$2" ]; then
        fail "$1: $2 exists"
    else
        pass "$1: $2 does not exist"
    fi
}

# expect_same_bytes NAME FILE_A FILE_B
expect_same_bytes() {
    if cmp -s "$2" "$3"; then
        pass "$1: $(basename "$2") files are byte-identical"
    else
        fail "$1: $2 and $3 differ"
        cmp "$2" "$3" 2>&1 | sed 's/^/    /'
    fi
}

# Prints the integer KEY of the checkpoint state.json FILE, or "missing".
state_number() {
    value=$(grep -o "\"$2\":[0-9]*" "$1" 2>/dev/null | cut -d: -f2)
    echo "${value:-missing}"
}

# Replaces the byte at OFFSET of FILE with its complement.
flip_byte() {
    old=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\$(printf '%o' $((255 - old)))" |
        dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# IDX files as mawk or gawk writes them with LC_ALL=C, where %c of N is byte N.
# Image I has label I % 10 and a bright band of rows 2k..2k+2 for label k on
# a dim, varying background, so a few steps of training already beat chance.
write_images() {
    LC_ALL=C awk -v n="$1" 'BEGIN {
        printf "%c%c%c%c", 0, 0, 8, 3
        printf "%c%c%c%c", int(n / 16777216) % 256, int(n / 65536) % 256, int(n / 256) % 256, n % 256
        printf "%c%c%c%c%c%c%c%c", 0, 0, 0, 28, 0, 0, 0, 28
        for (i = 0; i < n; i++) {
            k = i % 10
            for (p = 0; p < 784; p++) {
                row = int(p / 28)
                if (row >= 2 * k && row < 2 * k + 3)
                    printf "%c", 200 + (i + p) % 56
                else
                    printf "%c", (i * 131 + p * 17) % 64
            }
        }
    }'
}

write_labels() {
    LC_ALL=C awk -v n="$1" 'BEGIN {
        printf "%c%c%c%c", 0, 0, 8, 1
        printf "%c%c%c%c", int(n / 16777216) % 256, int(n / 65536) % 256, int(n / 256) % 256, n % 256
        for (i = 0; i < n; i++)
            printf "%c", i % 10
    }'
}

# make_dataset ROOT TRAIN_COUNT TEST_COUNT: generates IDX files and ingests
# them into ROOT. A failed ingest ends the test.
make_dataset() {
    src="$tmp/idx"
    mkdir -p "$src"
    write_images "$2" >"$src/train-images-idx3-ubyte"
    write_labels "$2" >"$src/train-labels-idx1-ubyte"
    write_images "$3" >"$src/t10k-images-idx3-ubyte"
    write_labels "$3" >"$src/t10k-labels-idx1-ubyte"
    run "$DISTML" ingest --source_dir "$src" --data_root "$1"
    if [ "$status" -ne 0 ]; then
        echo "FAILED setup: ingest of the generated dataset exited $status"
        sed 's/^/    stderr: /' "$tmp/err"
        exit 1
    fi
}
