#!/bin/sh
# Integration test for what one `distml train` run writes: the progress
# output when stdout is not a terminal, the TensorBoard event files, and the
# tensors of its checkpoints and saved model, for each model type.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u
NAME=train-outputs-sh
. "$(dirname "$0")/lib/common.sh"

root="$tmp/root"
make_dataset "$root" 256 64

# expect_line NAME N PATTERN: line N of the progress lines ("4/4 [...") in
# $tmp/out matches the extended regular expression PATTERN.
expect_line() {
    line=$(grep '^4/4 \[' "$tmp/out" | sed -n "$2p")
    if printf '%s\n' "$line" | grep -qE -- "$3"; then
        pass "$1: progress line $2 matches '$3'"
    else
        fail "$1: progress line $2 is '$line', expected a match of '$3'"
    fi
}

# Prints the tensor names and shapes of a safetensors file, one "NAME SHAPE"
# per line. The file starts with an 8-byte little-endian length and that
# many bytes of JSON header.
safetensors_names() {
    python3 - "$1" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    (length,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(length))
for name, info in sorted(header.items()):
    if name != "__metadata__":
        print(name, ",".join(str(d) for d in info["shape"]))
EOF
}

# Prints how many elements of each optimizer/m/ tensor are nonzero as
# "NAME COUNT" lines.
nonzero_slots() {
    python3 - "$1" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    (length,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(length))
    data = f.read()
for name, info in sorted(header.items()):
    if name.startswith("optimizer/m/"):
        start, end = info["data_offsets"]
        values = struct.unpack("<%df" % ((end - start) // 4), data[start:end])
        print(name, sum(1 for v in values if v != 0.0))
EOF
}

# --- progress output to a file, TensorBoard events ---
logs="$tmp/logs"
run "$DISTML" train --data_root "$root" --steps_per_epoch 4 --batch_size_per_replica 16 \
    --epochs 4 --log_steps 2 --checkpoint_dir "$tmp/ckpt-cnn" --log_dir "$logs" \
    --saved_model_dir "$tmp/model-cnn"
expect_status "cnn for 4 epochs" 0
carriage_returns=$(tr -cd '\r' <"$tmp/out" | wc -c)
expect_equal "progress to a file" $carriage_returns 0 "the number of carriage returns"
expect_equal "progress to a file" "$(grep -c '^4/4 \[' "$tmp/out")" 4 \
    "the number of progress lines (one per epoch)"
expect_equal "progress to a file" "$(grep -c '/4 \[' "$tmp/out")" 4 \
    "the number of progress lines of any step"
for epoch in 1 2 3 4; do
    expect_in "progress to a file" out "Epoch $epoch/4"
    expect_in "progress to a file" out "Learning rate for epoch $epoch is "
done
for n in 1 2 3; do
    expect_line "progress to a file" $n ' - loss: [0-9.e+-]+ - accuracy: [0-9.]+ - lr: 0\.0010$'
done
expect_line "progress to a file" 4 ' - loss: [0-9.e+-]+ - accuracy: [0-9.]+ - lr: 1\.0000e-04$'
expect_in "progress to a file" out "Learning rate for epoch 4 is 9.9999997473787516e-05"

events=$(ls "$logs/train"/events.out.tfevents.* 2>/dev/null | head -n 1)
if [ -n "$events" ] && [ -s "$events" ]; then
    pass "TensorBoard: $events exists and is not empty"
    for tag in epoch_loss epoch_accuracy epoch_learning_rate batch_loss; do
        if grep -qa "$tag" "$events"; then
            pass "TensorBoard: the event file contains the tag $tag"
        else
            fail "TensorBoard: the event file lacks the tag $tag"
        fi
    done
else
    fail "TensorBoard: no non-empty events.out.tfevents.* under $logs/train"
    ls -la "$logs" "$logs/train" 2>&1 | sed 's/^/    /'
fi

# --- checkpoint and model tensors of each model type ---
if ! command -v python3 >/dev/null 2>&1; then
    echo "skip   checkpoint tensor checks: python3 is not installed"
    finish
fi
for type in cnn dropout batch_norm; do
    if [ "$type" != cnn ]; then
        run "$DISTML" train --data_root "$root" --model_type "$type" --steps_per_epoch 4 \
            --batch_size_per_replica 16 --epochs 1 --log_steps 0 \
            --checkpoint_dir "$tmp/ckpt-$type" --saved_model_dir "$tmp/model-$type"
        expect_status "$type for 1 epoch" 0
    fi
    last_epoch=1
    [ "$type" = cnn ] && last_epoch=4
    ckpt="$tmp/ckpt-$type/ckpt_$last_epoch"
    safetensors_names "$ckpt/tensors.safetensors" >"$tmp/ckpt-names"
    safetensors_names "$tmp/model-$type/variables.safetensors" >"$tmp/model-names"
    variables=$(wc -l <"$tmp/model-names")
    m_slots=$(grep -c '^optimizer/m/' "$tmp/ckpt-names")
    v_slots=$(grep -c '^optimizer/v/' "$tmp/ckpt-names")
    # BatchNorm's moving mean and variance are variables with no Adam slots.
    moving=$(grep -c '/moving_' "$tmp/model-names")
    if [ "$m_slots" -gt 0 ]; then
        pass "$type checkpoint: $m_slots optimizer/m/ tensors"
    else
        fail "$type checkpoint: no optimizer/m/ tensors"
    fi
    expect_equal "$type checkpoint" "$v_slots" "$m_slots" "the number of optimizer/v/ tensors"
    expect_equal "$type checkpoint" "$m_slots" $((variables - moving)) \
        "the number of optimizer/m/ tensors (trainable variables)"
    if [ "$type" = batch_norm ]; then
        expect_equal "$type checkpoint" "$moving" 4 "the number of moving statistics"
    fi
    # Each slot has the shape of its variable, and the variables are saved too.
    missing=$(grep '^optimizer/[mv]/' "$tmp/ckpt-names" | sed 's|^optimizer/[mv]/||' |
        while read -r name shape; do
            grep -qxF "$name $shape" "$tmp/model-names" || echo "$name $shape"
        done)
    expect_equal "$type checkpoint" "${missing:-none}" none \
        "the list of slots without a variable of the same shape"
    missing=$(while read -r line; do
        grep -qxF "$line" "$tmp/ckpt-names" || echo "$line"
    done <"$tmp/model-names")
    expect_equal "$type checkpoint" "${missing:-none}" none \
        "the list of model variables missing from the checkpoint"
    expect_equal "$type model" "$(grep -c '^optimizer/' "$tmp/model-names")" 0 \
        "the number of optimizer tensors in variables.safetensors"
    zero=$(nonzero_slots "$ckpt/tensors.safetensors" | awk '$2 == 0 { print $1 }')
    expect_equal "$type checkpoint" "${zero:-none}" none "the list of all-zero optimizer/m/ slots"
done

finish
