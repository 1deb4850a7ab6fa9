"""Validate deploy/Dockerfile and the Kubernetes manifests in deploy/k8s.

Each MPIJob is validated with jsonschema against the openAPIV3Schema of
kubeflow.org/v2beta1 in the MPI Operator's published CRD (mpi-operator
v0.8.2, kubeflow.org_mpijobs.yaml). The CRD is read from the schemas folder
in the shared directory beside the repository. When that folder is absent,
the schema tests print "skipped: ..." and the other tests still run.

JSON Schema alone accepts any unknown field, because the CRD never sets
additionalProperties to false. The API server instead drops the fields that
the structural schema does not declare, or rejects the request when field
validation is Strict (`kubectl apply --validate=strict`). So on a cluster a
misspelt field is either dropped without a word or rejected.
find_unknown_fields applies the same rule, so such a field fails here.

No Docker engine is available in CI, so the Dockerfile is checked as text:
its stages, the packages of the runtime stage, and the binary copied from
the builder.

Most checks also run on a deliberately broken copy, which they must reject.
"""

import copy
import glob
import os
import re
import shlex
import shutil
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

SOURCE_DIR = os.environ.get("DISTML_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY_DIR = os.path.join(SOURCE_DIR, "deploy")
K8S_DIR = os.path.join(DEPLOY_DIR, "k8s")
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(SOURCE_DIR)), "shared", "schemas")
MPIJOB_CRD = os.path.join(SCHEMA_DIR, "kubeflow.org_mpijobs.yaml")

# Model type and model version number of each MPIJob manifest. Every model
# type has its own version, so no job overwrites another's model.
EXPECTED_JOBS = {
    "mpijob-cnn.yaml": ("cnn", 1),
    "mpijob-dropout.yaml": ("dropout", 2),
    "mpijob-batch-norm.yaml": ("batch_norm", 3),
}
WORKER_REPLICAS = 2

# Options of `distml train` that take no value.
TRAIN_SWITCHES = {"--resume", "--noresume", "--summary"}

# A DNS-1123 label. The operator names worker pods "<job>-worker-<index>"
# and uses that as their hostname, which must be such a label.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_DNS_LABEL = 63


def load_single_document(path):
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(documents) != 1:
        raise AssertionError(f"{path}: expected one YAML document, found {len(documents)}")
    return documents[0]


def load_mpijob_schema():
    """Return the openAPIV3Schema of version v2beta1 in the MPIJob CRD."""
    crd = load_single_document(MPIJOB_CRD)
    for version in crd["spec"]["versions"]:
        if version["name"] == "v2beta1":
            return version["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{MPIJOB_CRD} has no version v2beta1")


def schema_errors(document, schema):
    """Return one "path: message" line per JSON Schema violation."""
    # OpenAPI 3.0 schemas are closest to JSON Schema draft 4.
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in errors]


def find_unknown_fields(value, schema, path=""):
    """Return the paths of fields that a structural schema does not declare.

    A field is declared when it is in the schema's properties, or when the
    schema has an additionalProperties schema. Nothing under
    x-kubernetes-preserve-unknown-fields is checked. Neither is the root
    metadata, because the API server validates it as ObjectMeta.
    """
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    unknown = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else key
            if key in properties:
                if item_path == "metadata":
                    continue
                unknown += find_unknown_fields(item, properties[key], item_path)
            elif isinstance(additional, dict):
                unknown += find_unknown_fields(item, additional, item_path)
            elif additional is not True:
                unknown.append(item_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            unknown += find_unknown_fields(item, schema["items"], f"{path}[{index}]")
    return unknown


def cpu_cores(quantity):
    """Convert a Kubernetes CPU quantity (1, "1", "500m") to cores."""
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    return float(text)


def parse_launch(job):
    """Split the launcher's command into mpirun options and distml options.

    Returns (mpirun_args, distml_args, train_options): the arguments before
    the distml program, those after it, and the `distml train` options as a
    dict from option name to value (True for a switch). Raises
    AssertionError when the launcher does not run `mpirun ... distml train`.
    """
    container = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if not argv or os.path.basename(argv[0]) != "mpirun":
        raise AssertionError(f"launcher command is not mpirun: {argv}")
    programs = [i for i, arg in enumerate(argv) if os.path.basename(arg) == "distml"]
    if not programs:
        raise AssertionError(f"launcher command does not run distml: {argv}")
    program = programs[0]
    mpirun_args = argv[1:program]
    distml_args = argv[program + 1:]
    if distml_args[:1] != ["train"]:
        raise AssertionError(f"launcher runs distml {distml_args[:1]}, expected train")

    options = {}
    rest = distml_args[1:]
    index = 0
    while index < len(rest):
        arg = rest[index]
        if not arg.startswith("--"):
            raise AssertionError(f"unexpected argument {arg!r} of distml train")
        if "=" in arg:
            name, value = arg.split("=", 1)
            options[name] = value
        elif arg in TRAIN_SWITCHES:
            options[arg] = True
        elif index + 1 < len(rest):
            options[arg] = str(rest[index + 1])
            index += 1
        else:
            raise AssertionError(f"option {arg} of distml train has no value")
        index += 1
    return mpirun_args, distml_args, options


def mpirun_process_count(mpirun_args):
    for index, arg in enumerate(mpirun_args):
        if arg in ("-np", "-n", "--np", "--n") and index + 1 < len(mpirun_args):
            return int(mpirun_args[index + 1])
    return None


def claim_mount_paths(pod_spec, claim_name):
    """Return where the containers of a pod mount the volume of claim_name."""
    volumes = [v["name"] for v in pod_spec.get("volumes", [])
               if v.get("persistentVolumeClaim", {}).get("claimName") == claim_name]
    paths = []
    for container in pod_spec.get("containers", []):
        for mount in container.get("volumeMounts", []):
            if mount.get("name") in volumes:
                paths.append(mount.get("mountPath"))
    return paths


def check_job(job, claim_name):
    """Return the problems of one MPIJob as a list of messages."""
    problems = []
    spec = job["spec"]
    replica_specs = spec["mpiReplicaSpecs"]
    name = job.get("metadata", {}).get("name", "")

    if set(replica_specs) != {"Launcher", "Worker"}:
        problems.append(f"replica types are {sorted(replica_specs)}, expected Launcher and Worker")
        return problems
    launcher = replica_specs["Launcher"]
    worker = replica_specs["Worker"]

    worker_hostname = f"{name}-worker-{WORKER_REPLICAS - 1}"
    if not DNS_LABEL.match(worker_hostname) or len(worker_hostname) > MAX_DNS_LABEL:
        problems.append(f"worker hostname {worker_hostname!r} is not a DNS-1123 label")
    if launcher.get("replicas") != 1:
        problems.append(f"Launcher replicas is {launcher.get('replicas')!r}, expected 1")
    if worker.get("replicas") != WORKER_REPLICAS:
        problems.append(f"Worker replicas is {worker.get('replicas')!r}, expected {WORKER_REPLICAS}")

    mpirun_args, _, options = parse_launch(job)
    slots = spec.get("slotsPerWorker", 1)
    ranks = mpirun_process_count(mpirun_args)
    if ranks != WORKER_REPLICAS * slots:
        problems.append(f"mpirun -np is {ranks}, expected {WORKER_REPLICAS} workers x {slots} slots")
    if "--allow-run-as-root" not in mpirun_args:
        problems.append("mpirun args are missing --allow-run-as-root")

    launcher_container = launcher["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in launcher_container.get("env", [])}
    for variable in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"):
        if env.get(variable) != "1":
            problems.append(f"launcher env {variable} is {env.get(variable)!r}, expected '1'")

    data_root = options.get("--data_root")
    for role, replica in (("Launcher", launcher), ("Worker", worker)):
        paths = claim_mount_paths(replica["template"]["spec"], claim_name)
        if paths != [data_root]:
            problems.append(f"{role} mounts claim {claim_name!r} at {paths}, "
                            f"expected [{data_root!r}] (--data_root)")

    worker_container = worker["template"]["spec"]["containers"][0]
    worker_argv = worker_container.get("command", []) + worker_container.get("args", [])
    if not any("/usr/sbin/sshd" in arg for arg in worker_argv):
        problems.append(f"worker does not run /usr/sbin/sshd: {worker_argv}")
    images = {c.get("image") for r in (launcher, worker) for c in r["template"]["spec"]["containers"]}
    if len(images) != 1:
        problems.append(f"launcher and workers use different images: {sorted(map(str, images))}")

    # Ranks per worker times BLAS threads per rank must fit the worker's CPUs.
    blas_threads = int(options.get("--blas_threads", 0))
    cpu_limit = worker_container.get("resources", {}).get("limits", {}).get("cpu")
    if cpu_limit is None:
        problems.append("worker has no CPU limit")
    elif blas_threads == 0:
        problems.append("--blas_threads is 0, so each rank starts one thread per core of "
                        f"the node, which can exceed the worker CPU limit {cpu_limit}")
    elif slots * blas_threads > cpu_cores(cpu_limit):
        problems.append(f"{slots} ranks x --blas_threads {blas_threads} exceed "
                        f"the worker CPU limit {cpu_limit}")
    return problems


def check_job_set(jobs):
    """Return the problems across all MPIJobs, given as a dict from file name to job."""
    problems = []
    if set(jobs) != set(EXPECTED_JOBS):
        problems.append(f"MPIJob files are {sorted(jobs)}, expected {sorted(EXPECTED_JOBS)}")
    seen = {"name": {}, "--saved_model_dir": {}, "--checkpoint_dir": {}, "--log_dir": {}}
    for file_name, job in sorted(jobs.items()):
        _, _, options = parse_launch(job)
        data_root = options.get("--data_root")
        if file_name in EXPECTED_JOBS:
            model_type, version = EXPECTED_JOBS[file_name]
            expected = {
                "--model_type": model_type,
                "--saved_model_dir": f"{data_root}/saved_model_versions/{version}",
                "--checkpoint_dir": f"{data_root}/checkpoint/{model_type}",
            }
            for option, value in expected.items():
                if options.get(option) != value:
                    problems.append(f"{file_name}: {option} is {options.get(option)!r}, "
                                    f"expected {value!r}")
        values = {"name": job["metadata"].get("name")}
        values.update({k: options.get(k) for k in seen if k != "name"})
        for key, value in values.items():
            if value is None:
                continue
            if value in seen[key]:
                problems.append(f"{file_name} and {seen[key][value]} share {key} {value!r}")
            seen[key][value] = file_name
    return problems


def parse_dockerfile(text):
    """Split a Dockerfile into stages.

    Lines continued with a backslash are joined, and comment lines are
    dropped, including those inside a continued instruction. Returns a list
    of dicts with "image" (the FROM image), "name" (the AS name or None) and
    "instructions", a list of (INSTRUCTION, arguments) pairs.
    """
    instructions = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, arguments = full.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))

    stages = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            words = arguments.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"image": words[0], "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, arguments))
        elif keyword != "ARG":
            raise AssertionError(f"Dockerfile instruction {keyword} before the first FROM")
    return stages


def shell_commands(stage):
    """Return each simple command of the stage's RUN instructions as argv."""
    commands = []
    for keyword, arguments in stage["instructions"]:
        if keyword != "RUN":
            continue
        for part in re.split(r"&&|\|\||;|\|", arguments):
            argv = shlex.split(part)
            while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
                argv.pop(0)
            if argv:
                commands.append(argv)
    return commands


def apt_installs(stage):
    """Return (packages, options) of every apt-get install in the stage."""
    packages, options = [], []
    for argv in shell_commands(stage):
        if os.path.basename(argv[0]) not in ("apt-get", "apt") or "install" not in argv:
            continue
        for arg in argv[argv.index("install") + 1:]:
            (options if arg.startswith("-") else packages).append(arg)
    return packages, options


def builder_copy_sources(stage):
    """Return the first path component of each build-context COPY source."""
    sources = set()
    for keyword, arguments in stage["instructions"]:
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(arguments)
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        for source in words[:-1]:
            sources.add(os.path.normpath(source).split(os.sep)[0])
    return sources


def check_dockerfile(stages):
    """Return the problems of a parsed Dockerfile as a list of messages."""
    problems = []
    if len(stages) < 2:
        return [f"Dockerfile has {len(stages)} stage(s), expected a builder and a runtime stage"]
    builder = next((s for s in stages if s["name"] == "builder"), None)
    runtime = stages[-1]
    if builder is None:
        return ["no stage is named builder"]
    if builder["image"] != "debian:bookworm":
        problems.append(f"builder stage is FROM {builder['image']}, expected debian:bookworm")
    if runtime["image"] != "debian:bookworm-slim":
        problems.append(f"runtime stage is FROM {runtime['image']}, expected debian:bookworm-slim")

    commands = shell_commands(builder)
    if not any(argv[0].endswith("scripts/bootstrap") for argv in commands):
        problems.append("builder stage does not run scripts/bootstrap")
    configure = [argv for argv in commands if argv[0] == "cmake" and "-B" in argv]
    build_dir = configure[0][configure[0].index("-B") + 1] if configure else None
    if not configure or "-DCMAKE_BUILD_TYPE=Release" not in configure[0]:
        problems.append("builder stage does not configure cmake with -DCMAKE_BUILD_TYPE=Release")
    if not any(argv[:3] == ["cmake", "--build", build_dir] for argv in commands):
        problems.append(f"builder stage does not run cmake --build {build_dir}")

    packages, options = apt_installs(runtime)
    dev = [p for p in packages if p.endswith("-dev") or p in ("build-essential", "cmake", "gcc")]
    if dev:
        problems.append(f"runtime stage installs build packages: {dev}")
    if packages and "--no-install-recommends" not in options:
        problems.append("runtime stage runs apt-get install without --no-install-recommends")
    for required in ("openmpi-bin", "openssh-server", "openssh-client"):
        if required not in packages:
            problems.append(f"runtime stage does not install {required}")

    copies = [shlex.split(arguments) for keyword, arguments in runtime["instructions"]
              if keyword == "COPY"]
    binary = [words for words in copies
              if "--from=builder" in words and words[-1] == "/usr/local/bin/distml"]
    if not binary:
        problems.append("runtime stage does not COPY --from=builder to /usr/local/bin/distml")
    elif build_dir and binary[0][-2] != f"{build_dir}/distml":
        problems.append(f"runtime stage copies {binary[0][-2]}, but the builder builds "
                        f"{build_dir}/distml")
    return problems


def cmake_input_paths(source_dir):
    """Return the top-level repository paths that the CMake files read.

    Scans CMakeLists.txt and the files it include()s for words that start
    with a top-level file or folder of the repository.
    """
    top_level = set(os.listdir(source_dir))
    pending = ["CMakeLists.txt"]
    scanned = set()
    inputs = {"CMakeLists.txt"}
    while pending:
        relative = pending.pop()
        if relative in scanned:
            continue
        scanned.add(relative)
        with open(os.path.join(source_dir, relative), encoding="utf-8") as f:
            text = re.sub(r"#[^\n]*", "", f.read())
        for word in re.findall(r"[\w${}./*-]+", text):
            for prefix in ("${CMAKE_SOURCE_DIR}/", "${CMAKE_CURRENT_SOURCE_DIR}/",
                           "${PROJECT_SOURCE_DIR}/"):
                if word.startswith(prefix):
                    word = word[len(prefix):]
            first = word.split("/")[0]
            if "/" in word and first in top_level:
                inputs.add(first)
        for included in re.findall(r"include\(\s*([\w${}./-]+\.cmake)", text):
            for prefix in ("${CMAKE_SOURCE_DIR}/", "${CMAKE_CURRENT_SOURCE_DIR}/"):
                included = included.removeprefix(prefix)
            if os.path.isfile(os.path.join(source_dir, included)):
                pending.append(included)
    return inputs


def linked_debian_packages(binary):
    """Map each shared library that the binary needs directly to its package.

    Uses readelf for the DT_NEEDED entries, ldd for where each resolves on
    this machine, and dpkg-query for the package that owns that file.
    Returns {soname: package}, with None where no package owns the file.
    """
    readelf = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                             check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.MULTILINE))
    packages = {}
    for soname in needed:
        path = os.path.realpath(resolved.get(soname, soname))
        # With merged /usr, a file that dpkg lists as /lib/... resolves to /usr/lib/...
        candidates = [path, path.removeprefix("/usr")]
        packages[soname] = None
        for candidate in candidates:
            query = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
            if query.returncode == 0:
                packages[soname] = query.stdout.split(":")[0].strip()
                break
    return packages


def package_dependencies(package):
    """Return the packages named in the Depends of an installed package."""
    query = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", package],
                           capture_output=True, text=True)
    if query.returncode != 0:
        return set()
    names = set()
    for clause in query.stdout.split(","):
        for alternative in clause.split("|"):
            name = alternative.strip().split(" ")[0].split(":")[0]
            if name:
                names.add(name)
    return names


# The runtime stage's base image contains these. Sanitizer runtimes belong to
# DISTML_SANITIZE builds, which the image does not use.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1"}
SANITIZER_SONAME = re.compile(r"^lib(asan|ubsan|tsan|lsan)\.so")


def missing_runtime_packages(binary, packages):
    """Return a message for each library of the binary that packages lack.

    A library counts as installed when its package is in packages, or in the
    Depends of one of them as installed here (libopenblas0 depends on
    libopenblas0-pthread, which owns libopenblas.so.0).
    """
    provided = set(packages)
    for package in packages:
        provided |= package_dependencies(package)
    problems = []
    for soname, package in linked_debian_packages(binary).items():
        if SANITIZER_SONAME.match(soname) or package in BASE_IMAGE_PACKAGES:
            continue
        if package is None:
            problems.append(f"no Debian package owns {soname}, which distml links")
        elif package not in provided:
            problems.append(f"distml links {soname} from {package}, which the runtime "
                            "stage does not install")
    return problems

class MPIJobSchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(SCHEMA_DIR):
            raise unittest.SkipTest(f"schema folder {SCHEMA_DIR} is absent")
        cls.schema = load_mpijob_schema()
        cls.jobs = {name: load_single_document(os.path.join(K8S_DIR, name))
                    for name in EXPECTED_JOBS}

    def test_jobs_match_schema(self):
        for name, job in self.jobs.items():
            with self.subTest(file=name):
                self.assertEqual(schema_errors(job, self.schema), [])

    def test_jobs_have_no_unknown_fields(self):
        for name, job in self.jobs.items():
            with self.subTest(file=name):
                self.assertEqual(find_unknown_fields(job, self.schema), [])

    def test_kind_and_api_version(self):
        for name, job in self.jobs.items():
            with self.subTest(file=name):
                self.assertEqual(job["apiVersion"], "kubeflow.org/v2beta1")
                self.assertEqual(job["kind"], "MPIJob")

    def test_string_replicas_rejected(self):
        broken = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        broken["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] = "2"
        errors = schema_errors(broken, self.schema)
        self.assertEqual(len(errors), 1)
        self.assertTrue(errors[0].startswith("spec.mpiReplicaSpecs.Worker.replicas:"), errors)

    def test_unknown_implementation_rejected(self):
        broken = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        broken["spec"]["mpiImplementation"] = "OpenMP"
        errors = schema_errors(broken, self.schema)
        self.assertEqual(len(errors), 1)
        self.assertTrue(errors[0].startswith("spec.mpiImplementation:"), errors)

    def test_missing_replica_specs_rejected(self):
        broken = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        del broken["spec"]["mpiReplicaSpecs"]
        self.assertNotEqual(schema_errors(broken, self.schema), [])

    def test_misspelt_spec_field_rejected(self):
        broken = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        broken["spec"]["slotPerWorker"] = broken["spec"].pop("slotsPerWorker")
        self.assertEqual(find_unknown_fields(broken, self.schema), ["spec.slotPerWorker"])

    def test_misspelt_container_field_rejected(self):
        broken = copy.deepcopy(self.jobs["mpijob-dropout.yaml"])
        container = broken["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
        container["volumeMount"] = container.pop("volumeMounts")
        self.assertEqual(find_unknown_fields(broken, self.schema),
                         ["spec.mpiReplicaSpecs.Worker.template.spec.containers[0].volumeMount"])

    def test_free_form_maps_accepted(self):
        # Labels and resource limits are maps with an additionalProperties schema.
        job = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        template = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]
        template.setdefault("metadata", {})["labels"] = {"team": "ml"}
        template["spec"]["containers"][0]["resources"]["limits"]["ephemeral-storage"] = "1Gi"
        self.assertEqual(find_unknown_fields(job, self.schema), [])
        self.assertEqual(schema_errors(job, self.schema), [])


class MPIJobContentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pvc = load_single_document(os.path.join(K8S_DIR, "pvc.yaml"))
        cls.claim_name = cls.pvc["metadata"]["name"]
        cls.jobs = {os.path.basename(path): load_single_document(path)
                    for path in sorted(glob.glob(os.path.join(K8S_DIR, "mpijob-*.yaml")))}

    def test_job_files(self):
        self.assertEqual(sorted(self.jobs), sorted(EXPECTED_JOBS))

    def test_each_job_passes_checks(self):
        for name, job in self.jobs.items():
            with self.subTest(file=name):
                self.assertEqual(check_job(job, self.claim_name), [])

    def test_job_set_passes_checks(self):
        self.assertEqual(check_job_set(self.jobs), [])

    def test_model_types(self):
        for name, job in self.jobs.items():
            with self.subTest(file=name):
                _, _, options = parse_launch(job)
                self.assertEqual(options["--model_type"], EXPECTED_JOBS[name][0])

    def test_worker_replicas(self):
        for name, job in self.jobs.items():
            with self.subTest(file=name):
                self.assertEqual(job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"], 2)

    def test_wrong_model_type_rejected(self):
        # A batch_norm job that passes --model_type dropout would train the
        # dropout model again and save it as the batch_norm version.
        jobs = copy.deepcopy(self.jobs)
        args = jobs["mpijob-batch-norm.yaml"]["spec"]["mpiReplicaSpecs"]["Launcher"][
            "template"]["spec"]["containers"][0]["args"]
        args[args.index("--model_type") + 1] = "dropout"
        problems = check_job_set(jobs)
        self.assertEqual(problems, ["mpijob-batch-norm.yaml: --model_type is 'dropout', "
                                    "expected 'batch_norm'"])

    def test_shared_version_rejected(self):
        jobs = copy.deepcopy(self.jobs)
        args = jobs["mpijob-dropout.yaml"]["spec"]["mpiReplicaSpecs"]["Launcher"][
            "template"]["spec"]["containers"][0]["args"]
        index = args.index("--saved_model_dir") + 1
        args[index] = args[index].replace("/2", "/1")
        problems = check_job_set(jobs)
        self.assertEqual(len(problems), 2, problems)
        self.assertIn("--saved_model_dir is", problems[0])
        self.assertIn("share --saved_model_dir", problems[1])

    def test_missing_claim_rejected(self):
        job = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["volumes"] = []
        problems = check_job(job, self.claim_name)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith("Worker mounts claim"), problems)

    def test_other_claim_rejected(self):
        problems = check_job(self.jobs["mpijob-cnn.yaml"], "other-claim")
        self.assertEqual(len(problems), 2, problems)

    def test_one_worker_rejected(self):
        job = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] = 1
        self.assertEqual(check_job(job, self.claim_name), ["Worker replicas is 1, expected 2"])

    def test_oversubscribed_worker_rejected(self):
        job = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        args = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0][
            "args"]
        args[args.index("--blas_threads") + 1] = "4"
        problems = check_job(job, self.claim_name)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("exceed the worker CPU limit", problems[0])

    def test_root_without_confirm_rejected(self):
        job = copy.deepcopy(self.jobs["mpijob-cnn.yaml"])
        container = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
        container["env"] = [e for e in container["env"]
                            if e["name"] != "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"]
        self.assertEqual(check_job(job, self.claim_name),
                         ["launcher env OMPI_ALLOW_RUN_AS_ROOT_CONFIRM is None, expected '1'"])


class PersistentVolumeClaimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pvc = load_single_document(os.path.join(K8S_DIR, "pvc.yaml"))

    def test_kind(self):
        self.assertEqual(self.pvc["apiVersion"], "v1")
        self.assertEqual(self.pvc["kind"], "PersistentVolumeClaim")

    def test_read_write_many(self):
        # Worker pods on different nodes mount the claim at the same time.
        self.assertEqual(self.pvc["spec"]["accessModes"], ["ReadWriteMany"])

    def test_storage_request(self):
        storage = self.pvc["spec"]["resources"]["requests"]["storage"]
        self.assertRegex(str(storage), r"^[0-9]+(Mi|Gi|Ti)$")


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DEPLOY_DIR, "Dockerfile"), encoding="utf-8") as f:
            cls.text = f.read()
        cls.stages = parse_dockerfile(cls.text)

    def test_passes_checks(self):
        self.assertEqual(check_dockerfile(self.stages), [])

    def test_stage_images(self):
        self.assertEqual([s["image"] for s in self.stages],
                         ["debian:bookworm", "debian:bookworm-slim"])

    def test_dev_package_rejected(self):
        broken = self.text.replace("libcjson1 \\", "libcjson-dev \\")
        self.assertNotEqual(broken, self.text)
        self.assertEqual(check_dockerfile(parse_dockerfile(broken)),
                         ["runtime stage installs build packages: ['libcjson-dev']"])

    def test_missing_binary_copy_rejected(self):
        broken = re.sub(r"^COPY --from=builder .*$", "", self.text, flags=re.MULTILINE)
        self.assertNotEqual(broken, self.text)
        self.assertEqual(check_dockerfile(parse_dockerfile(broken)),
                         ["runtime stage does not COPY --from=builder to /usr/local/bin/distml"])

    def test_single_stage_rejected(self):
        broken = self.text.replace("FROM debian:bookworm-slim", "")
        self.assertNotEqual(check_dockerfile(parse_dockerfile(broken)), [])

    def test_builder_copies_cmake_inputs(self):
        builder = next(s for s in self.stages if s["name"] == "builder")
        copied = builder_copy_sources(builder)
        missing = sorted(cmake_input_paths(SOURCE_DIR) - copied)
        self.assertEqual(missing, [], "CMake reads these paths, but the builder stage "
                                      "does not COPY them")

    def linked_binary(self):
        binary = os.environ.get("DISTML")
        if not binary or not os.access(binary, os.X_OK):
            self.skipTest("DISTML is not set to a built distml binary; run through ctest")
        for tool in ("readelf", "ldd", "dpkg-query"):
            if shutil.which(tool) is None:
                self.skipTest(f"{tool} is not installed")
        return binary

    def test_runtime_installs_linked_libraries(self):
        binary = self.linked_binary()
        packages, _ = apt_installs(self.stages[-1])
        self.assertEqual(missing_runtime_packages(binary, packages), [])

    def test_missing_library_rejected(self):
        binary = self.linked_binary()
        packages, _ = apt_installs(self.stages[-1])
        packages.remove("libcjson1")
        self.assertEqual(missing_runtime_packages(binary, packages),
                         ["distml links libcjson.so.1 from libcjson1, which the runtime "
                          "stage does not install"])

if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    for test, reason in result.skipped:
        print(f"skipped: {test.id()}: {reason}")
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{max(passed, 0)} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
