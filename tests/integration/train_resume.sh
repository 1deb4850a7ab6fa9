#!/bin/sh
# Integration test for resuming `distml train` from its checkpoints. The
# cases are a run extended from 2 to 4 epochs, a resume with another
# learning-rate schedule, a corrupt newest checkpoint,
# a run killed with SIGKILL next to half-written checkpoint folders, a fresh
# folder, and --noresume into the folder of an earlier run. Every resumed
# run must end with the same optimizer step and byte-identical weights as an
# uninterrupted run.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u
NAME=train-resume-sh
. "$(dirname "$0")/lib/common.sh"

root="$tmp/root"
make_dataset "$root" 256 64
steps=4
# --blas_threads 1 as well as OPENBLAS_NUM_THREADS=1, because train sets its
# own thread count when the flag is missing, and the byte-identical
# comparisons need one thread.
train() {
    run "$DISTML" train --data_root "$root" --steps_per_epoch "$steps" \
        --batch_size_per_replica 16 --log_steps 0 --blas_threads 1 "$@"
}

# expect_epoch_lines NAME TOTAL FIRST: the progress shows "Epoch FIRST/TOTAL"
# through "Epoch TOTAL/TOTAL", in order, and no other epoch.
expect_epoch_lines() {
    expected=$(seq "$3" "$2" | sed "s|.*|Epoch &/$2|" | paste -sd, -)
    actual=$(grep '^Epoch ' "$tmp/out" | paste -sd, -)
    expected=${expected:-none}
    actual=${actual:-none}
    expect_equal "$1" "$actual" "$expected" "the list of epoch lines"
}

# --- 2 epochs, then the same command with --epochs 4 ---
ckpt="$tmp/ckpt-resumed"
train --epochs 2 --checkpoint_dir "$ckpt" --saved_model_dir "$tmp/model-2-epochs"
expect_status "first 2 epochs" 0
expect_epoch_lines "first 2 epochs" 2 1
expect_equal "first 2 epochs" "$(state_number "$ckpt/ckpt_2/state.json" global_step)" \
    $((2 * steps)) "ckpt_2 global_step"

train --epochs 4 --checkpoint_dir "$ckpt" --saved_model_dir "$tmp/model-resumed"
expect_status "resume to 4 epochs" 0
expect_in "resume to 4 epochs" err "resuming from $ckpt/ckpt_2 at epoch 3 (global step 8)"
expect_epoch_lines "resume to 4 epochs" 4 3
expect_equal "resume to 4 epochs" "$(state_number "$ckpt/ckpt_4/state.json" epoch)" 4 \
    "ckpt_4 epoch"
expect_equal "resume to 4 epochs" "$(state_number "$ckpt/ckpt_4/state.json" global_step)" \
    $((4 * steps)) "ckpt_4 global_step"
expect_equal "resume to 4 epochs" \
    "$(state_number "$ckpt/ckpt_4/state.json" optimizer_iterations)" $((4 * steps)) \
    "ckpt_4 optimizer_iterations"

straight="$tmp/ckpt-straight"
train --epochs 4 --checkpoint_dir "$straight" --saved_model_dir "$tmp/model-straight"
expect_status "uninterrupted 4 epochs" 0
expect_not_in "uninterrupted 4 epochs" err "resuming"
expect_epoch_lines "uninterrupted 4 epochs" 4 1
expect_same_bytes "resumed vs uninterrupted model" \
    "$tmp/model-resumed/variables.safetensors" "$tmp/model-straight/variables.safetensors"
expect_same_bytes "resumed vs uninterrupted ckpt_4" \
    "$ckpt/ckpt_4/tensors.safetensors" "$straight/ckpt_4/tensors.safetensors"

# A run whose checkpoint already covers every epoch trains nothing more.
train --epochs 4 --checkpoint_dir "$ckpt" --saved_model_dir "$tmp/model-again"
expect_status "rerun of a finished run" 0
expect_in "rerun of a finished run" err "already covers the 4 epochs requested"
expect_epoch_lines "rerun of a finished run" 4 5
expect_same_bytes "rerun of a finished run" \
    "$tmp/model-again/variables.safetensors" "$tmp/model-straight/variables.safetensors"

# --- a resume that changes a trained epoch's rate warns ---
ckpt="$tmp/ckpt-schedule"
train --epochs 2 --checkpoint_dir "$ckpt" --saved_model_dir "$tmp/model-schedule-2" \
    --lr_boundaries 1 --lr_values 0.01,0.005
expect_status "schedule: first 2 epochs" 0
train --epochs 3 --checkpoint_dir "$ckpt" --saved_model_dir "$tmp/model-schedule-3" \
    --lr_boundaries 1 --lr_values 0.01,0.002
expect_status "schedule: changed on resume" 0
expect_in "schedule: changed on resume" err \
    "the checkpoint trained epoch 2 at learning rate 0.005, where this run's --lr_boundaries and --lr_values give 0.002; the new schedule applies from epoch 3 on"
train --epochs 4 --checkpoint_dir "$ckpt" --saved_model_dir "$tmp/model-schedule-4" \
    --lr_boundaries 1 --lr_values 0.01,0.002
expect_status "schedule: unchanged on resume" 0
expect_not_in "schedule: unchanged on resume" err "the checkpoint trained epoch"

# --- a corrupt newest checkpoint is skipped for the one before it ---
corrupt="$tmp/ckpt-corrupt"
cp -r "$straight" "$corrupt"
flip_byte "$corrupt/ckpt_4/tensors.safetensors" 2000
train --epochs 4 --checkpoint_dir "$corrupt" --saved_model_dir "$tmp/model-after-corrupt"
expect_status "corrupt ckpt_4" 0
expect_in "corrupt ckpt_4" err "skipping checkpoint 4"
expect_in "corrupt ckpt_4" err "tensors.safetensors"
expect_in "corrupt ckpt_4" err "resuming from $corrupt/ckpt_3 at epoch 4"
expect_epoch_lines "corrupt ckpt_4" 4 4
expect_same_bytes "corrupt ckpt_4 replaced" \
    "$corrupt/ckpt_4/tensors.safetensors" "$straight/ckpt_4/tensors.safetensors"
expect_same_bytes "corrupt ckpt_4 model" \
    "$tmp/model-after-corrupt/variables.safetensors" "$tmp/model-straight/variables.safetensors"

# --- SIGKILL during training, next to half-written checkpoint folders ---
# 150 steps an epoch take about 0.6 s on a 2-core x86 VM, so the run is
# still training when ckpt_1 appears. The wait status is 137 only when the
# kill arrived before the run finished.
steps=150
killed="$tmp/ckpt-killed"
"$DISTML" train --data_root "$root" --steps_per_epoch "$steps" --batch_size_per_replica 16 \
    --log_steps 0 --blas_threads 1 --epochs 6 --checkpoint_dir "$killed" \
    --saved_model_dir "$tmp/model-killed" >"$tmp/killed.out" 2>"$tmp/killed.err" &
pid=$!
polls=0
while [ ! -f "$killed/ckpt_1/manifest.json" ] && [ "$polls" -lt 1200 ]; do
    sleep 0.05
    polls=$((polls + 1))
done
kill -9 "$pid" 2>/dev/null
wait "$pid"
killed_status=$?
expect_equal "kill -9 during training" "$killed_status" 137 "the wait status (128 + SIGKILL)"
expect_no_path "kill -9 during training" "$tmp/model-killed"

last=0
for dir in "$killed"/ckpt_*; do
    epoch=${dir##*/ckpt_}
    case "$epoch" in *[!0-9]*) continue ;; esac
    [ -f "$dir/manifest.json" ] && [ "$epoch" -gt "$last" ] && last=$epoch
done
if [ "$last" -ge 1 ] && [ "$last" -lt 6 ]; then
    pass "kill -9 during training: newest complete checkpoint is ckpt_$last of 6"
else
    fail "kill -9 during training: newest complete checkpoint is ckpt_$last, expected 1 to 5"
fi
# What an interrupted save leaves behind: a folder without manifest.json
# and a temporary folder. The next epoch's folder is half-written too.
mkdir -p "$killed/ckpt_9" "$killed/ckpt_2.tmp.12345" "$killed/ckpt_$((last + 1))"
echo "partial" >"$killed/ckpt_9/tensors.safetensors"
echo "partial" >"$killed/ckpt_$((last + 1))/tensors.safetensors"

train --epochs 6 --checkpoint_dir "$killed" --saved_model_dir "$tmp/model-killed"
expect_status "rerun after kill -9" 0
# A leftover whose process is gone is removed; one of a live process
# (should pid 12345 exist) is only reported.
expect_in "rerun after kill -9" err "$killed/ckpt_2.tmp.12345"
if kill -0 12345 2>/dev/null; then
    pass "rerun after kill -9: pid 12345 is alive, so its leftover is kept"
else
    expect_no_path "rerun after kill -9: leftover of a dead process" "$killed/ckpt_2.tmp.12345"
fi
expect_in "rerun after kill -9" err "skipping checkpoint 9: incomplete bundle"
expect_in "rerun after kill -9" err "skipping checkpoint $((last + 1)): incomplete bundle"
expect_in "rerun after kill -9" err \
    "resuming from $killed/ckpt_$last at epoch $((last + 1)) (global step $((last * steps)))"
expect_epoch_lines "rerun after kill -9" 6 $((last + 1))
expect_file "rerun after kill -9" "$killed/ckpt_$((last + 1))/manifest.json"
expect_equal "rerun after kill -9" "$(state_number "$killed/ckpt_6/state.json" global_step)" \
    $((6 * steps)) "ckpt_6 global_step"

train --epochs 6 --checkpoint_dir "$tmp/ckpt-unkilled" --saved_model_dir "$tmp/model-unkilled"
expect_status "uninterrupted 6 epochs" 0
expect_equal "uninterrupted 6 epochs" \
    "$(state_number "$tmp/ckpt-unkilled/ckpt_6/state.json" global_step)" $((6 * steps)) \
    "ckpt_6 global_step"
expect_same_bytes "killed and resumed vs uninterrupted model" \
    "$tmp/model-killed/variables.safetensors" "$tmp/model-unkilled/variables.safetensors"

# --- a fresh checkpoint folder starts at epoch 1 ---
steps=4
train --epochs 2 --checkpoint_dir "$tmp/ckpt-fresh" --saved_model_dir "$tmp/model-fresh"
expect_status "fresh checkpoint folder" 0
expect_not_in "fresh checkpoint folder" err "resuming"
expect_epoch_lines "fresh checkpoint folder" 2 1

# --- --noresume into the folder of an earlier, longer run ---
# The new run replaces ckpt_1 and ckpt_2, and must remove ckpt_3 and ckpt_4
# of the earlier run, or the resume below would continue the earlier run.
redo="$tmp/ckpt-noresume"
cp -r "$straight" "$redo"
train --epochs 2 --noresume --seed 7 --checkpoint_dir "$redo" \
    --saved_model_dir "$tmp/model-seed7-2-epochs"
expect_status "--noresume over 4 old checkpoints" 0
expect_not_in "--noresume over 4 old checkpoints" err "resuming"
expect_epoch_lines "--noresume over 4 old checkpoints" 2 1
expect_in "--noresume over 4 old checkpoints" err "removing $redo/ckpt_3"
expect_no_path "--noresume over 4 old checkpoints" "$redo/ckpt_3"
expect_no_path "--noresume over 4 old checkpoints" "$redo/ckpt_4"
expect_equal "--noresume over 4 old checkpoints" \
    "$(state_number "$redo/ckpt_2/state.json" seed)" 7 "ckpt_2 seed"

train --epochs 3 --seed 7 --checkpoint_dir "$redo" --saved_model_dir "$tmp/model-seed7-resumed"
expect_status "resume after --noresume" 0
expect_in "resume after --noresume" err "resuming from $redo/ckpt_2 at epoch 3"
expect_epoch_lines "resume after --noresume" 3 3
train --epochs 3 --seed 7 --checkpoint_dir "$tmp/ckpt-seed7" \
    --saved_model_dir "$tmp/model-seed7-straight"
expect_same_bytes "resume after --noresume vs uninterrupted" \
    "$tmp/model-seed7-resumed/variables.safetensors" \
    "$tmp/model-seed7-straight/variables.safetensors"

finish
