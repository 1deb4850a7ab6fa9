"""Run workflows with `distml workflow run` and compare with Argo.

The checks cover node names, IDs, types, phases and links, parameter
substitution, retries with backoff, parallel step groups, parallelism
limits, podGC, deadlines and a relative data root. Also the error for an unsupported field, and
two runs at once on one data root.
"""

import os
import subprocess
import sys
import time
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wfharness as h  # noqa: E402


def workflow(body, generate_name="test-"):
    return (f"apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n"
            f"metadata:\n  generateName: {generate_name}\n{body}")


def read_float(path):
    with open(path, encoding="utf-8") as f:
        return float(f.read().strip())


class RunTest(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.DataRoot(self.id().split(".")[-1])

    def tearDown(self):
        outcome = self._outcome
        errors = getattr(outcome, "errors", None) or []
        failed = any(e for _, e in errors) if errors else not getattr(outcome, "success", True)
        if not failed:
            self.root.cleanup()

    def test_steps_names_and_links(self):
        result, name = self.root.run(os.path.join(h.ARGO_DIR, "steps.yaml"))
        self.assertEqual(result.returncode, 0, result.stderr)
        wf = self.root.get(name)
        self.assertEqual(wf["status"]["phase"], "Succeeded")
        self.assertEqual(wf["status"]["progress"], "3/3")
        root = h.nodes(wf)[name]
        self.assertEqual(root["type"], "Steps")
        self.assertEqual(root["templateName"], "hello-hello-hello")
        group0 = h.node_named(wf, f"{name}[0]")
        group1 = h.node_named(wf, f"{name}[1]")
        hello1 = h.node_named(wf, f"{name}[0].hello1")
        hello2a = h.node_named(wf, f"{name}[1].hello2a")
        hello2b = h.node_named(wf, f"{name}[1].hello2b")
        for node in (group0, group1, hello1, hello2a, hello2b):
            self.assertEqual(node["id"], h.node_id(name, node["name"]))
            self.assertEqual(node["boundaryID"], name)
            self.assertEqual(node["phase"], "Succeeded")
        self.assertEqual(group0["type"], "StepGroup")
        self.assertEqual(group0["displayName"], "[0]")
        self.assertEqual(hello1["type"], "Pod")
        self.assertEqual(hello1["displayName"], "hello1")
        self.assertEqual(root["children"], [group0["id"]])
        self.assertEqual(group0["children"], [hello1["id"]])
        self.assertEqual(hello1["children"], [group1["id"]])
        self.assertEqual(sorted(group1["children"]), sorted([hello2a["id"], hello2b["id"]]))
        self.assertEqual(sorted(root["outboundNodes"]), sorted([hello2a["id"], hello2b["id"]]))
        self.assertEqual(hello2a["inputs"]["parameters"],
                         [{"name": "message", "value": "hello2a"}])
        logs = self.root.distml("logs", name).stdout
        pod = f"{name}-print-message-{h.fnv32a(hello2b['name'])}"
        self.assertIn(f"{pod}: hello2b", logs)
        self.assertIn(": hello1", logs)
        node_log = self.root.distml("logs", name, "hello2a").stdout
        self.assertEqual(node_log, "hello2a\n")

    def test_dag_diamond_links(self):
        result, name = self.root.run(os.path.join(h.ARGO_DIR, "dag-diamond.yaml"))
        self.assertEqual(result.returncode, 0, result.stderr)
        wf = self.root.get(name)
        root = h.nodes(wf)[name]
        self.assertEqual(root["type"], "DAG")
        a, b, c, d = (h.node_named(wf, f"{name}.{task}") for task in "ABCD")
        self.assertEqual(root["children"], [a["id"]])
        self.assertEqual(sorted(a["children"]), sorted([b["id"], c["id"]]))
        self.assertEqual(b["children"], [d["id"]])
        self.assertEqual(c["children"], [d["id"]])
        self.assertEqual(root["outboundNodes"], [d["id"]])
        self.assertEqual(d["inputs"]["parameters"][0]["value"], "D after B and C")
        self.assertTrue(d["startedAt"] >= b["finishedAt"])

    def test_parallel_group_overlaps(self):
        marks = os.path.join(self.root.path, "marks")
        os.makedirs(marks)
        body = f"""spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: left
        template: mark
        arguments: {{parameters: [{{name: who, value: left}}]}}
      - name: right
        template: mark
        arguments: {{parameters: [{{name: who, value: right}}]}}
  - name: mark
    inputs: {{parameters: [{{name: who}}]}}
    container:
      image: alpine:3.20
      command: [sh, -c]
      args: ["date +%s.%N > {marks}/{{{{inputs.parameters.who}}}}.start; sleep 1.5;
              date +%s.%N > {marks}/{{{{inputs.parameters.who}}}}.end"]
"""
        path = self.root.write("parallel.yaml", workflow(body))
        started = time.monotonic()
        result, _ = self.root.run(path)
        elapsed = time.monotonic() - started
        self.assertEqual(result.returncode, 0, result.stderr)
        left = [read_float(os.path.join(marks, f"left.{k}")) for k in ("start", "end")]
        right = [read_float(os.path.join(marks, f"right.{k}")) for k in ("start", "end")]
        self.assertLess(left[0], right[1], "left started after right ended")
        self.assertLess(right[0], left[1], "right started after left ended")
        self.assertLess(elapsed, 2.9, "two 1.5 s steps took as long as running one by one")

    def test_parallelism_limit(self):
        marks = os.path.join(self.root.path, "marks")
        os.makedirs(marks)
        body = f"""spec:
  entrypoint: main
  parallelism: 2
  templates:
  - name: main
    steps:
    - - name: work
        template: mark
        withItems: [a, b, c, d, e]
        arguments: {{parameters: [{{name: who, value: "{{{{item}}}}"}}]}}
  - name: mark
    inputs: {{parameters: [{{name: who}}]}}
    container:
      image: alpine:3.20
      command: [sh, -c]
      args: ["date +%s.%N > {marks}/{{{{inputs.parameters.who}}}}.start; sleep 0.6;
              date +%s.%N > {marks}/{{{{inputs.parameters.who}}}}.end"]
"""
        path = self.root.write("limit.yaml", workflow(body))
        result, name = self.root.run(path)
        self.assertEqual(result.returncode, 0, result.stderr)
        intervals = [(read_float(os.path.join(marks, f"{w}.start")),
                      read_float(os.path.join(marks, f"{w}.end"))) for w in "abcde"]
        max_running = max(sum(1 for s, e in intervals if s <= t < e) for t, _ in intervals)
        self.assertEqual(max_running, 2, f"{max_running} steps ran at once with parallelism 2")
        wf = self.root.get(name)
        names = sorted(n["displayName"] for n in h.pods(wf))
        self.assertEqual(names, ["work(0:a)", "work(1:b)", "work(2:c)", "work(3:d)",
                                 "work(4:e)"])

    def test_parameter_substitution(self):
        body = """spec:
  entrypoint: main
  arguments:
    parameters:
    - {name: greeting, value: hello}
    - {name: target, value: world}
  templates:
  - name: main
    steps:
    - - name: produce
        template: produce
      - name: exit-three
        template: exit-three
        continueOn: {failed: true}
      - name: loop
        template: echo
        withItems: [{n: 1, w: x}, {n: 2, w: y}]
        arguments: {parameters: [{name: text, value: "{{item.w}}{{item.n}}"}]}
    - - name: flow
        template: flow
        arguments:
          parameters:
          - {name: seed, value: "{{steps.produce.outputs.parameters.word}}"}
    - - name: report
        template: echo
        arguments:
          parameters:
          - name: text
            value: >-
              {{workflow.parameters.greeting}} {{workflow.parameters.target}}
              file={{steps.produce.outputs.parameters.word}}
              result={{steps.produce.outputs.result}}
              exit={{steps.exit-three.exitCode}}
              status={{steps.exit-three.status}}
              loop={{steps.loop.outputs.result}}
              dag={{steps.flow.outputs.parameters.joined}}
              name={{workflow.name}}
  - name: produce
    outputs:
      parameters:
      - name: word
        valueFrom: {path: /tmp/word.txt}
    script:
      image: alpine:3.20
      command: [sh]
      source: |
        printf 'from-file\\n' > /tmp/word.txt
        echo from-stdout
  - name: exit-three
    container: {image: alpine:3.20, command: [sh, -c, "exit 3"]}
  - name: echo
    inputs:
      parameters:
      - name: text
      - {name: suffix, default: "!"}
    script:
      image: alpine:3.20
      command: [sh]
      source: |
        cat <<'EOF'
        {{inputs.parameters.text}}{{inputs.parameters.suffix}}
        EOF
  - name: flow
    inputs: {parameters: [{name: seed}]}
    outputs:
      parameters:
      - name: joined
        valueFrom: {parameter: "{{tasks.second.outputs.result}}"}
    dag:
      tasks:
      - name: first
        template: echo
        arguments: {parameters: [{name: text, value: "{{inputs.parameters.seed}}"}]}
      - name: second
        template: echo
        dependencies: [first]
        arguments: {parameters: [{name: text, value: "{{tasks.first.outputs.result}}+"}]}
"""
        path = self.root.write("params.yaml", workflow(body))
        result, name = self.root.run(path, "target=argo")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        wf = self.root.get(name)
        report = h.node_named(wf, f"{name}[2].report")
        text = report["outputs"]["result"]
        self.assertIn("hello argo", text)
        self.assertIn("file=from-file", text)
        self.assertIn("result=from-stdout", text)
        self.assertIn("exit=3", text)
        self.assertIn("status=Failed", text)
        self.assertIn('loop=["x1!","y2!"]', text)
        self.assertIn("dag=from-file!+!", text)
        self.assertIn(f"name={name}", text)
        self.assertTrue(text.endswith("!"))
        produce = h.node_named(wf, f"{name}[0].produce")
        self.assertEqual(produce["outputs"]["parameters"][0]["value"], "from-file")
        self.assertEqual(produce["outputs"]["parameters"][0]["valueFrom"]["path"],
                         "/tmp/word.txt")
        self.assertEqual(h.node_named(wf, f"{name}[0].loop(0:n:1,w:x)")["phase"], "Succeeded")
        params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
        self.assertEqual(params, {"greeting": "hello", "target": "argo"})

    def test_unknown_parameter_rejected(self):
        result, _ = self.root.run(os.path.join(h.ARGO_DIR, "steps.yaml"), "nosuch=1")
        self.assertEqual(result.returncode, 1)
        self.assertIn("unknown parameter 'nosuch'", result.stderr)
        self.assertIn("greeting", result.stderr)
        self.assertEqual(self.root.runs(), [])

    def test_retry_failing_step(self):
        result, name = self.root.run(os.path.join(h.ARGO_DIR, "retry-backoff.yaml"))
        self.assertEqual(result.returncode, 1)
        wf = self.root.get(name)
        self.assertEqual(wf["status"]["phase"], "Failed")
        root = h.nodes(wf)[name]
        self.assertEqual(root["type"], "Retry")
        self.assertEqual(root["phase"], "Failed")
        self.assertEqual(root["message"], "No more retries left")
        attempts = [h.node_named(wf, f"{name}({i})") for i in range(3)]
        self.assertEqual(root["children"], [a["id"] for a in attempts])
        for attempt in attempts:
            self.assertEqual(attempt["type"], "Pod")
            self.assertEqual(attempt["phase"], "Failed")
            self.assertEqual(attempt["message"], "Error (exit code 3)")
            self.assertEqual(attempt["outputs"]["exitCode"], "3")
        with self.assertRaises(AssertionError):
            h.node_named(wf, f"{name}(3)")
        # Backoff: 1 s before the second attempt, 2 s before the third.
        def seconds(stamp):
            return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        self.assertGreaterEqual(seconds(attempts[1]["startedAt"]) -
                                seconds(attempts[0]["finishedAt"]), 1)
        self.assertGreaterEqual(seconds(attempts[2]["startedAt"]) -
                                seconds(attempts[1]["finishedAt"]), 2)

    def test_retry_until_success(self):
        counter = os.path.join(self.root.path, "attempts")
        body = f"""spec:
  entrypoint: flaky
  templates:
  - name: flaky
    retryStrategy: {{limit: 4, retryPolicy: OnFailure}}
    script:
      image: alpine:3.20
      command: [sh]
      source: |
        n=$(cat {counter} 2>/dev/null || echo 0)
        n=$((n + 1))
        echo $n > {counter}
        echo "attempt $n"
        [ $n -ge 3 ]
"""
        result, name = self.root.run(self.root.write("flaky.yaml", workflow(body)))
        self.assertEqual(result.returncode, 0, result.stderr)
        wf = self.root.get(name)
        root = h.nodes(wf)[name]
        self.assertEqual(root["type"], "Retry")
        self.assertEqual(root["phase"], "Succeeded")
        self.assertEqual(len(root["children"]), 3)
        self.assertEqual([h.nodes(wf)[c]["phase"] for c in root["children"]],
                         ["Failed", "Failed", "Succeeded"])
        self.assertEqual(root["outputs"]["result"], "attempt 3")

    def test_retry_policy_on_error_skips_failures(self):
        body = """spec:
  entrypoint: fail
  templates:
  - name: fail
    retryStrategy: {limit: 2, retryPolicy: OnError}
    container: {image: alpine:3.20, command: [sh, -c, "exit 1"]}
"""
        result, name = self.root.run(self.root.write("onerror.yaml", workflow(body)))
        self.assertEqual(result.returncode, 1)
        wf = self.root.get(name)
        self.assertEqual(len(h.nodes(wf)[name]["children"]), 1)

    def test_pod_gc_on_pod_success(self):
        result, name = self.root.run(os.path.join(h.ARGO_DIR, "pod-gc.yaml"))
        self.assertEqual(result.returncode, 1)
        wf = self.root.get(name)
        pods_dir = os.path.join(self.root.path, "workflows", name, "pods")
        succeeded = h.node_named(wf, f"{name}[0].succeed")
        failed = h.node_named(wf, f"{name}[0].fail")
        ok_pod = f"{name}-exit-{h.fnv32a(succeeded['name'])}"
        bad_pod = f"{name}-exit-{h.fnv32a(failed['name'])}"
        self.assertFalse(os.path.exists(os.path.join(pods_dir, ok_pod)),
                         "the succeeded pod's folder was kept")
        self.assertTrue(os.path.isdir(os.path.join(pods_dir, bad_pod)),
                        "the failed pod's folder was removed")
        logs = self.root.distml("logs", name).stdout
        self.assertIn(f"{ok_pod}: exiting 0", logs)
        self.assertIn(f"{bad_pod}: exiting 1", logs)

    def test_pod_gc_on_workflow_completion(self):
        with open(os.path.join(h.ARGO_DIR, "pod-gc.yaml"), encoding="utf-8") as f:
            text = f.read()
        text = text.replace("strategy: OnPodSuccess", "strategy: OnWorkflowCompletion")
        result, name = self.root.run(self.root.write("gc.yaml", text))
        self.assertEqual(result.returncode, 1)
        pods_dir = os.path.join(self.root.path, "workflows", name, "pods")
        self.assertEqual(os.listdir(pods_dir), [])

    def test_pods_kept_without_pod_gc(self):
        with open(os.path.join(h.ARGO_DIR, "pod-gc.yaml"), encoding="utf-8") as f:
            text = f.read()
        text = text.replace("  podGC:\n    strategy: OnPodSuccess\n", "")
        result, name = self.root.run(self.root.write("nogc.yaml", text))
        self.assertEqual(result.returncode, 1)
        pods_dir = os.path.join(self.root.path, "workflows", name, "pods")
        self.assertEqual(len(os.listdir(pods_dir)), 2)

    def test_unsupported_field_stops_run(self):
        body = """spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: echo}
  - name: echo
    container: {image: alpine, command: [echo, hi]}
  - name: pull
    container:
      image: alpine
      imagePullPolicy: Always
      command: [echo, hi]
"""
        result, _ = self.root.run(self.root.write("bad.yaml", workflow(body)))
        self.assertEqual(result.returncode, 1)
        self.assertIn("spec.templates[2].container.imagePullPolicy: unsupported field",
                      result.stderr)
        self.assertIn("bad.yaml:16:", result.stderr)
        self.assertEqual(self.root.runs(), [])
        self.assertFalse(os.path.exists(os.path.join(self.root.path, "workflows")))

    def test_active_deadline_stops_step(self):
        body = """spec:
  entrypoint: slow
  templates:
  - name: slow
    activeDeadlineSeconds: 1
    container: {image: alpine, command: [sleep, "30"]}
"""
        started = time.monotonic()
        result, name = self.root.run(self.root.write("slow.yaml", workflow(body)))
        self.assertEqual(result.returncode, 1)
        self.assertLess(time.monotonic() - started, 15)
        wf = self.root.get(name)
        self.assertEqual(h.nodes(wf)[name]["message"], "Step exceeded its deadline")
        self.assertEqual(h.nodes(wf)[name]["phase"], "Failed")

    def test_workflow_deadline_stops_run(self):
        body = """spec:
  entrypoint: main
  activeDeadlineSeconds: 1
  templates:
  - name: main
    steps:
    - - {name: nap, template: nap}
    - - {name: never, template: nap}
  - name: nap
    container: {image: alpine, command: [sleep, "30"]}
"""
        started = time.monotonic()
        result, name = self.root.run(self.root.write("deadline.yaml", workflow(body)))
        self.assertEqual(result.returncode, 1)
        self.assertLess(time.monotonic() - started, 15)
        wf = self.root.get(name)
        self.assertEqual(wf["status"]["phase"], "Failed")
        self.assertEqual(h.node_named(wf, f"{name}[0].nap")["message"],
                         "Step exceeded its deadline")
        with self.assertRaises(AssertionError):
            h.node_named(wf, f"{name}[1].never")

    def test_get_yaml_shape(self):
        result, name = self.root.run(os.path.join(h.ARGO_DIR, "coinflip.yaml"), "side=tails")
        self.assertEqual(result.returncode, 0, result.stderr)
        text = self.root.distml("get", name, "-o", "yaml").stdout
        document = yaml.safe_load(text)
        self.assertEqual(document["apiVersion"], "argoproj.io/v1alpha1")
        self.assertEqual(document["kind"], "Workflow")
        self.assertEqual(document["metadata"]["name"], name)
        self.assertEqual(document["metadata"]["labels"]["workflows.argoproj.io/phase"],
                         "Succeeded")
        self.assertIsInstance(document["status"]["startedAt"], str)
        nodes = document["status"]["nodes"]
        self.assertEqual(nodes[name]["type"], "Steps")
        heads = h.node_named(document, f"{name}[1].heads")
        tails = h.node_named(document, f"{name}[1].tails")
        self.assertEqual(heads["type"], "Skipped")
        self.assertEqual(heads["phase"], "Skipped")
        self.assertEqual(heads["message"], "when 'tails == heads' evaluated false")
        self.assertEqual(tails["phase"], "Succeeded")
        self.assertEqual(tails["hostNodeName"], "localhost")
        self.assertEqual(tails["templateScope"], f"local/{name}")
        self.assertEqual(document, self.root.get(name))

    def test_two_runs_at_once(self):
        body = """spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: a, template: nap}
      - {name: b, template: nap}
    - - {name: c, template: nap}
  - name: nap
    memoize:
      key: "nap-{{workflow.name}}"
      cache: {configMap: {name: naps}}
    container: {image: alpine, command: [sh, -c, "sleep 0.5; echo done"]}
"""
        path = self.root.write("naps.yaml", workflow(body))
        runners = [self.root.start("run", path, "--quiet") for _ in range(3)]
        outputs = [r.communicate(timeout=120) for r in runners]
        for runner, (out, err) in zip(runners, outputs):
            self.assertEqual(runner.returncode, 0, err)
        runs = self.root.runs()
        self.assertEqual(len(runs), 3)
        self.assertEqual({phase for _, phase in runs}, {"Succeeded"})
        self.assertEqual(len(self.root.cache_entries("naps")), 3)

    def test_relative_data_root(self):
        # Steps run in their own working folders, but a relative
        # --data_root still means the caller's folder.
        body = """spec:
  entrypoint: write
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: claim}
  templates:
  - name: write
    container:
      image: alpine
      command: [sh, -c, "echo written > /data/out.txt"]
      volumeMounts:
      - {name: data, mountPath: /data}
"""
        path = self.root.write("relative.yaml", workflow(body))
        result = subprocess.run([h.DISTML, "workflow", "run", path, "--data_root", "rel"],
                                capture_output=True, text=True, timeout=120, env=self.root.env,
                                cwd=self.root.path, check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(os.path.join(self.root.path, "rel", "pvc", "claim", "out.txt"),
                  encoding="utf-8") as f:
            self.assertEqual(f.read(), "written\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
