#!/bin/sh
# Integration test of resource templates in `distml workflow run`: MPIJob
# and TFJob manifests run as local mpirun jobs on a persistentVolumeClaim
# folder, their success and failure conditions, and an InferenceService
# that starts `distml serve` detached, responds on loopback, and stops with
# `distml workflow services stop`.
# Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space).
NAME=workflow-resources
here=$(dirname "$0")
. "$here/lib/common.sh"
. "$here/lib/mpi.sh"
. "$here/lib/models.sh"

PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
root="$tmp/root"
claim="$root/pvc/distml-data"
# make_noise_dataset writes the IDX files to $tmp/idx-source; the workflow
# ingests them itself.
make_noise_dataset "$tmp/scratch"

cat >"$tmp/wf.yaml" <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: resources-
spec:
  entrypoint: main
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: distml-data}
  templates:
  - name: main
    steps:
    - - name: ingest
        template: ingest
    - - name: ranks
        template: ranks
      - name: workers
        template: workers
      - name: train
        template: train
    - - name: failing
        template: failing
        continueOn: {failed: true}
    - - name: serve
        template: serve
  - name: ingest
    container:
      image: distml:0.1.0
      command: [distml, ingest, --source_dir, "$tmp/idx-source", --data_root, /data]
      volumeMounts: [{name: data, mountPath: /data}]
  - name: ranks
    resource:
      action: create
      successCondition: status.replicaStatuses.Launcher.succeeded = 1
      failureCondition: status.replicaStatuses.Launcher.failed > 0
      manifest: |
        apiVersion: kubeflow.org/v2beta1
        kind: MPIJob
        metadata: {name: ranks}
        spec:
          slotsPerWorker: 1
          mpiReplicaSpecs:
            Launcher:
              replicas: 1
              template:
                spec:
                  containers:
                  - name: launcher
                    image: distml:0.1.0
                    command: [sh, -c, 'echo rank \$OMPI_COMM_WORLD_RANK >> /data/ranks.txt']
                    volumeMounts: [{name: data, mountPath: /data}]
                  volumes:
                  - name: data
                    persistentVolumeClaim: {claimName: distml-data}
            Worker:
              replicas: 3
  - name: workers
    resource:
      action: create
      successCondition: status.replicaStatuses.Worker.succeeded = 2
      failureCondition: status.replicaStatuses.Worker.failed > 0
      manifest: |
        apiVersion: kubeflow.org/v1
        kind: TFJob
        metadata: {generateName: workers-}
        spec:
          tfReplicaSpecs:
            Worker:
              replicas: 2
              template:
                spec:
                  containers:
                  - name: tensorflow
                    image: distml:0.1.0
                    command: [sh, -c, 'echo worker >> /shared/workers.txt']
                    volumeMounts: [{name: shared, mountPath: /shared}]
                  volumes:
                  - name: shared
                    persistentVolumeClaim: {claimName: distml-data}
  - name: train
    resource:
      action: create
      successCondition: status.replicaStatuses.Launcher.succeeded = 1
      manifest: |
        apiVersion: kubeflow.org/v2beta1
        kind: MPIJob
        metadata: {name: train-cnn}
        spec:
          mpiReplicaSpecs:
            Launcher:
              replicas: 1
              template:
                spec:
                  containers:
                  - name: launcher
                    image: distml:0.1.0
                    env:
                    - {name: OMPI_ALLOW_RUN_AS_ROOT, value: "1"}
                    - {name: OMPI_ALLOW_RUN_AS_ROOT_CONFIRM, value: "1"}
                    command: [mpirun, -np, "2", --bind-to, none, /usr/local/bin/distml, train,
                              --data_root, /data, --steps_per_epoch, "2",
                              --batch_size_per_replica, "4", --noresume, --blas_threads, "1",
                              --saved_model_dir, /data/saved_model_versions/1,
                              --checkpoint_dir, /data/checkpoint/cnn, --log_dir, /data/logs/cnn]
                    volumeMounts: [{name: data, mountPath: /data}]
                  volumes:
                  - name: data
                    persistentVolumeClaim: {claimName: distml-data}
            Worker:
              replicas: 2
  - name: failing
    resource:
      action: create
      successCondition: status.replicaStatuses.Launcher.succeeded = 1
      failureCondition: status.replicaStatuses.Launcher.failed > 0
      manifest: |
        apiVersion: kubeflow.org/v2beta1
        kind: MPIJob
        metadata: {name: failing}
        spec:
          mpiReplicaSpecs:
            Launcher:
              template:
                spec:
                  containers:
                  - {name: launcher, image: distml:0.1.0, command: [sh, -c, "exit 3"]}
            Worker:
              replicas: 1
  - name: serve
    resource:
      action: create
      successCondition: status.modelStatus.states.transitionStatus = UpToDate
      failureCondition: status.modelStatus.states.transitionStatus = BlockedByFailedLoad
      manifest: |
        apiVersion: serving.kserve.io/v1beta1
        kind: InferenceService
        metadata: {name: test-model}
        spec:
          predictor:
            scaleTarget: 1
            scaleMetric: concurrency
            model:
              modelFormat: {name: tensorflow}
              storageUri: pvc://distml-data/saved_model_versions
EOF

run "$DISTML" workflow run "$tmp/wf.yaml" --data_root "$root"
expect_status "workflow run" 0
name=$(sed -n 's/^Name: *//p' "$tmp/out")

# MPIJob: a command that is not mpirun runs as mpirun -np 3.
lines=$(wc -l <"$claim/ranks.txt" 2>/dev/null || echo 0)
expect_equal "MPIJob ranks" "$(echo $lines)" 3 "ranks.txt line count"
expect_in "MPIJob ranks" out "ranks "
# TFJob: mpirun -np 2 with the Worker command, mounted at another path.
lines=$(wc -l <"$claim/workers.txt" 2>/dev/null || echo 0)
expect_equal "TFJob workers" "$(echo $lines)" 2 "workers.txt line count"
# A real two-rank training job wrote a model version into the claim.
expect_file "MPIJob train" "$claim/saved_model_versions/1/manifest.json"
expect_file "MPIJob train" "$claim/checkpoint/cnn/ckpt_1/state.json"

run "$DISTML" workflow get "$name" -o json --data_root "$root"
expect_status "get" 0
cp "$tmp/out" "$tmp/wf.json"
node_field() {
    "$PYTHON" - "$tmp/wf.json" "$1" "$2" <<'PY'
import json, sys
wf = json.load(open(sys.argv[1]))
for node in wf["status"]["nodes"].values():
    if node["displayName"] == sys.argv[2]:
        print(node.get(sys.argv[3], ""))
PY
}
expect_equal "failing MPIJob" "$(node_field failing phase)" Failed "phase"
expect_equal "failing MPIJob" "$(node_field failing message)" \
    "failure condition 'status.replicaStatuses.Launcher.failed > 0' evaluated true" "message"
expect_equal "train MPIJob" "$(node_field train phase)" Succeeded "phase"
expect_equal "serve" "$(node_field serve phase)" Succeeded "phase"
expect_equal "serve" "$(node_field serve type)" Pod "node type"

# The service keeps running after the workflow and responds on loopback.
run "$DISTML" workflow services --data_root "$root"
expect_status "services" 0
expect_in "services" out "test-model"
expect_in "services" out "Running"
url=$(awk '$1 == "test-model" {print $4}' "$tmp/out")
pid=$(awk '$1 == "test-model" {print $3}' "$tmp/out")
status_json=$(curl -s "$url/v1/models/test-model")
case "$status_json" in
*AVAILABLE*) pass "service: model test-model is AVAILABLE at $url" ;;
*) fail "service: model status is '$status_json'" ;;
esac
# The service is a router: its replicas follow the predictor's fields.
replicas_json=$(curl -s "$url/replicas")
replica_pids=$(printf '%s' "$replicas_json" | "$PYTHON" -c '
import json, sys
print(" ".join(str(r["pid"]) for r in json.load(sys.stdin)["replicas"]))' 2>/dev/null)
case "$replica_pids" in
"" | *" "*) fail "service: expected one replica at $url/replicas, got '$replicas_json'" ;;
*) pass "service: one replica (pid $replica_pids) behind the router" ;;
esac

# A second InferenceService of the same name is refused while it runs.
cat >"$tmp/again.yaml" <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: again-}
spec:
  entrypoint: serve
  templates:
  - name: serve
    resource:
      action: create
      manifest: |
        apiVersion: serving.kserve.io/v1beta1
        kind: InferenceService
        metadata: {name: test-model}
        spec:
          predictor:
            model: {storageUri: pvc://distml-data/saved_model_versions}
EOF
run "$DISTML" workflow run "$tmp/again.yaml" --data_root "$root"
expect_status "second service" 1
expect_in "second service" out "already exists"

run "$DISTML" workflow services stop test-model --data_root "$root"
expect_status "services stop" 0
expect_in "services stop" out "stopped test-model"
if kill -0 "$pid" 2>/dev/null; then
    fail "services stop: pid $pid is still running"
    kill "$pid"
else
    pass "services stop: pid $pid has exited"
fi
for p in $replica_pids; do
    if kill -0 "$p" 2>/dev/null; then
        fail "services stop: replica pid $p is still running"
        kill "$p"
    else
        pass "services stop: replica pid $p has exited"
    fi
done
run "$DISTML" workflow services --data_root "$root"
expect_not_in "services after stop" out "test-model"

# KServe's checks on the predictor's fields stop the step before anything
# starts.
cat >"$tmp/bad-service.yaml" <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: bad-service-}
spec:
  entrypoint: serve
  templates:
  - name: serve
    resource:
      action: create
      manifest: |
        apiVersion: serving.kserve.io/v1beta1
        kind: InferenceService
        metadata: {name: bad-model}
        spec:
          predictor:
            minReplicas: 3
            maxReplicas: 2
            model: {storageUri: pvc://distml-data/saved_model_versions}
EOF
run "$DISTML" workflow run "$tmp/bad-service.yaml" --data_root "$root"
expect_status "minReplicas above maxReplicas" 1
expect_in "minReplicas above maxReplicas" out "'MinReplicas' cannot be greater than MaxReplicas"
sed 's/minReplicas: 3/scaleTarget: ten/' "$tmp/bad-service.yaml" >"$tmp/bad-target.yaml"
run "$DISTML" workflow run "$tmp/bad-target.yaml" --data_root "$root"
expect_status "scaleTarget not a number" 1
expect_in "scaleTarget not a number" out "spec.predictor.scaleTarget must be a whole number (got 'ten')"

finish
