#!/bin/sh
# Integration test for `distml select`: the most accurate complete version
# is copied to max + 1, folders that are not version numbers are ignored,
# incomplete and corrupt versions are skipped with a warning, and a tie
# keeps the earlier candidate. Models are trained for a few steps on a
# small generated dataset whose test split equals its training split, so a
# model trained for more steps is the clear winner.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u

NAME=select-sh
here=$(dirname "$0")
. "$here/lib/common.sh"
. "$here/lib/models.sh"

expect_same_tree() {
    if diff -r "$2" "$3" >/dev/null 2>&1; then
        pass "$1: $(basename "$3") is a byte-identical copy of $(basename "$2")"
    else
        fail "$1: $3 differs from $2"
    fi
}

expect_missing() {
    if [ -e "$2" ]; then
        fail "$1: $2 exists"
    else
        pass "$1: $(basename "$2") does not exist"
    fi
}

# Only version folders remain: no temporary copy is left behind.
expect_no_temporary() {
    stray=$(ls "$2" | grep '\.tmp\.')
    if [ -z "$stray" ]; then
        pass "$1: no temporary directory left in $(basename "$2")"
    else
        fail "$1: left behind: $stray"
    fi
}

# Test accuracy of one model folder as `distml evaluate` prints it.
accuracy_of() {
    "$DISTML" evaluate --data_root "$root" --saved_model_dir "$1" --blas_threads 1 |
        sed -n 's/^Test accuracy: //p'
}

root="$tmp/root"
make_noise_dataset "$root"
models="$tmp/models"
make_model "$root" 1 2 "$models/weak1"
make_model "$root" 2 40 "$models/strong"
make_model "$root" 3 2 "$models/weak2"

# --- usage ---
run "$DISTML" select --help
expect_status "--help" 0
expect_in "--help" out "--model_base_path DIR"
expect_in "--help" out "[DATA_ROOT/saved_model_versions]"
run "$DISTML" select --data_root "$root" v1
expect_status "candidate that is not a number" 2
expect_in "candidate that is not a number" err "invalid VERSION 'v1'"
run "$DISTML" select --data_root "$root" --model_base_path "$tmp/no-such-base"
expect_status "missing base path" 1
expect_in "missing base path" err "is not a directory"

# --- versions 1, 2, 10 beside folders that are not version numbers ---
base="$tmp/b08"
mkdir -p "$base"
cp -r "$models/weak1" "$base/1"
cp -r "$models/strong" "$base/2"
cp -r "$models/weak2" "$base/10"
for name in tmp v0.1 11.partial; do cp -r "$models/strong" "$base/$name"; done
cp -r "$base/10" "$tmp/version10-before"
expected=$(accuracy_of "$base/2")
run "$DISTML" select --data_root "$root" --model_base_path "$base" --blas_threads 1
expect_status "numeric versions" 0
expect_in "numeric versions" out "Version 2: loss"
expect_in "numeric versions" out "Version 10: loss"
expect_in "numeric versions" out "accuracy $expected"
expect_in "numeric versions" out "Selected version 2"
expect_in "numeric versions" out "Best model with accuracy ${expected}00 is copied to $base/11"
if grep -q "Version .*\(tmp\|v0.1\|partial\)" "$tmp/out"; then
    fail "numeric versions: a folder that is not a version number was evaluated"
else
    pass "numeric versions: only version folders were evaluated"
fi
expect_same_tree "numeric versions" "$base/2" "$base/11"
expect_same_tree "numeric versions" "$tmp/version10-before" "$base/10"
expect_missing "numeric versions" "$base/3"
expect_missing "numeric versions" "$base/12"
expect_no_temporary "numeric versions" "$base"
if "$DISTML" evaluate --data_root "$root" --saved_model_dir "$base/11" >/dev/null 2>&1; then
    pass "numeric versions: the new version loads"
else
    fail "numeric versions: the new version does not load"
fi

# A second run finds 11 as the highest version and copies the best to 12.
run "$DISTML" select --data_root "$root" --model_base_path "$base" --blas_threads 1
expect_status "second run" 0
expect_in "second run" out "Selected version 2"
expect_in "second run" out "is copied to $base/12"

# --- explicit candidates, in the order given ---
run "$DISTML" select --data_root "$root" --model_base_path "$base" --blas_threads 1 10 1
expect_status "explicit candidates" 0
if grep -q "^Version 2:" "$tmp/out"; then
    fail "explicit candidates: version 2 was evaluated although not listed"
else
    pass "explicit candidates: only the listed versions were evaluated"
fi
# Listed first, 10 wins unless 1 is strictly more accurate.
winner=$(awk -v a="$(accuracy_of "$base/10")" -v b="$(accuracy_of "$base/1")" \
    'BEGIN { print (b > a) ? 1 : 10 }')
expect_in "explicit candidates" out "Selected version $winner"
expect_in "explicit candidates" out "is copied to $base/13"
run "$DISTML" select --data_root "$root" --model_base_path "$base" 7
expect_status "explicit missing version" 1
expect_in "explicit missing version" err "version 7 not found"

# --- a tie keeps the earlier version ---
tie="$tmp/tie"
mkdir -p "$tie"
cp -r "$models/strong" "$tie/1"
cp -r "$models/strong" "$tie/2"
run "$DISTML" select --data_root "$root" --model_base_path "$tie" --blas_threads 1
expect_status "tie" 0
expect_in "tie" out "Selected version 1"
expect_in "tie" out "is copied to $tie/3"

# --- incomplete and corrupt candidates are skipped with a warning ---
partial="$tmp/partial"
mkdir -p "$partial"
cp -r "$models/weak1" "$partial/1"
cp -r "$models/strong" "$partial/2"
rm "$partial/2/manifest.json"
cp -r "$models/strong" "$partial/3"
printf 'x' >>"$partial/3/variables.safetensors"
run "$DISTML" select --data_root "$root" --model_base_path "$partial" --blas_threads 1
expect_status "incomplete candidates" 0
expect_in "incomplete candidates" err "skipping version 2"
expect_in "incomplete candidates" err "skipping version 3"
expect_in "incomplete candidates" out "Selected version 1"
expect_in "incomplete candidates" out "is copied to $partial/4"
expect_same_tree "incomplete candidates" "$partial/1" "$partial/4"

# --- nothing complete ---
none="$tmp/none"
mkdir -p "$none/5" "$none/tmp"
run "$DISTML" select --data_root "$root" --model_base_path "$none"
expect_status "no complete version" 1
expect_in "no complete version" err "no complete model version among the candidates"
expect_missing "no complete version" "$none/6"

finish
