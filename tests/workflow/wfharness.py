"""Helpers for the workflow tests: run `distml workflow` on a fresh data
root, read a run back as JSON, and compute Argo's node IDs.

Environment: DISTML (the binary) and DISTML_TEST_TMP (scratch space).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

DISTML = os.environ.get("DISTML")
SOURCE_DIR = os.environ.get("DISTML_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGO_DIR = os.path.join(SOURCE_DIR, "tests", "workflow", "argo")


def require_binary(test):
    if not DISTML:
        test.fail("DISTML is not set; run this test through ctest")


def fnv32a(text):
    value = 2166136261
    for byte in text.encode():
        value ^= byte
        value = (value * 16777619) & 0xFFFFFFFF
    return value


def node_id(workflow, node_name):
    return workflow if workflow == node_name else f"{workflow}-{fnv32a(node_name)}"


class DataRoot:
    """A fresh data root, removed when the test passes."""

    def __init__(self, name):
        base = os.environ.get("DISTML_TEST_TMP") or tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=f"{name}.", dir=base)
        self.env = {k: v for k, v in os.environ.items() if k != "DISTML_DATA_ROOT"}

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.path, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def distml(self, *args, timeout=120):
        """Run `distml workflow ARGS --data_root ROOT`; returns CompletedProcess."""
        return subprocess.run([DISTML, "workflow", *args, "--data_root", self.path],
                              capture_output=True, text=True, timeout=timeout, env=self.env,
                              check=False)

    def start(self, *args):
        """Start `distml workflow ARGS` without waiting; returns the Popen."""
        return subprocess.Popen([DISTML, "workflow", *args, "--data_root", self.path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env)

    def run(self, path, *params, timeout=120):
        """Run a workflow file; returns (CompletedProcess, run name)."""
        args = ["run", path]
        for param in params:
            args += ["-p", param]
        result = self.distml(*args, timeout=timeout)
        match = re.search(r"^Name:\s+(\S+)", result.stdout, re.M)
        return result, match.group(1) if match else None

    def get(self, name):
        result = self.distml("get", name, "-o", "json")
        if result.returncode != 0:
            raise AssertionError(f"get {name} failed: {result.stderr}")
        return json.loads(result.stdout)

    def runs(self):
        result = self.distml("list")
        lines = result.stdout.strip().splitlines()[1:]
        return [line.split()[:2] for line in lines]

    def cache_entries(self, cache=None):
        args = ["cache", "list"] + ([cache] if cache else [])
        result = self.distml(*args)
        rows = []
        for line in result.stdout.strip().splitlines()[1:]:
            fields = line.split()
            rows.append({"cache": fields[0], "key": fields[1], "nodeID": fields[2],
                         "created": fields[3], "lastHit": fields[4], "bytes": int(fields[5])})
        return rows


def nodes(workflow):
    return workflow["status"]["nodes"]


def node_named(workflow, name):
    """The node whose name is NAME."""
    for node in nodes(workflow).values():
        if node["name"] == name:
            return node
    raise AssertionError(f"no node named {name}; nodes: "
                         f"{sorted(n['name'] for n in nodes(workflow).values())}")


def pods(workflow):
    return [n for n in nodes(workflow).values() if n["type"] == "Pod"]
