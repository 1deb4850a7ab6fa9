"""Validate deploy/k8s/inference-service.yaml, the KServe InferenceService.

The manifest is validated with jsonschema against the openAPIV3Schema of
serving.kserve.io/v1beta1 in KServe's published CRD (v0.19.0,
serving.kserve.io_inferenceservices-v0.19.0.yaml), read from the schemas
folder in the shared directory beside the repository, as test_manifests.py
finds the MPIJob CRD. The same strictness rule applies: a field that the
structural schema does not declare fails, because the API server would
drop it or, with strict field validation, reject the manifest. When the
schemas folder is absent, the schema tests print "skipped: ..." and the
content checks still run.

The content checks hold the predictor to what `distml serve` and the other
manifests need. It runs `distml serve` from the image of the MPIJobs, with
the service's name as the model name and with --model_base_path on the
mounted data-root claim. It has one HTTP port for Knative, and Knative
scales it on concurrency with a target of 1. Each check also runs on a
broken copy, which it must reject.
"""

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_manifests import (K8S_DIR, SCHEMA_DIR, claim_mount_paths,  # noqa: E402
                            find_unknown_fields, load_single_document, schema_errors)

MANIFEST = os.path.join(K8S_DIR, "inference-service.yaml")
CRD = os.path.join(SCHEMA_DIR, "serving.kserve.io_inferenceservices-v0.19.0.yaml")

# `distml serve` options that take no value.
SERVE_SWITCHES = {"--enable_batching"}

# Addresses that only the pod itself can reach.
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def load_inference_service_schema():
    """Return the openAPIV3Schema of version v1beta1 in the KServe CRD."""
    crd = load_single_document(CRD)
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1beta1":
            return version["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{CRD} has no version v1beta1")


def parse_serve(container):
    """Return the `distml serve` options of a container as a dict.

    Raises AssertionError when the container does not run `distml serve`.
    """
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if not argv or os.path.basename(argv[0]) != "distml":
        raise AssertionError(f"the container does not run distml: {argv}")
    if argv[1:2] != ["serve"]:
        raise AssertionError(f"the container runs distml {argv[1:2]}, expected serve")
    options = {}
    rest = argv[2:]
    index = 0
    while index < len(rest):
        arg = rest[index]
        if not arg.startswith("--"):
            raise AssertionError(f"unexpected argument {arg!r} of distml serve")
        if "=" in arg:
            name, value = arg.split("=", 1)
            options[name] = value
        elif arg in SERVE_SWITCHES:
            options[arg] = True
        elif index + 1 < len(rest):
            options[arg] = str(rest[index + 1])
            index += 1
        else:
            raise AssertionError(f"option {arg} of distml serve has no value")
        index += 1
    return options


def check_inference_service(service, claim_name, image):
    """Return the problems of the InferenceService as a list of messages."""
    problems = []
    name = service.get("metadata", {}).get("name")
    predictor = service.get("spec", {}).get("predictor", {})
    if predictor.get("scaleMetric") != "concurrency":
        problems.append(f"scaleMetric is {predictor.get('scaleMetric')!r}, expected 'concurrency'")
    if predictor.get("scaleTarget") != 1:
        problems.append(f"scaleTarget is {predictor.get('scaleTarget')!r}, expected 1")
    low, high = predictor.get("minReplicas", 1), predictor.get("maxReplicas", 0)
    if low < 1:
        problems.append(f"minReplicas is {low}, expected at least 1: distml does not "
                        "scale to zero")
    if high != 0 and high < low:
        problems.append(f"maxReplicas {high} is below minReplicas {low}")

    containers = predictor.get("containers", [])
    if len(containers) != 1:
        return problems + [f"the predictor has {len(containers)} containers, expected 1"]
    container = containers[0]
    if container.get("image") != image:
        problems.append(f"image is {container.get('image')!r}, expected {image!r} as the "
                        "MPIJobs use")
    options = parse_serve(container)
    if options.get("--model_name") != name:
        problems.append(f"--model_name is {options.get('--model_name')!r}, expected the "
                        f"service name {name!r}")
    if options.get("--bind_address", "127.0.0.1") in LOOPBACK:
        problems.append("distml serve listens on loopback only, which the kubelet's probes "
                        "cannot reach")
    if "--rest_api_num_threads" not in options:
        problems.append("--rest_api_num_threads is unset, so serve starts 4 threads per core "
                        "of the node")

    ports = container.get("ports", [])
    port = str(ports[0].get("containerPort")) if len(ports) == 1 else None
    if len(ports) != 1:
        problems.append(f"the container has {len(ports)} ports, expected 1 for Knative")
    elif ports[0].get("name") not in (None, "http1"):
        problems.append(f"port name is {ports[0].get('name')!r}, expected http1")
    if options.get("--rest_api_port") != port:
        problems.append(f"--rest_api_port is {options.get('--rest_api_port')!r}, but the "
                        f"container port is {port}")
    probe = container.get("readinessProbe", {}).get("httpGet", {})
    if probe.get("path") != f"/v1/models/{name}":
        problems.append(f"the readiness probe gets {probe.get('path')!r}, expected "
                        f"/v1/models/{name}")
    if str(probe.get("port")) != port:
        problems.append(f"the readiness probe uses port {probe.get('port')!r}, expected {port}")

    mounts = claim_mount_paths(predictor, claim_name)
    base = options.get("--model_base_path", "")
    if len(mounts) != 1:
        problems.append(f"claim {claim_name!r} is mounted at {mounts}, expected one path")
    elif not base.startswith(mounts[0].rstrip("/") + "/"):
        problems.append(f"--model_base_path {base!r} is not on the claim mounted at "
                        f"{mounts[0]!r}")
    return problems


class InferenceServiceSchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(SCHEMA_DIR):
            raise unittest.SkipTest(f"schema folder {SCHEMA_DIR} is absent")
        cls.schema = load_inference_service_schema()
        cls.service = load_single_document(MANIFEST)

    def test_matches_schema(self):
        self.assertEqual(schema_errors(self.service, self.schema), [])

    def test_has_no_unknown_fields(self):
        self.assertEqual(find_unknown_fields(self.service, self.schema), [])

    def test_kind_and_api_version(self):
        self.assertEqual(self.service["apiVersion"], "serving.kserve.io/v1beta1")
        self.assertEqual(self.service["kind"], "InferenceService")

    def test_unknown_scale_metric_rejected(self):
        # qps is a common slip for rps; the enum has cpu, memory,
        # concurrency and rps only.
        broken = copy.deepcopy(self.service)
        broken["spec"]["predictor"]["scaleMetric"] = "qps"
        errors = schema_errors(broken, self.schema)
        self.assertEqual(len(errors), 1, errors)
        self.assertTrue(errors[0].startswith("spec.predictor.scaleMetric:"), errors)

    def test_string_scale_target_rejected(self):
        broken = copy.deepcopy(self.service)
        broken["spec"]["predictor"]["scaleTarget"] = "1"
        errors = schema_errors(broken, self.schema)
        self.assertEqual(len(errors), 1, errors)
        self.assertTrue(errors[0].startswith("spec.predictor.scaleTarget:"), errors)

    def test_missing_container_name_rejected(self):
        broken = copy.deepcopy(self.service)
        del broken["spec"]["predictor"]["containers"][0]["name"]
        errors = schema_errors(broken, self.schema)
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("'name' is a required property", errors[0])

    def test_misspelt_predictor_field_rejected(self):
        broken = copy.deepcopy(self.service)
        predictor = broken["spec"]["predictor"]
        predictor["scaleTargets"] = predictor.pop("scaleTarget")
        self.assertEqual(find_unknown_fields(broken, self.schema),
                         ["spec.predictor.scaleTargets"])

    def test_misspelt_container_field_rejected(self):
        broken = copy.deepcopy(self.service)
        container = broken["spec"]["predictor"]["containers"][0]
        container["volumeMount"] = container.pop("volumeMounts")
        self.assertEqual(find_unknown_fields(broken, self.schema),
                         ["spec.predictor.containers[0].volumeMount"])


class InferenceServiceContentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.service = load_single_document(MANIFEST)
        cls.claim_name = load_single_document(os.path.join(K8S_DIR, "pvc.yaml"))["metadata"]["name"]
        job = load_single_document(os.path.join(K8S_DIR, "mpijob-cnn.yaml"))
        launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
        cls.image = launcher["containers"][0]["image"]

    def problems(self, service):
        return check_inference_service(service, self.claim_name, self.image)

    def broken(self):
        return copy.deepcopy(self.service)

    def container(self, service):
        return service["spec"]["predictor"]["containers"][0]

    def set_option(self, service, option, value):
        args = self.container(service)["args"]
        args[args.index(option) + 1] = value

    def test_passes_checks(self):
        self.assertEqual(self.problems(self.service), [])

    def test_reference_autoscaling(self):
        predictor = self.service["spec"]["predictor"]
        self.assertEqual(predictor["scaleTarget"], 1)
        self.assertEqual(predictor["scaleMetric"], "concurrency")
        self.assertEqual(predictor["minReplicas"], 1)

    def test_runs_serve_from_the_image(self):
        self.assertEqual(self.image, "distml:0.1.0")
        self.assertEqual(self.container(self.service)["image"], self.image)
        self.assertEqual(self.container(self.service)["command"], ["/usr/local/bin/distml"])
        self.assertEqual(self.container(self.service)["args"][0], "serve")

    def test_mounts_the_data_claim(self):
        self.assertEqual(self.claim_name, "distml-data")
        predictor = self.service["spec"]["predictor"]
        self.assertEqual(claim_mount_paths(predictor, self.claim_name), ["/data"])

    def test_rps_metric_rejected(self):
        service = self.broken()
        service["spec"]["predictor"]["scaleMetric"] = "rps"
        self.assertEqual(self.problems(service),
                         ["scaleMetric is 'rps', expected 'concurrency'"])

    def test_other_target_rejected(self):
        service = self.broken()
        service["spec"]["predictor"]["scaleTarget"] = 10
        self.assertEqual(self.problems(service), ["scaleTarget is 10, expected 1"])

    def test_scale_to_zero_rejected(self):
        service = self.broken()
        service["spec"]["predictor"]["minReplicas"] = 0
        problems = self.problems(service)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith("minReplicas is 0"), problems)

    def test_other_image_rejected(self):
        service = self.broken()
        self.container(service)["image"] = "tensorflow/serving:2.13.0"
        problems = self.problems(service)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("expected 'distml:0.1.0'", problems[0])

    def test_other_program_rejected(self):
        service = self.broken()
        self.container(service)["args"][0] = "router"
        with self.assertRaises(AssertionError):
            self.problems(service)

    def test_other_model_name_rejected(self):
        service = self.broken()
        self.set_option(service, "--model_name", "default")
        problems = self.problems(service)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith("--model_name is 'default'"), problems)

    def test_loopback_address_rejected(self):
        service = self.broken()
        self.set_option(service, "--bind_address", "127.0.0.1")
        problems = self.problems(service)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("loopback", problems[0])

    def test_port_mismatch_rejected(self):
        service = self.broken()
        self.set_option(service, "--rest_api_port", "8501")
        self.assertEqual(self.problems(service),
                         ["--rest_api_port is '8501', but the container port is 8080"])

    def test_missing_claim_rejected(self):
        service = self.broken()
        service["spec"]["predictor"]["volumes"] = []
        problems = self.problems(service)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith("claim 'distml-data' is mounted at []"), problems)

    def test_model_path_off_the_claim_rejected(self):
        service = self.broken()
        self.set_option(service, "--model_base_path", "/models")
        self.assertEqual(self.problems(service),
                         ["--model_base_path '/models' is not on the claim mounted at '/data'"])

    def test_probe_of_other_model_rejected(self):
        service = self.broken()
        self.container(service)["readinessProbe"]["httpGet"]["path"] = "/v1/models/default"
        problems = self.problems(service)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("readiness probe gets '/v1/models/default'", problems[0])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    for test, reason in result.skipped:
        print(f"skipped: {test.id()}: {reason}")
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{max(passed, 0)} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
