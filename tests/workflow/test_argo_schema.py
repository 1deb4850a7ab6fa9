"""Validate the workflow files against Argo's published JSON Schema.

Every file in workflows/ and tests/workflow/argo/ must be a Workflow that
Argo Workflows v3.6.9 accepts: it must pass the schema
(argo-workflows-v3.6.9.schema.json, read from the schemas folder in the
shared directory beside the repository), and every field it uses must be
declared by the schema, because the schema alone accepts unknown fields
and Argo's own validation would then drop or reject them. Each file must
also pass `distml workflow lint`, so it runs here unchanged.

Resource templates carry a manifest as text. Manifests of MPIJobs are
also checked against the MPI Operator's CRD (mpi-operator v0.8.2,
kubeflow.org_mpijobs.yaml) and those of InferenceServices against
KServe's CRD (v0.19.0), when those files are present.

The checks run on deliberately broken copies too, which they must reject.
When the schemas folder is absent the schema checks print "skipped: ...".
"""

import copy
import glob
import os
import subprocess
import sys
import unittest

try:
    import jsonschema
    import yaml
except ImportError as error:
    print(f"error: {error}. Install python3-yaml and python3-jsonschema "
          "(scripts/bootstrap does) and run this test with /usr/bin/python3.")
    sys.exit(1)

import json

SOURCE_DIR = os.environ.get("DISTML_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(SOURCE_DIR)), "shared", "schemas")
ARGO_SCHEMA = os.path.join(SCHEMA_DIR, "argo-workflows-v3.6.9.schema.json")
MPIJOB_CRD = os.path.join(SCHEMA_DIR, "kubeflow.org_mpijobs.yaml")
KSERVE_CRD = os.path.join(SCHEMA_DIR, "serving.kserve.io_inferenceservices-v0.19.0.yaml")
WORKFLOW_REF = "#/definitions/io.argoproj.workflow.v1alpha1.Workflow"
DISTML = os.environ.get("DISTML")


def workflow_files():
    files = sorted(glob.glob(os.path.join(SOURCE_DIR, "workflows", "*.yaml")))
    files += sorted(glob.glob(os.path.join(SOURCE_DIR, "tests", "workflow", "argo", "*.yaml")))
    return files


def load(path):
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(documents) != 1:
        raise AssertionError(f"{path}: expected one YAML document, found {len(documents)}")
    return documents[0]


def resolve(schema, root):
    """Follow $ref pointers of the form #/definitions/NAME."""
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = root["definitions"][name]
    return schema


def find_unknown_fields(value, schema, root, path=""):
    """Return the paths of fields that the schema does not declare.

    A field is declared when it is in the schema's properties or the
    schema has an additionalProperties schema. Nothing is checked under
    a schema without properties (such as a free-form object) or under
    x-kubernetes-preserve-unknown-fields.
    """
    schema = resolve(schema, root)
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    unknown = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        if properties is None and not isinstance(additional, dict):
            return []
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                unknown += find_unknown_fields(item, properties[key], root, item_path)
            elif isinstance(additional, dict):
                unknown += find_unknown_fields(item, additional, root, item_path)
            elif additional is not True:
                unknown.append(item_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            unknown += find_unknown_fields(item, schema["items"], root, f"{path}[{index}]")
    return unknown


def argo_problems(document, root):
    """Return schema violations and undeclared fields of a Workflow."""
    schema = {"$ref": WORKFLOW_REF, "definitions": root["definitions"]}
    validator = jsonschema.Draft202012Validator(schema)
    problems = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in validator.iter_errors(document)]
    problems += [f"{p}: not declared by the schema"
                 for p in find_unknown_fields(document, {"$ref": WORKFLOW_REF}, root)]
    return problems


def crd_schema(path, version):
    crd = load(path)
    for item in crd["spec"]["versions"]:
        if item["name"] == version:
            return item["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{path} has no version {version}")


def manifest_problems(manifest, schema):
    validator = jsonschema.Draft4Validator(schema)
    problems = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in validator.iter_errors(manifest)]
    unknown = find_unknown_fields({k: v for k, v in manifest.items() if k != "metadata"},
                                  schema, {"definitions": {}})
    problems += [f"{p}: not declared by the CRD" for p in unknown]
    return problems


def resource_manifests(document):
    for template in document.get("spec", {}).get("templates", []):
        resource = template.get("resource")
        if resource and "manifest" in resource:
            yield template["name"], yaml.safe_load(resource["manifest"])


class ArgoSchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = None
        if os.path.exists(ARGO_SCHEMA):
            with open(ARGO_SCHEMA, encoding="utf-8") as f:
                cls.root = json.load(f)

    def setUp(self):
        if self.root is None:
            print(f"skipped: {ARGO_SCHEMA} not found")
            self.skipTest("schema missing")

    def test_files_exist(self):
        names = [os.path.basename(p) for p in workflow_files()]
        self.assertIn("steps.yaml", names)
        self.assertIn("memoize.yaml", names)

    def test_workflows_match_schema(self):
        for path in workflow_files():
            with self.subTest(file=os.path.relpath(path, SOURCE_DIR)):
                self.assertEqual(argo_problems(load(path), self.root), [])

    def test_broken_copies_rejected(self):
        document = load(os.path.join(SOURCE_DIR, "tests", "workflow", "argo", "memoize.yaml"))
        broken = copy.deepcopy(document)
        del broken["spec"]["templates"][1]["memoize"]["maxAge"]
        self.assertTrue(any("maxAge" in p for p in argo_problems(broken, self.root)))
        broken = copy.deepcopy(document)
        broken["spec"]["templates"][1]["container"]["imagePullPolice"] = "Always"
        self.assertIn("spec.templates[1].container.imagePullPolice: not declared by the schema",
                      argo_problems(broken, self.root))
        broken = copy.deepcopy(document)
        broken["spec"]["templates"][0]["steps"] = "not a list"
        self.assertNotEqual(argo_problems(broken, self.root), [])

    def test_resource_manifests_match_crds(self):
        schemas = {}
        if os.path.exists(MPIJOB_CRD):
            schemas[("kubeflow.org/v2beta1", "MPIJob")] = crd_schema(MPIJOB_CRD, "v2beta1")
        if os.path.exists(KSERVE_CRD):
            schemas[("serving.kserve.io/v1beta1", "InferenceService")] = crd_schema(
                KSERVE_CRD, "v1beta1")
        checked = 0
        for path in workflow_files():
            for template, manifest in resource_manifests(load(path)):
                key = (manifest.get("apiVersion"), manifest.get("kind"))
                if key not in schemas:
                    continue
                checked += 1
                with self.subTest(file=os.path.basename(path), template=template):
                    self.assertEqual(manifest_problems(manifest, schemas[key]), [])
        if checked == 0:
            print("skipped: no resource manifest with a known CRD")

    def test_files_pass_lint(self):
        if not DISTML:
            print("skipped: DISTML is not set")
            self.skipTest("no binary")
        for path in workflow_files():
            with self.subTest(file=os.path.basename(path)):
                result = subprocess.run([DISTML, "workflow", "lint", path],
                                        capture_output=True, text=True, check=False)
                self.assertEqual(result.returncode, 0, result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
