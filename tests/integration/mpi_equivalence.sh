#!/bin/sh
# Integration test for synchronous data-parallel training under mpirun.
# 2 workers x batch 32 and 1 worker x batch 64 over the same global batches
# must end with the same weights for cnn and dropout. So must uneven shards:
# 2 workers x batch 2 on 3 examples against 1 worker x batch 3. A run with
# another global batch must differ, which shows that the comparison can fail.
# batch_norm normalises each worker's batch with that worker's own
# statistics, as TensorFlow's MultiWorkerMirroredStrategy does by default,
# so its 2-worker weights differ from 1 worker's. For batch_norm the test
# checks only that it trains and that the chief's model evaluates.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space),
# DISTML_PYTHON (optional, a python3 with numpy).
set -u
NAME=mpi-equivalence-sh
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/mpi.sh"

root="$tmp/root"
make_dataset "$root" 400 100
steps=5

# Prints the loss of the chief's last "epoch:" log line in $tmp/err.
epoch_loss() {
    grep -o ' I epoch:.* loss:[0-9.]*' "$tmp/err" | tail -n 1 | sed 's/.*loss://'
}

# train_job NAME WORKERS BATCH TYPE ROOT STEPS: trains into $tmp/model-NAME.
train_job() {
    label=$1
    workers=$2
    shift 2
    set -- "$DISTML" train --model_type "$2" --data_root "$3" --epochs 1 \
        --steps_per_epoch "$4" --batch_size_per_replica "$1" --seed 7 --shuffle_buffer 128 \
        --blas_threads 1 --log_steps 0 --noresume --checkpoint_dir "$tmp/ckpt-$label" \
        --log_dir "$tmp/logs-$label" --saved_model_dir "$tmp/model-$label"
    if [ "$workers" -eq 1 ]; then
        run "$@"
    else
        mpirun_job -np "$workers" "$@"
    fi
    expect_status "$label" 0
}

# --- cnn and dropout: 2 x 32 against 1 x 64 ---
for type in cnn dropout; do
    train_job "$type-1x64" 1 64 "$type" "$root" "$steps"
    train_job "$type-2x32" 2 32 "$type" "$root" "$steps"
    expect_in "$type-2x32" err "epoch:1 steps:$steps "
    expect_in "$type-2x32" err "allreduce_ms_per_step:"
    expect_same_weights "$type: 2 workers x 32 vs 1 worker x 64" \
        "$tmp/model-$type-2x32" "$tmp/model-$type-1x64"
done

# The same seed with global batch 32 instead of 64 must not pass.
train_job "cnn-1x32" 1 32 cnn "$root" "$steps"
expect_different_weights "cnn: 2 workers x 32 vs 1 worker x 32" \
    "$tmp/model-cnn-2x32" "$tmp/model-cnn-1x32"

# --- uneven shards: worker 0 gets 2 of the 3 examples, worker 1 gets 1 ---
# Each step is one whole epoch of both shards, so the global batch contains the
# same 3 examples as 1 worker's batch of 3, and every example must weigh 1/3.
root3="$tmp/root3"
make_dataset "$root3" 3 10
train_job "uneven-1x3" 1 3 cnn "$root3" 2
loss_single=$(epoch_loss)
train_job "uneven-2x2" 2 2 cnn "$root3" 2
loss_workers=$(epoch_loss)
expect_same_weights "cnn: 2 workers x 2 on 3 examples vs 1 worker x 3" \
    "$tmp/model-uneven-2x2" "$tmp/model-uneven-1x3"
# The epoch loss is the mean over the 6 examples of the 2 steps, not over
# 2 x 2 x 2 batch slots.
if awk -v a="$loss_workers" -v b="$loss_single" 'BEGIN { d = a - b; exit !(a != "" && d * d <= 1e-8) }'; then
    pass "uneven shards: epoch loss $loss_workers of 2 workers equals $loss_single of 1"
else
    fail "uneven shards: epoch loss '$loss_workers' of 2 workers, expected '$loss_single' of 1"
fi

# --- batch_norm: per-replica batch statistics ---
train_job "batch_norm-1x64" 1 64 batch_norm "$root" "$steps"
train_job "batch_norm-2x32" 2 32 batch_norm "$root" "$steps"
expect_in "batch_norm-2x32" err "epoch:1 steps:$steps "
expect_different_weights "batch_norm: per-replica statistics, 2 x 32 vs 1 x 64" \
    "$tmp/model-batch_norm-2x32" "$tmp/model-batch_norm-1x64"
run "$DISTML" evaluate --data_root "$root" --saved_model_dir "$tmp/model-batch_norm-2x32" \
    --blas_threads 1
expect_status "evaluate the 2-worker batch_norm model" 0
expect_in "evaluate the 2-worker batch_norm model" out "accuracy"

finish
