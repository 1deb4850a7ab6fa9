"""Decode distml's TensorBoard event file with an independent reader.

Runs the compiled train_test_tensorboard, which writes a known event file and
prints "event file: <path>". This test reads the TFRecord framing itself and
checks both masked CRC-32Cs with its own pure-Python CRC-32C. Neither
tensorflow nor tensorboard is installed, so each payload is decoded with
Event and Summary classes built from descriptors, with the field numbers of
tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto.
"""

import os
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FIELD = descriptor_pb2.FieldDescriptorProto


def crc32c(data):
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def add_field(message, name, number, field_type, label=FIELD.LABEL_OPTIONAL, type_name=None,
              oneof_index=None):
    field = message.field.add(name=name, number=number, type=field_type, label=label)
    if type_name is not None:
        field.type_name = type_name
    if oneof_index is not None:
        field.oneof_index = oneof_index


def build_event_classes():
    """Build Event and Summary with the field numbers of tensorflow.Event."""
    proto = descriptor_pb2.FileDescriptorProto(name="distml_test_event.proto",
                                               package="distml_test", syntax="proto3")

    summary = proto.message_type.add(name="Summary")
    value = summary.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    add_field(value, "tag", 1, FIELD.TYPE_STRING)
    add_field(value, "simple_value", 2, FIELD.TYPE_FLOAT, oneof_index=0)
    add_field(summary, "value", 1, FIELD.TYPE_MESSAGE, label=FIELD.LABEL_REPEATED,
              type_name=".distml_test.Summary.Value")

    event = proto.message_type.add(name="Event")
    event.oneof_decl.add(name="what")
    add_field(event, "wall_time", 1, FIELD.TYPE_DOUBLE)
    add_field(event, "step", 2, FIELD.TYPE_INT64)
    add_field(event, "file_version", 3, FIELD.TYPE_STRING, oneof_index=0)
    add_field(event, "summary", 5, FIELD.TYPE_MESSAGE, type_name=".distml_test.Summary",
              oneof_index=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("distml_test.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def read_records(data):
    """Split TFRecord framing, raising AssertionError on a bad length or CRC."""
    records = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise AssertionError(f"truncated record header at byte {pos}")
        length_bytes = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if length_crc != masked_crc32c(length_bytes):
            raise AssertionError(f"length CRC mismatch at byte {pos}")
        payload = data[pos + 12:pos + 12 + length]
        if len(payload) != length or len(data) < pos + 16 + length:
            raise AssertionError(f"truncated record at byte {pos}")
        (payload_crc,) = struct.unpack_from("<I", data, pos + 12 + length)
        if payload_crc != masked_crc32c(payload):
            raise AssertionError(f"payload CRC mismatch at byte {pos}")
        records.append(payload)
        pos += 16 + length
    return records


def find_helper(name):
    build_dir = os.environ.get("DISTML_BUILD_DIR")
    if not build_dir:
        raise AssertionError("DISTML_BUILD_DIR is not set; run this test through ctest")
    path = os.path.join(build_dir, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing; build the project first")
    return path


class TensorboardEventsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        helper = find_helper("train_test_tensorboard")
        cls.tmp = tempfile.TemporaryDirectory()
        env = dict(os.environ, DISTML_TEST_TMP=cls.tmp.name)
        cls.started = time.time()
        run = subprocess.run([helper], env=env, capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise AssertionError(f"{helper} failed:\n{run.stdout}\n{run.stderr}")
        paths = [line[len("event file: "):] for line in run.stdout.splitlines()
                 if line.startswith("event file: ")]
        if len(paths) != 1:
            raise AssertionError(f"{helper} printed no event file path:\n{run.stdout}")
        cls.path = paths[0]
        with open(cls.path, "rb") as f:
            cls.payloads = read_records(f.read())
        event_class = build_event_classes()
        cls.events = []
        for payload in cls.payloads:
            event = event_class()
            event.ParseFromString(payload)
            cls.events.append(event)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_crc32c_known_value(self):
        # The published CRC-32C check value of "123456789".
        self.assertEqual(crc32c(b"123456789"), 0xE3069283)

    def test_file_name(self):
        name = os.path.basename(self.path)
        parts = name.split(".")
        self.assertEqual(parts[:3], ["events", "out", "tfevents"])
        self.assertRegex(parts[3], r"^\d{10}$")
        self.assertEqual(parts[-1], "v2")
        self.assertEqual(parts[-2], str(int(parts[-2])))

    def test_record_count(self):
        self.assertEqual(len(self.events), 8)

    def test_first_event(self):
        first = self.events[0]
        self.assertEqual(first.WhichOneof("what"), "file_version")
        self.assertEqual(first.file_version, "brain.Event:2")

    def test_wall_times(self):
        for event in self.events:
            self.assertGreater(event.wall_time, self.started - 5)
            self.assertLess(event.wall_time, time.time() + 5)

    def test_scalars(self):
        expected = [
            ("epoch_loss", 0, 0.5), ("epoch_learning_rate", 0, 0.001),
            ("epoch_loss", 1, 0.25), ("epoch_learning_rate", 1, 0.0005),
            ("epoch_loss", 2, 0.125), ("epoch_learning_rate", 2, 0.00025),
            ("epoch_loss", -3, -1.5),
        ]
        self.assertEqual(len(self.events) - 1, len(expected))
        for event, (tag, step, value) in zip(self.events[1:], expected):
            with self.subTest(tag=tag, step=step):
                self.assertEqual(event.WhichOneof("what"), "summary")
                self.assertEqual(event.step, step)
                self.assertEqual(len(event.summary.value), 1)
                summary_value = event.summary.value[0]
                self.assertEqual(summary_value.tag, tag)
                self.assertEqual(summary_value.WhichOneof("value"), "simple_value")
                # simple_value is a float32, so compare with the value rounded to one.
                (expected_value,) = struct.unpack("<f", struct.pack("<f", value))
                self.assertEqual(summary_value.simple_value, expected_value)

    def test_canonical_encoding(self):
        # The protobuf library serializes the decoded events to the same bytes.
        for payload, event in zip(self.payloads, self.events):
            self.assertEqual(event.SerializeToString(), payload)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{max(result.testsRun - failed, 0)} passed, {failed} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
