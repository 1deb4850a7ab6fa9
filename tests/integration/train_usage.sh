#!/bin/sh
# Integration test for the input errors of `distml train` and `distml
# evaluate` (invalid values, unknown options, a missing or modified dataset)
# and for `train --summary` of each model type.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u
NAME=train-usage-sh
. "$(dirname "$0")/lib/common.sh"

root="$tmp/root"
make_dataset "$root" 64 16

# expect_usage_error NAME TEXT ARGS...: exit status 2, TEXT on stderr and no
# training started.
expect_usage_error() {
    check=$1
    text=$2
    shift 2
    run "$DISTML" "$@"
    expect_status "$check" 2
    expect_in "$check" err "$text"
    expect_not_in "$check" out "Epoch"
}

# --- invalid values and options ---
expect_usage_error "--model_type foo" \
    "invalid --model_type 'foo': expected cnn, dropout or batch_norm" \
    train --data_root "$root" --model_type foo
expect_usage_error "--epochs 0" "invalid --epochs '0': expected an integer from 1" \
    train --data_root "$root" --epochs 0
expect_usage_error "--epochs abc" "invalid --epochs 'abc': expected an integer" \
    train --data_root "$root" --epochs abc
expect_usage_error "--epochs 2x" "invalid --epochs '2x'" train --data_root "$root" --epochs 2x
expect_usage_error "--epochs without a value" "option --epochs needs a value" \
    train --data_root "$root" --epochs
expect_usage_error "--batch_size_per_replica 0" \
    "invalid --batch_size_per_replica '0': expected an integer from 1 to 65536" \
    train --data_root "$root" --batch_size_per_replica 0
expect_usage_error "--steps_per_epoch -1" "invalid --steps_per_epoch '-1'" \
    train --data_root "$root" --steps_per_epoch -1
expect_usage_error "unknown train option" "unknown option --no_such_option" \
    train --data_root "$root" --no_such_option
expect_in "unknown train option" err "usage: distml train"
expect_usage_error "extra train argument" "unexpected argument 'extra'" \
    train --data_root "$root" extra
expect_usage_error "unknown evaluate option" "unknown option --no_such_option" \
    evaluate --data_root "$root" --no_such_option
expect_in "unknown evaluate option" err "usage: distml evaluate"
expect_usage_error "evaluate --batch_size 0" "invalid --batch_size '0'" \
    evaluate --data_root "$root" --batch_size 0
expect_no_path "usage errors" "$root/checkpoint"
expect_no_path "usage errors" "$root/saved_model_versions"

run "$DISTML" train --help
expect_status "train --help" 0
expect_in "train --help" out "--checkpoint_dir DIR"
expect_in "train --help" out "--resume, --noresume"

# --- missing and modified datasets ---
run "$DISTML" train --data_root "$tmp/empty-root" --epochs 1
expect_status "train without a dataset" 1
expect_in "train without a dataset" err "no prepared dataset at $tmp/empty-root/datasets/fashion_mnist"
expect_in "train without a dataset" err "run \`distml ingest\` first"

run "$DISTML" evaluate --data_root "$tmp/empty-root" --saved_model_dir "$tmp/any-model"
expect_status "evaluate without a dataset" 1
expect_in "evaluate without a dataset" err "run \`distml ingest\` first"

modified="$tmp/modified-root"
cp -r "$root" "$modified"
flip_byte "$modified/datasets/fashion_mnist/train-images.u8" 1000
run "$DISTML" train --data_root "$modified" --epochs 1 --steps_per_epoch 1
expect_status "modified train-images.u8" 1
expect_in "modified train-images.u8" err "$modified/datasets/fashion_mnist/train-images.u8: SHA-256 expected"
expect_in "modified train-images.u8" err "run \`distml ingest\` again"
expect_no_path "modified train-images.u8" "$modified/checkpoint"

# --- --summary of each model type writes nothing ---
summary_root="$tmp/summary-root"
for case in "cnn 93,322 93,322 0" "dropout 93,322 93,322 0" "batch_norm 93,706 93,514 192"; do
    set -- $case
    run "$DISTML" train --model_type "$1" --summary --data_root "$summary_root"
    expect_status "$1 --summary" 0
    expect_in "$1 --summary" out "Total params: $2"
    expect_in "$1 --summary" out "Trainable params: $3"
    expect_in "$1 --summary" out "Non-trainable params: $4"
done
expect_no_path "--summary" "$summary_root"
run "$DISTML" train --summary --data_root "$root"
expect_status "--summary with a dataset" 0
root_entries=$(ls -A "$root" | paste -sd, -)
expect_equal "--summary with a dataset" "$root_entries" datasets "the content of the data root"
mkdir -p "$tmp/summary-cwd"
(cd "$tmp/summary-cwd" && "$DISTML" train --model_type batch_norm --summary >/dev/null 2>&1)
cwd_entries=$(ls -A "$tmp/summary-cwd")
expect_equal "--summary with the default data root" "${cwd_entries:-empty}" empty \
    "the working directory"

finish
