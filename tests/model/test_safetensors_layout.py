"""Check distml's safetensors output with an independent reader (json + struct).

Runs the compiled model_test_safetensors, which writes sample.safetensors and
prints "sample: <path>", then parses that file following the format's
definition: an 8-byte little-endian header length N, N bytes of JSON padded
with spaces to a multiple of 8, then little-endian tensor data.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest


def find_helper(name):
    build_dir = os.environ.get("DISTML_BUILD_DIR")
    if not build_dir:
        raise AssertionError("DISTML_BUILD_DIR is not set; run this test through ctest")
    path = os.path.join(build_dir, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing; build the project first")
    return path


class SafetensorsLayoutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        helper = find_helper("model_test_safetensors")
        cls.tmp = tempfile.TemporaryDirectory()
        env = dict(os.environ, DISTML_TEST_TMP=cls.tmp.name)
        run = subprocess.run([helper], env=env, capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise AssertionError(f"{helper} failed:\n{run.stdout}\n{run.stderr}")
        paths = [line[len("sample: "):] for line in run.stdout.splitlines()
                 if line.startswith("sample: ")]
        if len(paths) != 1:
            raise AssertionError(f"{helper} printed no sample path:\n{run.stdout}")
        with open(paths[0], "rb") as f:
            cls.raw = f.read()
        (cls.header_len,) = struct.unpack_from("<Q", cls.raw, 0)
        cls.header_bytes = cls.raw[8:8 + cls.header_len]
        cls.header = json.loads(cls.header_bytes)
        cls.data = cls.raw[8 + cls.header_len:]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_header_padding(self):
        self.assertEqual(self.header_len % 8, 0)
        self.assertTrue(self.header_bytes.startswith(b"{"))
        stripped = self.header_bytes.rstrip(b" ")
        self.assertTrue(stripped.endswith(b"}"))
        self.assertLess(len(self.header_bytes) - len(stripped), 8)

    def test_header_entries(self):
        self.assertEqual(set(self.header), {"__metadata__", "weight", "ids", "empty"})
        self.assertEqual(self.header["weight"],
                         {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]})
        self.assertEqual(self.header["ids"],
                         {"dtype": "I64", "shape": [4], "data_offsets": [24, 56]})
        self.assertEqual(self.header["empty"],
                         {"dtype": "F32", "shape": [0], "data_offsets": [56, 56]})

    def test_metadata(self):
        self.assertEqual(self.header["__metadata__"],
                         {"format": "pt", "note": 'quote " backslash \\'})

    def test_data_size(self):
        self.assertEqual(len(self.data), 56)

    def test_float_values(self):
        begin, end = self.header["weight"]["data_offsets"]
        values = struct.unpack("<6f", self.data[begin:end])
        self.assertEqual(values, tuple(i * 0.5 - 1.0 for i in range(6)))

    def test_int64_values(self):
        begin, end = self.header["ids"]["data_offsets"]
        values = struct.unpack("<4q", self.data[begin:end])
        self.assertEqual(values, (-1, 0, 1 << 40, 2**63 - 1))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{max(result.testsRun - failed, 0)} passed, {failed} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
