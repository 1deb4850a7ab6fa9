# Helpers sourced by the multi-worker integration tests (mpi_*.sh) after
# lib/common.sh, which provides $tmp, run, pass, fail and the expect_* checks.
#   mpirun_job ARGS...        run mpirun ARGS with stdout in $tmp/out, stderr
#                             in $tmp/err and the exit status in $status
#   expect_same_weights NAME A B [TOLERANCE]
#                             every tensor of two saved models agrees
#   expect_different_weights NAME A B [TOLERANCE]
#                             some tensor of two saved models differs
#   chief_pids                the PIDs that wrote log lines to $tmp/err
#   process_alive PID         PID is a running (not zombie) process

if ! command -v mpirun >/dev/null 2>&1; then
    echo "FAILED setup: mpirun not found; install openmpi-bin (scripts/bootstrap does)"
    exit 1
fi

# Open MPI refuses to start as root without both variables.
if [ "$(id -u)" -eq 0 ]; then
    OMPI_ALLOW_RUN_AS_ROOT=1
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
fi

# NOTE: Open MPI 4.1 leaves thousands of allocations unfreed at exit, some of
# them from plugins that are already unloaded, so LeakSanitizer suppressions
# cannot name them. Sanitizer builds run these tests without leak checks,
# and the other AddressSanitizer checks stay on.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS

# The first interpreter of DISTML_PYTHON, /usr/bin/python3 and python3 that
# can import numpy, because a pyenv python3 earlier on PATH may lack it.
WEIGHTS_PYTHON=""
for candidate in "${DISTML_PYTHON:-}" /usr/bin/python3 python3; do
    if [ -n "$candidate" ] && "$candidate" -c "import numpy" >/dev/null 2>&1; then
        WEIGHTS_PYTHON=$candidate
        break
    fi
done
if [ -z "$WEIGHTS_PYTHON" ]; then
    echo "FAILED setup: no python3 with numpy found; install python3-numpy or set DISTML_PYTHON"
    exit 1
fi

# --oversubscribe lets a test start more workers than the machine has cores.
mpirun_job() {
    run mpirun --oversubscribe "$@"
}

# Prints one line per tensor of two variables.safetensors files and exits 1
# when any differs by more than the tolerance. The error of a tensor is
# max|a - b| / max|b|, the max-norm relative error. An element-wise relative
# error is meaningless for elements near zero, and the two runs sum their
# gradients in a different order, so the files are not bit-identical.
compare_weights() {
    "$WEIGHTS_PYTHON" - "$1" "$2" "$3" <<'EOF'
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    header.pop("__metadata__", None)
    data = raw[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit("%s: tensor %s has dtype %s, expected F32" % (path, name, info["dtype"]))
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])
    return tensors


a, b, tolerance = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if sorted(a) != sorted(b):
    print("tensor names differ: %s vs %s" % (sorted(a), sorted(b)))
    sys.exit(1)
worst = 0.0
for name in sorted(a):
    if a[name].shape != b[name].shape:
        print("%s: shape %s vs %s" % (name, a[name].shape, b[name].shape))
        sys.exit(1)
    diff = np.max(np.abs(a[name].astype(np.float64) - b[name].astype(np.float64)))
    scale = np.max(np.abs(b[name].astype(np.float64)))
    error = diff / scale if scale > 0 else diff
    worst = max(worst, error)
    print("%-36s %-16s max relative error %.2e" % (name, a[name].shape, error))
print("%d tensors, max relative error %.2e, tolerance %.0e" % (len(a), worst, tolerance))
sys.exit(0 if worst <= tolerance else 1)
EOF
}

# expect_same_weights NAME MODEL_DIR_A MODEL_DIR_B [TOLERANCE]
expect_same_weights() {
    tolerance=${4:-1e-5}
    if compare_weights "$2/variables.safetensors" "$3/variables.safetensors" "$tolerance" \
        >"$tmp/compare.out" 2>&1; then
        pass "$1: $(tail -n 1 "$tmp/compare.out")"
    else
        fail "$1: weights of $2 and $3 differ"
        sed 's/^/    /' "$tmp/compare.out"
    fi
}

# expect_different_weights NAME MODEL_DIR_A MODEL_DIR_B [TOLERANCE]
expect_different_weights() {
    tolerance=${4:-1e-5}
    if compare_weights "$2/variables.safetensors" "$3/variables.safetensors" "$tolerance" \
        >"$tmp/compare.out" 2>&1; then
        fail "$1: weights of $2 and $3 agree within $tolerance"
        sed 's/^/    /' "$tmp/compare.out"
    elif grep -q "max relative error" "$tmp/compare.out"; then
        pass "$1: weights differ ($(tail -n 1 "$tmp/compare.out"))"
    else
        fail "$1: cannot compare $2 and $3"
        sed 's/^/    /' "$tmp/compare.out"
    fi
}

# Log lines read "<time> <pid> <level> <message>".
chief_pids() {
    awk '$3 ~ /^[DIWE]$/ && $2 ~ /^[0-9]+$/ { print $2 }' "$tmp/err" | sort -u
}

# /proc/PID/stat is "pid (comm) state ...", and a zombie has exited.
process_alive() {
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}
