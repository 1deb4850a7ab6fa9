#!/bin/sh
# Integration test for the models `distml train` saves and `distml evaluate`
# reads: numbered default versions, evaluation of an explicit folder and of
# the newest complete version, and the errors for a corrupt, incomplete or
# missing model folder.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u
NAME=evaluate-sh
. "$(dirname "$0")/lib/common.sh"

root="$tmp/root"
versions="$root/saved_model_versions"
make_dataset "$root" 256 64
train() {
    run "$DISTML" train --data_root "$root" --steps_per_epoch 4 --batch_size_per_replica 16 \
        --log_steps 0 "$@"
}

# Prints "LOSS ACCURACY" from the captured evaluate output, or nothing.
test_metrics() {
    awk '/^Test loss: / { loss = $3 } /^Test accuracy: / { accuracy = $3 }
        END { if (loss != "" && accuracy != "") print loss, accuracy }' "$tmp/out"
}

# expect_accuracy_in_range NAME: evaluate printed a Test accuracy in [0, 1].
expect_accuracy_in_range() {
    accuracy=$(sed -n 's/^Test accuracy: //p' "$tmp/out")
    if [ -n "$accuracy" ] && awk -v a="$accuracy" 'BEGIN { exit !(a + 0 == a && a >= 0 && a <= 1) }'; then
        pass "$1: Test accuracy $accuracy is in [0, 1]"
    else
        fail "$1: Test accuracy is '$accuracy', expected a number in [0, 1]"
        sed 's/^/    out: /' "$tmp/out"
    fi
}

# --- evaluate before any model exists ---
run "$DISTML" evaluate --data_root "$root"
expect_status "evaluate before any training" 1
expect_in "evaluate before any training" err "no complete model version in $versions"
expect_in "evaluate before any training" err "run distml train first"

# --- default model folders are versions 1, then 2 ---
train --epochs 1 --checkpoint_dir "$tmp/ckpt-a"
expect_status "first default save" 0
expect_in "first default save" out "Saved model to $versions/1"
expect_file "first default save" "$versions/1/manifest.json"

train --epochs 2 --seed 99 --checkpoint_dir "$tmp/ckpt-b"
expect_status "second default save" 0
expect_in "second default save" out "Saved model to $versions/2"
expect_file "second default save" "$versions/2/manifest.json"

run "$DISTML" evaluate --data_root "$root" --saved_model_dir "$versions/1"
expect_status "evaluate version 1" 0
expect_in "evaluate version 1" out "Test loss: "
expect_accuracy_in_range "evaluate version 1"
metrics_1=$(test_metrics)

run "$DISTML" evaluate --data_root "$root" --saved_model_dir "$versions/2"
expect_status "evaluate version 2" 0
expect_accuracy_in_range "evaluate version 2"
metrics_2=$(test_metrics)
if [ -n "$metrics_1" ] && [ "$metrics_1" != "$metrics_2" ]; then
    pass "versions 1 and 2 score differently ($metrics_1 vs $metrics_2)"
else
    fail "versions 1 and 2 both score '$metrics_1', so the default below is not told apart"
fi

run "$DISTML" evaluate --data_root "$root"
expect_status "evaluate the default version" 0
expect_equal "evaluate the default version" "$(test_metrics)" "$metrics_2" \
    "the loss and accuracy (those of version 2)"

# An incomplete version 3 is skipped by evaluate, and train still numbers
# its next model 4, so the folder someone else is writing stays untouched.
mkdir -p "$versions/3"
echo "partial" >"$versions/3/variables.safetensors"
run "$DISTML" evaluate --data_root "$root"
expect_status "default with an incomplete version 3" 0
expect_in "default with an incomplete version 3" err "skipping version 3"
expect_equal "default with an incomplete version 3" "$(test_metrics)" "$metrics_2" \
    "the loss and accuracy (those of version 2)"
train --epochs 1 --checkpoint_dir "$tmp/ckpt-c"
expect_status "save after an incomplete version 3" 0
expect_in "save after an incomplete version 3" out "Saved model to $versions/4"
expect_equal "save after an incomplete version 3" "$(cat "$versions/3/variables.safetensors")" \
    partial "the content of version 3"

# --- corrupt, incomplete and missing model folders ---
flipped="$tmp/model-flipped"
cp -r "$versions/2" "$flipped"
size=$(wc -c <"$flipped/variables.safetensors")
flip_byte "$flipped/variables.safetensors" $((size - 1))
run "$DISTML" evaluate --data_root "$root" --saved_model_dir "$flipped"
expect_status "flipped byte in variables.safetensors" 1
expect_in "flipped byte in variables.safetensors" err "corrupt bundle $flipped"
expect_in "flipped byte in variables.safetensors" err "file variables.safetensors has SHA-256"
expect_not_in "flipped byte in variables.safetensors" out "Test accuracy"

unfinished="$tmp/model-without-manifest"
cp -r "$versions/2" "$unfinished"
rm "$unfinished/manifest.json"
run "$DISTML" evaluate --data_root "$root" --saved_model_dir "$unfinished"
expect_status "model without manifest.json" 1
expect_in "model without manifest.json" err "model $unfinished is incomplete"
expect_in "model without manifest.json" err "manifest.json"

run "$DISTML" evaluate --data_root "$root" --saved_model_dir "$tmp/no-such-model"
expect_status "missing model folder" 1
expect_in "missing model folder" err "$tmp/no-such-model not found"

run "$DISTML" evaluate --data_root "$root" --saved_model_dir "$tmp/ckpt-a/ckpt_1"
expect_status "checkpoint passed as a model" 1
expect_in "checkpoint passed as a model" err "is a 'distml-checkpoint' bundle, not a model"

finish
