#!/bin/sh
# Integration test for 2 workers on 2 hosts: two network namespaces joined
# by a veth pair stand for the hosts, 10.213.0.1 and 10.213.0.2. Open MPI's
# TCP transport and out-of-band channel use only that link. mpirun runs in
# the first namespace and reaches the second through an rsh agent script
# around `ip netns exec`, as ssh would reach another machine. The run must
# finish and end with the weights of the same 2 workers on one machine, and
# its gradients must have crossed the veth link.
# The namespaces have no route to any other network, and the test deletes
# them on exit. It skips where they cannot be created (not root, no
# iproute2, no permission).
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space),
# DISTML_PYTHON (optional, a python3 with numpy).
set -u
NAME=mpi-two-hosts-sh
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/mpi.sh"

skip() {
    echo "skipped: $1"
    rm -rf "$tmp"
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
command -v ip >/dev/null 2>&1 || skip "ip not found; install iproute2"

host_a=10.213.0.1
host_b=10.213.0.2
ns_a="distml-a-$$"
ns_b="distml-b-$$"
link=dmveth0
created=""
# Deletes the namespaces this test created, with the veth pair in them.
delete_namespaces() {
    for ns in $created; do
        ip netns delete "$ns" 2>/dev/null
        if ip netns list 2>/dev/null | awk -v ns="$ns" '$1 == ns { found = 1 } END { exit !found }'; then
            fail "cleanup: namespace $ns is still there after ip netns delete"
        fi
    done
    created=""
}
trap delete_namespaces EXIT
trap 'exit 1' INT TERM HUP

ip netns add "$ns_a" 2>"$tmp/netns.err" ||
    skip "cannot create a network namespace: $(cat "$tmp/netns.err")"
created=$ns_a
ip netns add "$ns_b" 2>"$tmp/netns.err" ||
    skip "cannot create a network namespace: $(cat "$tmp/netns.err")"
created="$ns_a $ns_b"

# The veth ends get temporary names in this namespace, then the same name
# in each test namespace, which btl_tcp_if_include and oob_tcp_if_include
# name.
setup_link() {
    ip link add "dmva$$" netns "$ns_a" type veth peer name "dmvb$$" netns "$ns_b" &&
        ip -n "$ns_a" link set "dmva$$" name "$link" &&
        ip -n "$ns_b" link set "dmvb$$" name "$link" &&
        ip -n "$ns_a" addr add "$host_a/24" dev "$link" &&
        ip -n "$ns_b" addr add "$host_b/24" dev "$link" &&
        ip -n "$ns_a" link set "$link" up &&
        ip -n "$ns_b" link set "$link" up &&
        ip -n "$ns_a" link set lo up &&
        ip -n "$ns_b" link set lo up
}
setup_link 2>"$tmp/link.err" || skip "cannot set up the veth pair: $(cat "$tmp/link.err")"
pass "setup: namespaces $ns_a ($host_a) and $ns_b ($host_b) joined by veth $link"

# Open MPI calls the agent as `AGENT [OPTIONS] HOST COMMAND...`, where the
# command is a shell command line, as ssh would pass it on.
agent="$tmp/netns-agent.sh"
cat >"$agent" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do
    case "\$1" in
    -*) shift ;;
    *) break ;;
    esac
done
host=\$1
shift
case "\$host" in
$host_a) ns=$ns_a ;;
$host_b) ns=$ns_b ;;
*) echo "netns-agent: unknown host \$host" >&2; exit 1 ;;
esac
echo "\$host -> \$ns" >>"$tmp/agent.log"
exec ip netns exec "\$ns" /bin/sh -c "\$*"
EOF
chmod +x "$agent"
printf '%s slots=1\n%s slots=1\n' "$host_a" "$host_b" >"$tmp/hostfile"

root="$tmp/root"
make_dataset "$root" 400 100
steps=5
# --- one machine ---
mpirun_job -np 2 "$DISTML" train --data_root "$root" --epochs 1 --steps_per_epoch "$steps" \
    --batch_size_per_replica 32 --seed 7 --blas_threads 1 --log_steps 0 --noresume \
    --checkpoint_dir "$tmp/local/ckpt" --log_dir "$tmp/local/logs" \
    --saved_model_dir "$tmp/local/model"
expect_status "2 workers on one machine" 0

# --- two hosts ---
tx_before=$(ip netns exec "$ns_b" cat "/sys/class/net/$link/statistics/tx_bytes")
run ip netns exec "$ns_a" timeout 120 mpirun -np 2 --hostfile "$tmp/hostfile" \
    --mca plm_rsh_agent "$agent" --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include "$link" --mca oob_tcp_if_include "$link" \
    -x OPENBLAS_NUM_THREADS "$DISTML" train --data_root "$root" --epochs 1 \
    --steps_per_epoch "$steps" --batch_size_per_replica 32 --seed 7 --blas_threads 1 \
    --log_steps 0 --noresume --checkpoint_dir "$tmp/hosts/ckpt" --log_dir "$tmp/hosts/logs" \
    --saved_model_dir "$tmp/hosts/model"
expect_status "2 workers on 2 hosts" 0
expect_in "2 workers on 2 hosts" err "epoch:1 steps:$steps "
expect_in "2 workers on 2 hosts" out "Saved model to $tmp/hosts/model"
tx_after=$(ip netns exec "$ns_b" cat "/sys/class/net/$link/statistics/tx_bytes")
if grep -qx "$host_b -> $ns_b" "$tmp/agent.log" 2>/dev/null; then
    pass "2 workers on 2 hosts: the agent started the daemon of $host_b in $ns_b"
else
    fail "2 workers on 2 hosts: the agent never started a daemon in $ns_b"
fi

# Worker 1's part of every all-reduce leaves host b over the veth: at least
# the 4-byte gradient of each trainable variable per step.
gradient_bytes=$("$WEIGHTS_PYTHON" -c '
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
header.pop("__metadata__", None)
print(sum(t["data_offsets"][1] - t["data_offsets"][0] for t in header.values()))
' "$tmp/hosts/model/variables.safetensors" 2>/dev/null)
sent=$((tx_after - tx_before))
needed=$((steps * ${gradient_bytes:-0}))
if [ "${gradient_bytes:-0}" -gt 0 ] && [ "$sent" -ge "$needed" ]; then
    pass "2 workers on 2 hosts: host b sent $sent bytes over the veth, at least $steps x $gradient_bytes"
else
    fail "2 workers on 2 hosts: host b sent $sent bytes over the veth, expected at least $needed"
fi
expect_same_weights "2 hosts vs one machine" "$tmp/hosts/model" "$tmp/local/model"

namespaces=$created
delete_namespaces
left=$(ip netns list 2>/dev/null | awk -v a="$ns_a" -v b="$ns_b" '$1 == a || $1 == b')
expect_equal "cleanup of $namespaces" "${left:-none}" none "the list of test namespaces left"
finish
