#!/bin/sh
# Integration test for `distml ingest`: usage, single-file validation
# (--images/--labels) and a full ingest, first on small IDX files generated
# here, then on the installed Fashion-MNIST files when they are present.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
set -u

NAME=ingest-sh
. "$(dirname "$0")/lib/common.sh"
REAL_DIR=/usr/share/datasets/fashion-mnist

# The magic a loader reports when it reads gzip bytes as IDX (0x1F8B0800).
expect_no_gzip_magic_as_decimal() {
    if grep -qF 529205256 "$tmp/out" "$tmp/err"; then
        fail "$1: output reports magic 529205256"
    else
        pass "$1: output does not report magic 529205256"
    fi
}

expect_size() {
    size=$(wc -c <"$2" 2>/dev/null || echo missing)
    size=$(echo $size)
    if [ "$size" = "$3" ]; then
        pass "$1: $(basename "$2") is $3 bytes"
    else
        fail "$1: $(basename "$2") is $size bytes, expected $3"
    fi
}

# No temporary or moved-aside dataset directory is left next to the dataset.
expect_no_stray_dirs() {
    stray=$(ls "$2/datasets" 2>/dev/null | grep -v '^fashion_mnist$')
    if [ -z "$stray" ]; then
        pass "$1: no temporary directory left in $2/datasets"
    else
        fail "$1: left behind in $2/datasets: $stray"
    fi
}

# expect_unchanged NAME SAVED_DIR DATASET_DIR: every saved file is byte-identical.
expect_unchanged() {
    same=1
    for f in train-images.u8 train-labels.u8 test-images.u8 test-labels.u8 manifest.json; do
        cmp -s "$2/$f" "$3/$f" || { same=0; echo "    $f differs"; }
    done
    if [ "$same" -eq 1 ]; then
        pass "$1: previous dataset is byte-identical"
    else
        fail "$1: previous dataset changed"
    fi
}

zeros() { dd if=/dev/zero bs="$1" count=1 2>/dev/null; }

# IDX headers as octal escapes: 0x00000803 count rows=28 cols=28, 0x00000801 count.
images_header() { printf '\000\000\010\003\000\000\000'"$1"'\000\000\000\034\000\000\000\034'; }
labels_header() { printf '\000\000\010\001\000\000\000'"$1"; }

# --- usage ---
run "$DISTML" ingest --no_such_option
expect_status "bad option" 2
expect_in "bad option" err "usage: distml ingest"
expect_in "bad option" err "[/usr/share/datasets/fashion-mnist]"
run "$DISTML" ingest --help
expect_status "--help" 0
expect_in "--help" out "--data_root DIR"

# --- generated files ---
gen="$tmp/gen"
mkdir -p "$gen"
{ images_header '\003'; zeros 2352; } >"$gen/train-images-idx3-ubyte"
{ labels_header '\003'; printf '\001\002\011'; } >"$gen/train-labels-idx1-ubyte"
{ images_header '\001'; zeros 784; } >"$gen/t10k-images-idx3-ubyte"
{ labels_header '\001'; printf '\007'; } >"$gen/t10k-labels-idx1-ubyte"
gzip -c "$gen/train-images-idx3-ubyte" >"$tmp/images.gz"
gzip -c "$gen/train-labels-idx1-ubyte" >"$tmp/labels.gz"
cp "$gen/train-images-idx3-ubyte" "$tmp/raw-behind-gz-name.gz"
gzip -c "$tmp/images.gz" >"$tmp/double.gz"

run "$DISTML" ingest --images "$tmp/images.gz"
expect_status "generated images.gz" 0
expect_in "generated images.gz" out "3 images of 28x28"
run "$DISTML" ingest --images "$tmp/raw-behind-gz-name.gz"
expect_status "raw IDX named .gz" 0
expect_in "raw IDX named .gz" out "3 images of 28x28"
run "$DISTML" ingest --labels "$tmp/labels.gz"
expect_status "generated labels.gz" 0
expect_in "generated labels.gz" out "3 labels"
run "$DISTML" ingest --images "$tmp/double.gz"
expect_status "gzip inside gzip" 1
expect_in "gzip inside gzip" err "distml: error: $tmp/double.gz: IDX magic expected 0x00000803"
expect_in "gzip inside gzip" err "found 0x1F8B08"
expect_no_gzip_magic_as_decimal "gzip inside gzip"
run "$DISTML" ingest --images "$tmp/labels.gz"
expect_status "labels as images" 1
expect_in "labels as images" err \
    "expected 0x00000803 (2051, images), found 0x00000801 (2049, labels)"

root="$tmp/root"
run "$DISTML" ingest --source_dir "$gen" --data_root "$root"
expect_status "generated ingest" 0
expect_in "generated ingest" out "train: 3 images of 28x28"
ds="$root/datasets/fashion_mnist"
expect_size "generated ingest" "$ds/train-images.u8" 2352
expect_size "generated ingest" "$ds/train-labels.u8" 3
expect_size "generated ingest" "$ds/test-images.u8" 784
expect_size "generated ingest" "$ds/test-labels.u8" 1
expect_in "generated ingest" out "$ds"
if grep -q '"num_classes":[[:space:]]*10' "$ds/manifest.json"; then
    pass "generated ingest: manifest has num_classes 10"
else
    fail "generated ingest: manifest lacks num_classes 10"
fi
mkdir -p "$tmp/saved" && cp "$ds"/* "$tmp/saved/"

bad="$tmp/bad"
mkdir -p "$bad"
cp "$gen"/* "$bad/"
{ labels_header '\001'; printf '\012'; } >"$bad/t10k-labels-idx1-ubyte"
run "$DISTML" ingest --source_dir "$bad" --data_root "$root"
expect_status "ingest with label 10" 1
expect_in "ingest with label 10" err \
    "t10k-labels-idx1-ubyte: label at index 0 expected 0..9, found 10"
expect_unchanged "ingest with label 10" "$tmp/saved" "$ds"
expect_no_stray_dirs "ingest with label 10" "$root"
run "$DISTML" ingest --source_dir "$bad" --data_root "$tmp/fresh-root"
expect_status "ingest with label 10 into a new root" 1
if [ -e "$tmp/fresh-root/datasets/fashion_mnist" ]; then
    fail "ingest with label 10 into a new root: a dataset directory was created"
else
    pass "ingest with label 10 into a new root: no dataset directory"
fi
expect_no_stray_dirs "ingest with label 10 into a new root" "$tmp/fresh-root"

# --- the installed Fashion-MNIST files ---
real_present=1
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
    t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f "$REAL_DIR/$f" ] || real_present=0
done
if [ "$real_present" -eq 0 ]; then
    echo "skip   real-data checks: $REAL_DIR is not installed"
else
    real_images="$REAL_DIR/train-images-idx3-ubyte.gz"
    run "$DISTML" ingest --images "$real_images"
    expect_status "real train images" 0
    expect_in "real train images" out "60000 images of 28x28"
    expect_no_gzip_magic_as_decimal "real train images"

    mkdir -p "$tmp/real-raw" "$tmp/real-double"
    gunzip -c "$real_images" >"$tmp/real-raw/train-images-idx3-ubyte.gz"
    run "$DISTML" ingest --images "$tmp/real-raw/train-images-idx3-ubyte.gz"
    expect_status "real raw IDX named .gz" 0
    expect_in "real raw IDX named .gz" out "60000 images of 28x28"

    gzip -c "$real_images" >"$tmp/real-double/train-images-idx3-ubyte.gz"
    run "$DISTML" ingest --images "$tmp/real-double/train-images-idx3-ubyte.gz"
    expect_status "real gzip inside gzip" 1
    expect_in "real gzip inside gzip" err "IDX magic expected 0x00000803"
    expect_in "real gzip inside gzip" err "found 0x1F8B08"
    expect_no_gzip_magic_as_decimal "real gzip inside gzip"

    run "$DISTML" ingest --images "$REAL_DIR/train-labels-idx1-ubyte.gz"
    expect_status "real labels as images" 1
    expect_in "real labels as images" err "train-labels-idx1-ubyte.gz: IDX magic expected"
    expect_in "real labels as images" err "(2051, images)"
    expect_in "real labels as images" err "(2049, labels)"

    real_root="$tmp/real-root"
    run "$DISTML" ingest --source_dir "$REAL_DIR" --data_root "$real_root"
    expect_status "real ingest" 0
    expect_in "real ingest" out "train: 60000 images of 28x28"
    expect_in "real ingest" out "test:  10000 images of 28x28"
    real_ds="$real_root/datasets/fashion_mnist"
    expect_size "real ingest" "$real_ds/train-images.u8" 47040000
    expect_size "real ingest" "$real_ds/train-labels.u8" 60000
    expect_size "real ingest" "$real_ds/test-images.u8" 7840000
    expect_size "real ingest" "$real_ds/test-labels.u8" 10000
    mkdir -p "$tmp/real-saved" && cp "$real_ds"/* "$tmp/real-saved/"

    # The real files, but the test labels lose their last byte.
    broken="$tmp/real-broken"
    mkdir -p "$broken"
    for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz; do
        ln -s "$REAL_DIR/$f" "$broken/$f"
    done
    gunzip -c "$REAL_DIR/t10k-labels-idx1-ubyte.gz" | head -c 10007 \
        >"$broken/t10k-labels-idx1-ubyte"
    run "$DISTML" ingest --source_dir "$broken" --data_root "$real_root"
    expect_status "real ingest with truncated labels" 1
    expect_in "real ingest with truncated labels" err "IDX size expected 10008 bytes"
    expect_in "real ingest with truncated labels" err "found 10007 bytes"
    expect_unchanged "real ingest with truncated labels" "$tmp/real-saved" "$real_ds"
    expect_no_stray_dirs "real ingest with truncated labels" "$real_root"
fi

finish
