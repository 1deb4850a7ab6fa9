#!/bin/sh
# Integration test for what `distml train` must not lose or mix up:
# concurrent runs that save default versions each get their own version,
# and resuming with a different batch size or seed is rejected because it
# would silently replay another data order.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u
NAME=train-guards-sh
. "$(dirname "$0")/lib/common.sh"

root="$tmp/root"
versions="$root/saved_model_versions"
make_dataset "$root" 128 32

# Three runs at once, each with its own checkpoint folder, all saving to
# the default next version.
pids=""
for i in 1 2 3; do
    "$DISTML" train --data_root "$root" --steps_per_epoch 2 --batch_size_per_replica 16 \
        --log_steps 0 --noresume --checkpoint_dir "$tmp/ck$i" --log_dir "$tmp/log$i" \
        >"$tmp/out$i" 2>"$tmp/err$i" &
    pids="$pids $!"
done
failed=0
for pid in $pids; do
    wait "$pid" || failed=$((failed + 1))
done
expect_equal "concurrent runs" "$failed" 0 "runs that exited non-zero"
saved=$(cat "$tmp/out1" "$tmp/out2" "$tmp/out3" | sed -n 's/^Saved model to //p' | sort -u | wc -l)
expect_equal "concurrent runs" "$saved" 3 "distinct 'Saved model to' folders"
count=$(ls "$versions" | grep -c '^[0-9][0-9]*$')
expect_equal "concurrent runs" "$count" 3 "version folders"
for v in 1 2 3; do
    expect_file "concurrent runs: version $v" "$versions/$v/manifest.json"
done

# A checkpoint written with batch 16 and seed 1234 is not resumed with
# batch 8 or seed 7.
run "$DISTML" train --data_root "$root" --steps_per_epoch 2 --batch_size_per_replica 8 \
    --log_steps 0 --checkpoint_dir "$tmp/ck1" --log_dir "$tmp/log1" --epochs 2 \
    --saved_model_dir "$tmp/model"
expect_status "resume with another batch size" 1
expect_in "resume with another batch size" err "--batch_size_per_replica 16"
run "$DISTML" train --data_root "$root" --steps_per_epoch 2 --batch_size_per_replica 16 \
    --log_steps 0 --checkpoint_dir "$tmp/ck1" --log_dir "$tmp/log1" --epochs 2 --seed 7 \
    --saved_model_dir "$tmp/model"
expect_status "resume with another seed" 1
expect_in "resume with another seed" err "--seed 1234"
expect_no_path "rejected resume saves no model" "$tmp/model"

# --keep_checkpoints 2 leaves only the two newest of five epochs.
run "$DISTML" train --data_root "$root" --steps_per_epoch 1 --batch_size_per_replica 16 \
    --log_steps 0 --noresume --epochs 5 --keep_checkpoints 2 --checkpoint_dir "$tmp/ckkeep" \
    --log_dir "$tmp/logkeep" --saved_model_dir "$tmp/modelkeep"
expect_status "keep 2 checkpoints" 0
kept=$(ls "$tmp/ckkeep" | tr '\n' ' ')
expect_equal "keep 2 checkpoints" "$kept" "ckpt_4 ckpt_5 " "checkpoint folders"

finish
