"""Kill the runner in the middle of a run: the next command marks the run
and its unfinished nodes Error, stops what is left of the step's processes,
keeps the memoization cache consistent, and a rerun works.
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wfharness as h  # noqa: E402

WORKFLOW = """apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: killed-
spec:
  entrypoint: main
  arguments:
    parameters:
    - {{name: seconds, value: "60"}}
  templates:
  - name: main
    steps:
    - - name: prepare
        template: prepare
    - - name: wait
        template: wait
        arguments:
          parameters: [{{name: seconds, value: "{{{{workflow.parameters.seconds}}}}"}}]
  - name: prepare
    memoize:
      key: prepare-v1
      maxAge: 1h
      cache: {{configMap: {{name: recovery}}}}
    container:
      image: alpine:3.20
      command: [sh, -c, "echo ran >> {counter}"]
  - name: wait
    inputs: {{parameters: [{{name: seconds}}]}}
    container:
      image: alpine:3.20
      command: [sh, -c]
      args: ["sleep {{{{inputs.parameters.seconds}}}} & echo $! > {pidfile}; wait"]
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


class RecoveryTest(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.DataRoot("recovery")

    def test_runner_killed_mid_run(self):
        counter = os.path.join(self.root.path, "counter")
        pidfile = os.path.join(self.root.path, "sleep.pid")
        path = self.root.write("killed.yaml", WORKFLOW.format(counter=counter, pidfile=pidfile))
        runner = self.root.start("run", path)
        deadline = time.monotonic() + 30
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertTrue(os.path.exists(pidfile), "the long step did not start")
        time.sleep(0.3)
        with open(pidfile, encoding="utf-8") as f:
            sleep_pid = int(f.read())
        self.assertTrue(alive(sleep_pid))
        os.kill(runner.pid, signal.SIGKILL)
        runner.communicate(timeout=10)

        # Any command notices the dead runner and repairs the records.
        runs = self.root.runs()
        self.assertEqual(len(runs), 1)
        name, phase = runs[0]
        self.assertEqual(phase, "Error")
        deadline = time.monotonic() + 10
        while alive(sleep_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(alive(sleep_pid), "the step's process outlived the runner")

        wf = self.root.get(name)
        self.assertEqual(wf["status"]["phase"], "Error")
        self.assertIn("stopped before the workflow finished", wf["status"]["message"])
        wait = h.node_named(wf, f"{name}[1].wait")
        self.assertEqual(wait["phase"], "Error")
        self.assertEqual(wait["message"], "the runner stopped before this node finished")
        self.assertIsNotNone(wait["finishedAt"])
        for node in h.nodes(wf).values():
            self.assertIn(node["phase"], ("Succeeded", "Error", "Failed"), node["name"])
        prepare = h.node_named(wf, f"{name}[0].prepare")
        self.assertEqual(prepare["phase"], "Succeeded")
        entries = self.root.cache_entries("recovery")
        self.assertEqual([e["key"] for e in entries], ["prepare-v1"])
        self.assertEqual(entries[0]["nodeID"], prepare["id"])

        # A rerun works, and the step that finished before is a memo hit.
        result, second = self.root.run(path, "seconds=0")
        self.assertEqual(result.returncode, 0, result.stderr)
        wf2 = self.root.get(second)
        self.assertEqual(wf2["status"]["phase"], "Succeeded")
        hit = h.node_named(wf2, f"{second}[0].prepare")["memoizationStatus"]
        self.assertEqual(hit, {"hit": True, "key": "prepare-v1", "cacheName": "recovery"})
        with open(counter, encoding="utf-8") as f:
            self.assertEqual(f.read(), "ran\n")
        self.assertEqual(sorted(self.root.runs()), sorted([[name, "Error"],
                                                            [second, "Succeeded"]]))
        self.root.cleanup()

    def test_interrupted_runner_stops_steps(self):
        counter = os.path.join(self.root.path, "counter")
        pidfile = os.path.join(self.root.path, "sleep.pid")
        path = self.root.write("stopped.yaml", WORKFLOW.format(counter=counter, pidfile=pidfile))
        runner = self.root.start("run", path)
        deadline = time.monotonic() + 30
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        with open(pidfile, encoding="utf-8") as f:
            sleep_pid = int(f.read())
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=30)
        self.assertEqual(runner.returncode, 1, err)
        self.assertFalse(alive(sleep_pid))
        name, phase = self.root.runs()[0]
        self.assertEqual(phase, "Failed")
        wf = self.root.get(name)
        self.assertIn("signal", wf["status"]["message"])
        self.assertEqual(h.node_named(wf, f"{name}[1].wait")["phase"], "Failed")
        self.root.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
