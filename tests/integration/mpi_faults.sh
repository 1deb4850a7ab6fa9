#!/bin/sh
# Integration test for multi-worker training faults under mpirun:
#  - 9 examples on 2 workers x batch 2: no worker is left with an extra
#    partial step, because every worker runs floor(9 / 4) = 2 steps an epoch;
#  - repeated 3-worker runs into one data root: only the chief writes the
#    checkpoints, TensorBoard events and model versions, and every model loads;
#  - kill -9 of worker 1 mid-epoch: every worker exits non-zero within 30 s,
#    no model is saved, and the same command resumes at the next epoch and
#    ends with the step count and weights of an uninterrupted run.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space),
# DISTML_PYTHON (optional, a python3 with numpy).
set -u
NAME=mpi-faults-sh
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/mpi.sh"

# --- 9 examples, 2 workers x batch 2, 2 epochs ---
root9="$tmp/root9"
make_dataset "$root9" 9 20
began=$(date +%s)
run timeout 120 mpirun --oversubscribe -np 2 "$DISTML" train --data_root "$root9" \
    --epochs 2 --batch_size_per_replica 2 --blas_threads 1 --log_steps 0 \
    --checkpoint_dir "$tmp/ckpt9" --log_dir "$tmp/logs9" --saved_model_dir "$tmp/model9"
elapsed=$(($(date +%s) - began))
expect_status "9 examples on 2 workers" 0
if [ "$elapsed" -le 60 ]; then
    pass "9 examples on 2 workers: finished in $elapsed s of the 120 s timeout"
else
    fail "9 examples on 2 workers: took $elapsed s, expected at most 60 s"
fi
expect_in "9 examples on 2 workers" err "2 workers x batch 2: 2 steps per epoch"
expect_in "9 examples on 2 workers" err "epoch:1 steps:2 "
expect_in "9 examples on 2 workers" err "epoch:2 steps:2 "
expect_equal "9 examples on 2 workers" "$(grep -c ' I epoch:' "$tmp/err")" 2 \
    "the number of epoch log lines"
expect_equal "9 examples on 2 workers" "$(state_number "$tmp/ckpt9/ckpt_2/state.json" global_step)" \
    4 "ckpt_2 global_step"

# --- 3 workers, runs one after another into the same data root ---
root="$tmp/root"
make_dataset "$root" 400 100
# train_3 [WRAPPER] TRAIN_OPTIONS...: 3 workers, each started through
# WRAPPER when it is not "".
train_3() {
    wrapper=$1
    shift
    set -- "$DISTML" train --data_root "$root" --steps_per_epoch 3 --batch_size_per_replica 8 \
        --blas_threads 1 --log_steps 1 --noresume "$@"
    if [ -n "$wrapper" ]; then
        mpirun_job -np 3 "$wrapper" "$@"
    else
        mpirun_job -np 3 "$@"
    fi
}

# The ranks other than 0 run under strace when it works here, so that the
# test checks their file system calls and not only the files left at the end.
trace_wrapper="$tmp/trace-non-chief.sh"
cat >"$trace_wrapper" <<EOF
#!/bin/sh
if [ "\$OMPI_COMM_WORLD_RANK" != 0 ]; then
    exec strace -f -qq -e trace=file -o "$tmp/trace.\$OMPI_COMM_WORLD_RANK" "\$@"
fi
exec "\$@"
EOF
chmod +x "$trace_wrapper"
traced=0
if command -v strace >/dev/null 2>&1 && strace -qq -o /dev/null true 2>/dev/null; then
    traced=1
else
    echo "note   strace cannot trace here; the file system calls of ranks 1 and 2 are not checked"
fi

# Prints the write-like calls in the strace logs on paths in the test's
# scratch folder or relative to a directory descriptor. MPI's own files in
# /dev/shm and its session folder are not listed.
non_chief_writes() {
    awk -v scratch="$tmp/" '
        match($0, /^[0-9]+ +[a-z0-9_]+\(/) == 0 { next }
        {
            call = $2
            sub(/\(.*/, "", call)
            if (call ~ /^(open|openat|openat2)$/) {
                if ($0 !~ /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC/)
                    next
            } else if (call !~ /^(creat|mkdir|mkdirat|rename|renameat|renameat2|unlink|unlinkat|rmdir|link|linkat|symlink|symlinkat|truncate)$/) {
                next
            }
            if (match($0, /"[^"]*"/) == 0)
                next
            path = substr($0, RSTART + 1, RLENGTH - 2)
            if (index(path, scratch) == 1 || substr(path, 1, 1) != "/")
                print
        }' "$tmp"/trace.* 2>/dev/null
}

expected="$tmp/expected-tree"
: >"$expected"
# One run with 2 epochs leaves ckpt_2, which the first --noresume run below
# removes. Then 5 runs of 1 epoch, the first of them traced.
runs=6
for i in $(seq 1 "$runs"); do
    label="3 workers, run $i of $runs"
    rm -f "$tmp"/trace.*
    if [ "$i" -eq 1 ]; then
        train_3 "" --epochs 2
    elif [ "$i" -eq 2 ] && [ "$traced" -eq 1 ]; then
        train_3 "$trace_wrapper" --epochs 1
    else
        train_3 "" --epochs 1
    fi
    expect_status "$label" 0
    expect_equal "$label" "$(grep -c '^Saved model to ' "$tmp/out")" 1 \
        "the number of 'Saved model to' lines"
    expect_in "$label" out "Saved model to $root/saved_model_versions/$i"
    chiefs=$(chief_pids)
    expect_equal "$label" "$(echo "$chiefs" | grep -c .)" 1 "the number of processes that log"
    echo "logs/cnn/train/events.pid-$chiefs" >>"$expected"
    if [ "$i" -eq 2 ]; then
        expect_in "$label" err "removing $root/checkpoint/cnn/ckpt_2"
        if [ "$traced" -eq 1 ]; then
            writes=$(non_chief_writes)
            if [ -z "$writes" ] && [ -s "$tmp/trace.1" ] && [ -s "$tmp/trace.2" ]; then
                pass "$label: ranks 1 and 2 made no write calls under $tmp"
            else
                fail "$label: ranks 1 and 2 wrote under $tmp (or left no trace)"
                echo "$writes" | sed 's/^/    /'
            fi
        fi
    fi
done

# Every file and folder under the data root, with each TensorBoard file
# named by the PID in its name, against the files that the chiefs write.
for f in manifest.json test-images.u8 test-labels.u8 train-images.u8 train-labels.u8; do
    echo "datasets/fashion_mnist/$f" >>"$expected"
done
for f in manifest.json state.json tensors.safetensors; do
    echo "checkpoint/cnn/ckpt_1/$f" >>"$expected"
done
for i in $(seq 1 "$runs"); do
    for f in manifest.json model.json variables.safetensors; do
        echo "saved_model_versions/$i/$f" >>"$expected"
    done
done
sort -o "$expected" "$expected"
(cd "$root" && find . -type f) | sed 's|^\./||' |
    sed 's|^\(logs/cnn/train/\)events\.out\.tfevents\.[0-9]*\..*\.\([0-9][0-9]*\)\.v2$|\1events.pid-\2|' |
    sort >"$tmp/actual-tree"
if cmp -s "$expected" "$tmp/actual-tree"; then
    pass "3 workers: the data root contains exactly the $(wc -l <"$expected") files the chiefs wrote"
else
    fail "3 workers: the data root's files differ from the chiefs' (- expected, + found)"
    diff "$expected" "$tmp/actual-tree" | grep '^[<>]' | sed 's/^</    -/; s/^>/    +/'
fi
stray=$(cd "$root" && find . -type d -empty)
expect_equal "3 workers" "${stray:-none}" none "the list of empty folders"

for i in $(seq 1 "$runs"); do
    run "$DISTML" evaluate --data_root "$root" --blas_threads 1 \
        --saved_model_dir "$root/saved_model_versions/$i"
    expect_status "evaluate model version $i" 0
done

# --- kill -9 of worker 1 during epoch 2 of 3 ---
# 150 steps of 2 x 16 take about 1 s on a 2-core x86 VM, so the run is still
# training when ckpt_1 appears.
steps=150
kill_root="$tmp/kill"
mkdir -p "$kill_root"
# launch_2 DIR: replaces the shell with a 2-worker mpirun that writes under
# DIR, so that a background call's $! is mpirun's PID.
launch_2() {
    exec mpirun --oversubscribe -np 2 "$DISTML" train --data_root "$root" --epochs 3 \
        --steps_per_epoch "$steps" --batch_size_per_replica 16 --blas_threads 1 --log_steps 0 \
        --checkpoint_dir "$1/ckpt" --log_dir "$1/logs" --saved_model_dir "$1/model"
}
(launch_2 "$tmp/straight") >"$tmp/out" 2>"$tmp/err"
status=$?
expect_status "uninterrupted 2-worker run" 0
straight_step=$(state_number "$tmp/straight/ckpt/ckpt_3/state.json" global_step)
expect_equal "uninterrupted 2-worker run" "$straight_step" $((3 * steps)) "ckpt_3 global_step"

launch_2 "$kill_root" >"$tmp/kill.out" 2>"$tmp/kill.err" &
launcher=$!
polls=0
while [ ! -f "$kill_root/ckpt/ckpt_1/manifest.json" ] && process_alive "$launcher" &&
    [ "$polls" -lt 1200 ]; do
    sleep 0.05
    polls=$((polls + 1))
done
# The workers are mpirun's children named distml; rank 1 has
# OMPI_COMM_WORLD_RANK=1 in its environment.
workers=$(awk -v parent="$launcher" '$4 == parent && $2 == "(distml)" { print $1 }' \
    /proc/[0-9]*/stat 2>/dev/null)
worker_1=""
for pid in $workers; do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
        worker_1=$pid
    fi
done
expect_equal "kill -9 of worker 1" "$(echo $workers | wc -w)" 2 "the number of workers found"
if [ -z "$worker_1" ]; then
    fail "kill -9 of worker 1: no worker with OMPI_COMM_WORLD_RANK=1 among '$workers'"
else
    if [ -e "$kill_root/ckpt/ckpt_2" ]; then
        echo "note   ckpt_2 already exists, so this machine trains too fast for the test"
    fi
    expect_no_path "kill -9 of worker 1 (during epoch 2)" "$kill_root/ckpt/ckpt_2"
    kill -9 "$worker_1"
    pass "kill -9 of worker 1: sent SIGKILL to PID $worker_1"
fi
waited=0
while [ "$waited" -lt 300 ]; do
    left=""
    for pid in $launcher $workers; do
        process_alive "$pid" && left="$left $pid"
    done
    [ -z "$left" ] && break
    sleep 0.1
    waited=$((waited + 1))
done
if [ -z "$left" ]; then
    pass "kill -9 of worker 1: mpirun and both workers exited within $((waited / 10)) s"
else
    fail "kill -9 of worker 1: PIDs$left still running after 30 s; killing them"
    for pid in $left; do
        kill -9 "$pid" 2>/dev/null
    done
fi
wait "$launcher"
launcher_status=$?
if [ "$launcher_status" -ne 0 ]; then
    pass "kill -9 of worker 1: mpirun exit status $launcher_status is non-zero"
else
    fail "kill -9 of worker 1: mpirun exit status 0"
fi
expect_no_path "kill -9 of worker 1" "$kill_root/model"

(launch_2 "$kill_root") >"$tmp/out" 2>"$tmp/err"
status=$?
expect_status "rerun after kill -9" 0
expect_in "rerun after kill -9" err \
    "resuming from $kill_root/ckpt/ckpt_1 at epoch 2 (global step $steps)"
expect_not_in "rerun after kill -9" err "epoch:1 steps:"
expect_in "rerun after kill -9" err "epoch:2 steps:$steps "
expect_in "rerun after kill -9" err "epoch:3 steps:$steps "
expect_equal "rerun after kill -9" "$(state_number "$kill_root/ckpt/ckpt_3/state.json" global_step)" \
    "$straight_step" "ckpt_3 global_step (the uninterrupted run's)"
expect_same_bytes "rerun after kill -9 vs uninterrupted model" \
    "$kill_root/model/variables.safetensors" "$tmp/straight/model/variables.safetensors"

finish
