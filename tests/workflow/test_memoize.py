"""Memoization tests, with the failure cases B24, B26 and B28.

B24: memoize works on steps and dag templates. B26: entries expire after
maxAge, and invalid maxAge values are rejected before the run. B28: a
cache entry larger than a ConfigMap's 1 MiB limit is not written, and the
workflow still succeeds. Other tests cover the key rule, the key computed
when memoize.key is left out, and failures, which must not be cached.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wfharness as h  # noqa: E402

B24_STEPS = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: memo-steps-}}
spec:
  entrypoint: outer
  templates:
  - name: outer
    memoize:
      key: "outer-v1"
      maxAge: "1h"
      cache: {{configMap: {{name: memo-cache}}}}
    steps:
    - - name: a
        template: work
      - name: b
        template: work
  - name: work
    container:
      image: alpine
      command: [sh, -c, "echo x >> {count}"]
"""

B24_DAG = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: memo-dag-}}
spec:
  entrypoint: outer
  templates:
  - name: outer
    memoize:
      key: "outer-dag-v1"
      maxAge: "1h"
      cache: {{configMap: {{name: memo-cache}}}}
    dag:
      tasks:
      - {{name: a, template: work}}
      - {{name: b, template: work, dependencies: [a]}}
  - name: work
    container:
      image: alpine
      command: [sh, -c, "echo x >> {count}"]
"""

B24_CONTAINER = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: memo-container-}}
spec:
  entrypoint: work
  templates:
  - name: work
    memoize:
      key: "work-v1"
      maxAge: "1h"
      cache: {{configMap: {{name: memo-cache}}}}
    container:
      image: alpine
      command: [sh, -c, "echo x >> {count}"]
"""

B26 = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: memo-age-}}
spec:
  entrypoint: work
  templates:
  - name: work
    memoize:
      key: "m1"
      maxAge: "{max_age}"
      cache: {{configMap: {{name: c1}}}}
    container:
      image: alpine
      command: [sh, -c, "echo x >> {count}"]
"""

B28_BIG = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: memo-big-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: generate
        template: generate
    - - name: measure
        template: measure
        arguments:
          parameters:
          - name: text
            value: "{{steps.generate.outputs.parameters.text}}"
  - name: generate
    memoize:
      key: big-v1
      maxAge: 1h
      cache: {configMap: {name: big-cache}}
    outputs:
      parameters:
      - name: text
        valueFrom: {path: /tmp/big.txt}
    script:
      image: alpine
      command: [sh]
      source: head -c 1572864 /dev/zero | tr '\\0' a > /tmp/big.txt
  - name: measure
    inputs: {parameters: [{name: text}]}
    script:
      image: alpine
      command: [sh]
      source: |
        cat <<'EOF' | tr -d '\\n' | wc -c
        {{inputs.parameters.text}}
        EOF
"""

B28_TWO = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: memo-two-}}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: first
        template: fill
        arguments: {{parameters: [{{name: which, value: first}}]}}
    - - name: second
        template: fill
        arguments: {{parameters: [{{name: which, value: second}}]}}
  - name: fill
    inputs: {{parameters: [{{name: which}}]}}
    memoize:
      key: "fill-{{{{inputs.parameters.which}}}}"
      maxAge: 1h
      cache: {{configMap: {{name: shared-cache}}}}
    outputs:
      parameters:
      - name: text
        valueFrom: {{path: /tmp/fill.txt}}
    script:
      image: alpine
      command: [sh]
      source: |
        echo "{{{{inputs.parameters.which}}}}" >> {count}
        head -c 614400 /dev/zero | tr '\\0' b > /tmp/fill.txt
"""


def lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return len(f.read().splitlines())


class MemoizeTest(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.DataRoot(self.id().split(".")[-1])
        self.count = os.path.join(self.root.path, "memo-count")

    def run_twice_checks_hit(self, text, key):
        path = self.root.write("wf.yaml", text.format(count=self.count))
        first, name1 = self.root.run(path)
        self.assertEqual(first.returncode, 0, first.stderr)
        executed = lines(self.count)
        self.assertGreater(executed, 0)
        wf1 = self.root.get(name1)
        self.assertEqual(h.nodes(wf1)[name1]["memoizationStatus"],
                         {"hit": False, "key": key, "cacheName": "memo-cache"})
        entries = [e for e in self.root.cache_entries("memo-cache") if e["key"] == key]
        self.assertEqual(len(entries), 1)
        self.assertEqual(entries[0]["nodeID"], name1)

        second, name2 = self.root.run(path)
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertEqual(lines(self.count), executed, "the memoized template ran again")
        wf2 = self.root.get(name2)
        root = h.nodes(wf2)[name2]
        self.assertEqual(wf2["status"]["phase"], "Succeeded")
        self.assertEqual(root["phase"], "Succeeded")
        self.assertEqual(root["memoizationStatus"],
                         {"hit": True, "key": key, "cacheName": "memo-cache"})
        self.assertEqual(root["startedAt"], root["finishedAt"])
        self.assertNotIn("children", root)
        self.assertEqual(len(h.nodes(wf2)), 1)
        return executed

    def test_b24_steps_template_memoized(self):
        self.assertEqual(self.run_twice_checks_hit(B24_STEPS, "outer-v1"), 2)

    def test_b24_dag_template_memoized(self):
        self.assertEqual(self.run_twice_checks_hit(B24_DAG, "outer-dag-v1"), 2)

    def test_b24_container_without_outputs(self):
        self.assertEqual(self.run_twice_checks_hit(B24_CONTAINER, "work-v1"), 1)
        entry = self.root.cache_entries("memo-cache")[0]
        self.assertEqual(entry["key"], "work-v1")

    def test_b26_max_age_expiry(self):
        path = self.root.write("age.yaml", B26.format(count=self.count, max_age="4s"))
        started = time.monotonic()
        phases = []
        for wait_until in (0.0, 1.5, 6.0):
            while time.monotonic() - started < wait_until:
                time.sleep(0.1)
            result, name = self.root.run(path)
            self.assertEqual(result.returncode, 0, result.stderr)
            node = h.nodes(self.root.get(name))[name]
            phases.append((node["memoizationStatus"]["hit"], lines(self.count)))
            self.assertEqual(node["memoizationStatus"]["key"], "m1")
            self.assertEqual(node["memoizationStatus"]["cacheName"], "c1")
            if wait_until == 0.0:
                created = self.root.cache_entries("c1")[0]["created"]
        self.assertEqual(phases, [(False, 1), (True, 1), (False, 2)])
        entries = self.root.cache_entries("c1")
        self.assertEqual(len(entries), 1)
        self.assertGreater(entries[0]["created"], created, "the expired entry was not replaced")

    def test_b26_invalid_max_age_rejected(self):
        for value, unit in (("3ss", '"ss"'), ("1d", '"d"')):
            path = self.root.write("bad.yaml", B26.format(count=self.count, max_age=value))
            result, _ = self.root.run(path)
            self.assertEqual(result.returncode, 1)
            self.assertIn("spec.templates[0].memoize.maxAge", result.stderr)
            self.assertIn(f"invalid maxAge '{value}'", result.stderr)
            self.assertIn(f"unknown unit {unit}", result.stderr)
        self.assertEqual(lines(self.count), 0, "a workflow with an invalid maxAge ran")
        self.assertEqual(self.root.runs(), [])
        for value in ("90m", "1h30m"):
            path = self.root.write("good.yaml", B26.format(count=self.count, max_age=value))
            result, _ = self.root.run(path)
            self.assertEqual(result.returncode, 0, result.stderr)

    def test_b28_entry_over_limit_not_cached(self):
        path = self.root.write("big.yaml", B28_BIG)
        result, name = self.root.run(path, timeout=180)
        self.assertEqual(result.returncode, 0, result.stderr)
        wf = self.root.get(name)
        self.assertEqual(wf["status"]["phase"], "Succeeded")
        generate = h.node_named(wf, f"{name}[0].generate")
        self.assertEqual(generate["phase"], "Succeeded")
        self.assertIn("memoization entry not saved", generate["message"])
        self.assertIn("1048576-byte limit of a ConfigMap", generate["message"])
        self.assertIn("memoization entry not saved", result.stderr)
        measure = h.node_named(wf, f"{name}[1].measure")
        self.assertEqual(measure["outputs"]["result"].strip(), "1572864")
        self.assertEqual(self.root.cache_entries("big-cache"), [])
        # A rerun is a miss for the refused entry.
        again, name2 = self.root.run(path, timeout=180)
        self.assertEqual(again.returncode, 0, again.stderr)
        node = h.node_named(self.root.get(name2), f"{name2}[0].generate")
        self.assertFalse(node["memoizationStatus"]["hit"])

    def test_b28_two_entries_share_limit(self):
        path = self.root.write("two.yaml", B28_TWO.format(count=self.count))
        result, name = self.root.run(path, timeout=180)
        self.assertEqual(result.returncode, 0, result.stderr)
        wf = self.root.get(name)
        first = h.node_named(wf, f"{name}[0].first")
        second = h.node_named(wf, f"{name}[1].second")
        self.assertNotIn("message", first)
        self.assertIn("memoization entry not saved", second["message"])
        self.assertEqual(second["phase"], "Succeeded")
        entries = self.root.cache_entries("shared-cache")
        self.assertEqual([e["key"] for e in entries], ["fill-first"])
        self.assertGreater(entries[0]["bytes"], 614400)
        self.assertLessEqual(entries[0]["bytes"], 1048576)
        again, name2 = self.root.run(path, timeout=180)
        self.assertEqual(again.returncode, 0, again.stderr)
        wf2 = self.root.get(name2)
        self.assertTrue(h.node_named(wf2, f"{name2}[0].first")["memoizationStatus"]["hit"])
        self.assertFalse(h.node_named(wf2, f"{name2}[1].second")["memoizationStatus"]["hit"])
        with open(self.count, encoding="utf-8") as f:
            self.assertEqual(f.read().split(), ["first", "second", "second"])
        outputs = h.node_named(wf2, f"{name2}[0].first")["outputs"]["parameters"][0]
        self.assertEqual(len(outputs["value"]), 614400)

    def test_failed_node_not_cached(self):
        text = B24_CONTAINER.replace('"echo x >> {count}"', '"echo x >> {count}; exit 1"')
        path = self.root.write("fail.yaml", text.format(count=self.count))
        for _ in range(2):
            result, name = self.root.run(path)
            self.assertEqual(result.returncode, 1)
        self.assertEqual(lines(self.count), 2)
        self.assertEqual(self.root.cache_entries("memo-cache"), [])

    def test_invalid_key_after_substitution(self):
        text = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: memo-key-}
spec:
  entrypoint: work
  arguments: {parameters: [{name: tag, value: "v1.2"}]}
  templates:
  - name: work
    inputs: {parameters: [{name: tag}]}
    memoize:
      key: "work-{{inputs.parameters.tag}}"
      maxAge: 1h
      cache: {configMap: {name: memo-cache}}
    container: {image: alpine, command: [echo, hi]}
"""
        result, name = self.root.run(self.root.write("key.yaml", text))
        self.assertEqual(result.returncode, 1)
        node = h.nodes(self.root.get(name))[name]
        self.assertEqual(node["phase"], "Error")
        self.assertEqual(node["message"], "invalid cache key: work-v1.2")

    def test_default_key_follows_inputs(self):
        text = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{generateName: memo-auto-}}
spec:
  entrypoint: work
  arguments: {{parameters: [{{name: word, value: one}}]}}
  templates:
  - name: work
    inputs: {{parameters: [{{name: word}}]}}
    memoize:
      cache: {{configMap: {{name: auto}}}}
    container:
      image: alpine
      command: [sh, -c, "echo {{{{inputs.parameters.word}}}} >> {count}"]
"""
        path = self.root.write("auto.yaml", text.format(count=self.count))
        keys = []
        for word in ("one", "one", "two"):
            result, name = self.root.run(path, f"word={word}")
            self.assertEqual(result.returncode, 0, result.stderr)
            status = h.nodes(self.root.get(name))[name]["memoizationStatus"]
            keys.append((status["key"], status["hit"]))
        self.assertEqual(keys[0][0], keys[1][0])
        self.assertNotEqual(keys[0][0], keys[2][0])
        self.assertEqual([hit for _, hit in keys], [False, True, False])
        self.assertTrue(keys[0][0].startswith("work-"))
        with open(self.count, encoding="utf-8") as f:
            self.assertEqual(f.read().split(), ["one", "two"])

    def test_cache_delete(self):
        path = self.root.write("wf.yaml", B24_CONTAINER.format(count=self.count))
        self.root.run(path)
        self.assertEqual(len(self.root.cache_entries()), 1)
        result = self.root.distml("cache", "delete", "memo-cache", "work-v1")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.root.cache_entries(), [])
        result = self.root.distml("cache", "delete", "memo-cache")
        self.assertEqual(result.returncode, 1)
        self.root.run(path)
        self.assertEqual(lines(self.count), 2)

    def tearDown(self):
        outcome = self._outcome
        errors = getattr(outcome, "errors", None) or []
        failed = any(e for _, e in errors) if errors else not getattr(outcome, "success", True)
        if not failed:
            self.root.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
