# Shared by the integration tests that need a prepared dataset and trained
# model versions; source it after setting $DISTML and $tmp.
#   make_noise_dataset ROOT       ingest 16 images of deterministic noise into
#                                 ROOT as both the training and the test split,
#                                 so that a model trained longer scores higher
#   make_model ROOT SEED STEPS OUT
#                                 train a cnn for STEPS steps with SEED into OUT

# N bytes of deterministic pseudo-random data from awk's generator.
noise_bytes() {
    LC_ALL=C awk -v n="$1" -v seed="$2" 'BEGIN {
        srand(seed)
        for (i = 0; i < n; i++) printf "%c", int(rand() * 256)
    }'
}

# IDX headers as octal escapes: 0x00000803 count rows=28 cols=28, 0x00000801 count.
idx_images_header() { printf '\000\000\010\003\000\000\000'"$1"'\000\000\000\034\000\000\000\034'; }
idx_labels_header() { printf '\000\000\010\001\000\000\000'"$1"; }

make_noise_dataset() {
    src="$tmp/idx-source"
    mkdir -p "$src"
    { idx_images_header '\020'; noise_bytes 12544 1; } >"$src/train-images-idx3-ubyte"
    { idx_labels_header '\020'; printf '\000\001\002\003\004\005\006\007\010\011\000\001\002\003\004\005'; } \
        >"$src/train-labels-idx1-ubyte"
    cp "$src/train-images-idx3-ubyte" "$src/t10k-images-idx3-ubyte"
    cp "$src/train-labels-idx1-ubyte" "$src/t10k-labels-idx1-ubyte"
    "$DISTML" ingest --source_dir "$src" --data_root "$1" >"$tmp/ingest.out" 2>&1 || {
        echo "cannot prepare the dataset:"
        cat "$tmp/ingest.out"
        exit 2
    }
}

make_model() {
    "$DISTML" train --data_root "$1" --seed "$2" --epochs 1 --steps_per_epoch "$3" \
        --batch_size_per_replica 8 --noresume --checkpoint_dir "$tmp/ckpt-$2" \
        --log_dir "$tmp/logs-$2" --blas_threads 1 --saved_model_dir "$4" \
        >"$tmp/train.out" 2>&1 || {
        echo "cannot train a model with seed $2:"
        cat "$tmp/train.out"
        exit 2
    }
}
