/*
 * Unit tests of the workflow spec loader: supported fields, the errors
 * that name an unsupported field and its path, Go durations for maxAge,
 * the memoize key rule, template references and DAG cycles, and the
 * resource condition selectors.
 */
#include "check.h"

#include "base/error.h"
#include "workflow/duration.h"
#include "workflow/selector.h"
#include "workflow/spec.h"

#include <cjson/cJSON.h>

/* Load TEXT as a workflow and return the loader's status. */
static int load_text(const char *text, wf_spec *spec)
{
    return wf_spec_parse(text, strlen(text), "test.yaml", spec);
}

/* Expect TEXT to be rejected with an error containing NEEDLE. */
static void expect_rejected(const char *text, const char *needle)
{
    wf_spec spec;
    dm_error_clear();
    int rc = load_text(text, &spec);
    CHECK_MSG(rc != 0, "accepted a workflow that should fail with '%s'", needle);
    if (rc == 0) {
        wf_spec_free(&spec);
        return;
    }
    CHECK_STR_CONTAINS(dm_error(), needle);
}

static const char *const HEADER = "apiVersion: argoproj.io/v1alpha1\n"
                                  "kind: Workflow\n"
                                  "metadata:\n"
                                  "  generateName: test-\n";

/* HEADER followed by BODY, in a static buffer. */
static const char *workflow(const char *body)
{
    static char buffer[8192];
    snprintf(buffer, sizeof buffer, "%s%s", HEADER, body);
    return buffer;
}

static void test_spec_full_example_loads(void)
{
    const char *body = "spec:\n"
                       "  entrypoint: main\n"
                       "  parallelism: 2\n"
                       "  activeDeadlineSeconds: 600\n"
                       "  podGC:\n"
                       "    strategy: OnPodSuccess\n"
                       "  arguments:\n"
                       "    parameters:\n"
                       "    - name: message\n"
                       "      value: hello\n"
                       "  volumes:\n"
                       "  - name: data\n"
                       "    persistentVolumeClaim:\n"
                       "      claimName: distml-data\n"
                       "  templates:\n"
                       "  - name: main\n"
                       "    steps:\n"
                       "    - - name: a\n"
                       "        template: echo\n"
                       "        arguments:\n"
                       "          parameters:\n"
                       "          - name: text\n"
                       "            value: '{{workflow.parameters.message}}'\n"
                       "      - name: b\n"
                       "        template: flow\n"
                       "    - - name: c\n"
                       "        template: echo\n"
                       "        when: '{{steps.a.outputs.result}} == hello'\n"
                       "        arguments:\n"
                       "          parameters:\n"
                       "          - name: text\n"
                       "            value: done\n"
                       "  - name: echo\n"
                       "    inputs:\n"
                       "      parameters:\n"
                       "      - name: text\n"
                       "    retryStrategy:\n"
                       "      limit: 2\n"
                       "      retryPolicy: Always\n"
                       "      backoff:\n"
                       "        duration: '1'\n"
                       "        factor: 2\n"
                       "    memoize:\n"
                       "      key: echo-{{inputs.parameters.text}}\n"
                       "      maxAge: 1h30m\n"
                       "      cache:\n"
                       "        configMap:\n"
                       "          name: echo-cache\n"
                       "    outputs:\n"
                       "      parameters:\n"
                       "      - name: out\n"
                       "        valueFrom:\n"
                       "          path: /tmp/out.txt\n"
                       "    container:\n"
                       "      image: alpine\n"
                       "      command: [sh, -c]\n"
                       "      args: ['echo {{inputs.parameters.text}} | tee /tmp/out.txt']\n"
                       "      volumeMounts:\n"
                       "      - name: data\n"
                       "        mountPath: /data\n"
                       "  - name: flow\n"
                       "    dag:\n"
                       "      tasks:\n"
                       "      - name: x\n"
                       "        template: say\n"
                       "      - name: y\n"
                       "        template: say\n"
                       "        dependencies: [x]\n"
                       "  - name: say\n"
                       "    script:\n"
                       "      image: python:3\n"
                       "      command: [python3]\n"
                       "      source: print('hi')\n";
    wf_spec spec;
    int rc = load_text(workflow(body), &spec);
    CHECK_MSG(rc == 0, "%s", dm_error());
    if (rc != 0)
        return;
    CHECK(strcmp(spec.generate_name, "test-") == 0);
    CHECK(strcmp(spec.entrypoint, "main") == 0);
    CHECK_INT_EQ(spec.parallelism, 2);
    CHECK(strcmp(spec.pod_gc_strategy, "OnPodSuccess") == 0);
    CHECK_INT_EQ(spec.template_count, 4);
    CHECK_INT_EQ(spec.volume_count, 1);
    CHECK(strcmp(spec.volumes[0].claim_name, "distml-data") == 0);
    const wf_template *main_t = wf_spec_template(&spec, "main");
    const wf_template *echo = wf_spec_template(&spec, "echo");
    const wf_template *flow = wf_spec_template(&spec, "flow");
    const wf_template *say = wf_spec_template(&spec, "say");
    CHECK(main_t != NULL);
    CHECK(echo != NULL);
    CHECK(flow != NULL);
    CHECK(say != NULL);
    if (main_t == NULL || echo == NULL || flow == NULL || say == NULL) {
        wf_spec_free(&spec);
        return;
    }
    CHECK(main_t->type == WF_TEMPLATE_STEPS);
    CHECK_INT_EQ(main_t->group_count, 2);
    CHECK_INT_EQ(main_t->groups[0].count, 2);
    CHECK(echo->memoize != NULL);
    CHECK(echo->retry != NULL);
    CHECK(echo->memoize != NULL && strcmp(echo->memoize->cache_name, "echo-cache") == 0);
    CHECK(strcmp(echo->outputs[0].path, "/tmp/out.txt") == 0);
    CHECK_INT_EQ(echo->container.mount_count, 1);
    CHECK(flow->type == WF_TEMPLATE_DAG);
    CHECK_INT_EQ(flow->task_count, 2);
    CHECK(flow->fail_fast);
    CHECK(say->type == WF_TEMPLATE_SCRIPT);
    wf_spec_free(&spec);
}

static void test_spec_unsupported_field_path(void)
{
    const char *body = "spec:\n"
                       "  entrypoint: a\n"
                       "  templates:\n"
                       "  - name: a\n"
                       "    container: {image: alpine, command: [true]}\n"
                       "  - name: b\n"
                       "    container: {image: alpine, command: [true]}\n"
                       "  - name: c\n"
                       "    container:\n"
                       "      image: alpine\n"
                       "      imagePullPolicy: IfNotPresent\n"
                       "      command: [true]\n";
    expect_rejected(workflow(body),
                    "test.yaml:15:24: spec.templates[2].container.imagePullPolicy: unsupported "
                    "field");
    expect_rejected(workflow("spec:\n  entrypoint: a\n  onExit: b\n  templates: []\n"),
                    "spec.onExit: unsupported field");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    steps:\n"
                             "    - - name: s\n"
                             "        template: a\n"
                             "        hooks: {}\n"),
                    "spec.templates[0].steps[0][0].hooks: unsupported field");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    retryStrategy: {limit: 1, expression: 'true'}\n"
                             "    container: {image: alpine, command: [true]}\n"),
                    "spec.templates[0].retryStrategy.expression: unsupported field");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    container: {image: alpine, args: ['{{=sprig.upper(x)}}']}\n"),
                    "spec.templates[0].container.args[0]: expression tags");
}

static void test_spec_max_age_durations(void)
{
    const char *format = "spec:\n"
                         "  entrypoint: a\n"
                         "  templates:\n"
                         "  - name: a\n"
                         "    memoize:\n"
                         "      key: k1\n"
                         "      maxAge: \"%s\"\n"
                         "      cache: {configMap: {name: c1}}\n"
                         "    container: {image: alpine, command: [true]}\n";
    char body[1024];
    snprintf(body, sizeof body, format, "3ss");
    expect_rejected(workflow(body), "spec.templates[0].memoize.maxAge: invalid maxAge '3ss'");
    snprintf(body, sizeof body, format, "1d");
    expect_rejected(workflow(body), "spec.templates[0].memoize.maxAge: invalid maxAge '1d'");
    expect_rejected(workflow(body), "unknown unit \"d\"");
    snprintf(body, sizeof body, format, "3600");
    expect_rejected(workflow(body), "missing unit");
    const char *accepted[] = {"90m", "1h30m", "10s", "1.5h", "300ms"};
    for (size_t i = 0; i < 5; i++) {
        wf_spec spec;
        snprintf(body, sizeof body, format, accepted[i]);
        int rc = load_text(workflow(body), &spec);
        CHECK_MSG(rc == 0, "maxAge %s: %s", accepted[i], dm_error());
        if (rc == 0)
            wf_spec_free(&spec);
    }
}

static void test_duration_values(void)
{
    const struct {
        const char *text;
        int64_t nanoseconds;
    } valid[] = {
        {"1h30m", 5400LL * 1000000000LL}, {"90m", 5400LL * 1000000000LL},
        {"1.5s", 1500000000LL},           {"0", 0},
        {"-2m", -120LL * 1000000000LL},   {"250ms", 250000000LL},
    };
    int64_t ns = 0;
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        ns = -1;
        CHECK_MSG(wf_duration_parse(valid[i].text, &ns) == 0, "%s: %s", valid[i].text, dm_error());
        CHECK_MSG(ns == valid[i].nanoseconds, "%s gave %lld", valid[i].text, (long long)ns);
    }
    CHECK(wf_duration_parse("", &ns) != 0);
    CHECK(wf_duration_parse("3ss", &ns) != 0);
    CHECK_STR_CONTAINS(dm_error(), "time: unknown unit \"ss\" in duration \"3ss\"");
    CHECK(wf_duration_parse("h", &ns) != 0);
    double seconds = 0;
    CHECK(wf_duration_parse_seconds("10", &seconds) == 0);
    CHECK_NEAR(seconds, 10.0, 0.0);
    CHECK(wf_duration_parse_seconds("2m", &seconds) == 0);
    CHECK_NEAR(seconds, 120.0, 0.0);
    CHECK(wf_duration_parse_seconds("-1", &seconds) != 0);
}

static void test_memo_key_rule(void)
{
    CHECK(wf_memo_key_valid("step-cache"));
    CHECK(wf_memo_key_valid("A1-b2"));
    CHECK(wf_memo_key_valid("0abc"));
    CHECK(!wf_memo_key_valid(""));
    CHECK(!wf_memo_key_valid("-abc"));
    CHECK(!wf_memo_key_valid("a.b"));
    CHECK(!wf_memo_key_valid("a_b"));
    CHECK(!wf_memo_key_valid("a/b"));
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    memoize: {key: my.key, maxAge: 1h, cache: {configMap: {name: "
                             "c}}}\n"
                             "    container: {image: alpine, command: [true]}\n"),
                    "invalid cache key 'my.key'");
}

static void test_spec_references(void)
{
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: missing\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    container: {image: alpine, command: [true]}\n"),
                    "spec.entrypoint: template 'missing' is not defined");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    steps:\n"
                             "    - - {name: s, template: nowhere}\n"),
                    "template 'nowhere' is not defined");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    dag:\n"
                             "      tasks:\n"
                             "      - {name: x, template: b, dependencies: [z]}\n"
                             "      - {name: z, template: b, dependencies: [x]}\n"
                             "  - name: b\n"
                             "    container: {image: alpine, command: [true]}\n"),
                    "dependency cycle");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    container:\n"
                             "      image: alpine\n"
                             "      command: [true]\n"
                             "      volumeMounts: [{name: data, mountPath: /data}]\n"),
                    "volume 'data' is not in spec.volumes");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    container: {image: alpine, command: [true]}\n"
                             "    script: {image: alpine, command: [sh], source: x}\n"),
                    "has both container and script");
    expect_rejected(workflow("spec:\n"
                             "  entrypoint: a\n"
                             "  podGC: {strategy: Sometimes}\n"
                             "  templates:\n"
                             "  - name: a\n"
                             "    container: {image: alpine, command: [true]}\n"),
                    "spec.podGC: invalid strategy 'Sometimes'");
    expect_rejected("apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\nmetadata: {name: x}\n"
                    "spec: {}\n",
                    "kind Workflow");
    expect_rejected("a: [1, 2\n", "invalid YAML");
}

static void test_spec_resource_kinds(void)
{
    const char *format = "spec:\n"
                         "  entrypoint: a\n"
                         "  templates:\n"
                         "  - name: a\n"
                         "    resource:\n"
                         "      action: %s\n"
                         "      successCondition: %s\n"
                         "      manifest: |\n"
                         "        apiVersion: %s\n"
                         "        kind: %s\n"
                         "        metadata: {name: job}\n";
    char body[1024];
    wf_spec spec;
    snprintf(body, sizeof body, format, "create", "status.replicaStatuses.Launcher.succeeded = 1",
             "kubeflow.org/v2beta1", "MPIJob");
    int rc = load_text(workflow(body), &spec);
    CHECK_MSG(rc == 0, "%s", dm_error());
    if (rc == 0)
        wf_spec_free(&spec);
    snprintf(body, sizeof body, format, "apply", "a = b", "kubeflow.org/v2beta1", "MPIJob");
    expect_rejected(workflow(body), "action 'apply' is not supported");
    snprintf(body, sizeof body, format, "create", "a = b", "batch/v1", "Job");
    expect_rejected(workflow(body), "batch/v1 Job is not supported");
    snprintf(body, sizeof body, format, "create", "a >> b", "kubeflow.org/v1", "TFJob");
    expect_rejected(workflow(body), "successCondition: invalid condition");
}

static void test_selector_matches(void)
{
    cJSON *object = cJSON_Parse("{\"status\": {\"replicaStatuses\": {\"Worker\": {\"succeeded\": "
                                "2, \"failed\": 0}}, \"phase\": \"Running\", \"items\": [\"a\", "
                                "\"b\"]}}");
    CHECK(object != NULL);
    const struct {
        const char *text;
        bool expected;
    } cases[] = {
        {"status.replicaStatuses.Worker.succeeded = 2", true},
        {"status.replicaStatuses.Worker.succeeded == 3", false},
        {"status.replicaStatuses.Worker.failed > 0", false},
        {"status.replicaStatuses.Worker.succeeded > 1", true},
        {"status.replicaStatuses.Worker.succeeded < 1", false},
        {"status.phase in (Running, Pending)", true},
        {"status.phase notin (Running)", false},
        {"status.phase != Failed", true},
        {"status.missing != x", true},
        {"status.missing = x", false},
        {"status.missing > 0", false},
        {"status.phase", true},
        {"!status.phase", false},
        {"!status.missing", true},
        {"status.items.1 = b", true},
        {"status.phase = Running, status.replicaStatuses.Worker.succeeded = 2", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wf_selector *sel = NULL;
        int rc = wf_selector_parse(cases[i].text, &sel);
        CHECK_MSG(rc == 0, "%s: %s", cases[i].text, dm_error());
        if (rc != 0)
            continue;
        bool all = true;
        for (size_t k = 0; k < wf_selector_count(sel); k++)
            all = all && wf_selector_matches(sel, k, object);
        CHECK_MSG(all == cases[i].expected, "'%s' gave %d", cases[i].text, (int)all);
        wf_selector_free(sel);
    }
    wf_selector *sel = NULL;
    CHECK(wf_selector_parse("a > b", &sel) != 0);
    CHECK(wf_selector_parse("a = b,", &sel) != 0);
    CHECK(wf_selector_parse("", &sel) != 0);
    CHECK(wf_selector_parse("a in (x", &sel) != 0);
    cJSON_Delete(object);
}

int main(void)
{
    RUN_TEST(test_spec_full_example_loads);
    RUN_TEST(test_spec_unsupported_field_path);
    RUN_TEST(test_spec_max_age_durations);
    RUN_TEST(test_duration_values);
    RUN_TEST(test_memo_key_rule);
    RUN_TEST(test_spec_references);
    RUN_TEST(test_spec_resource_kinds);
    RUN_TEST(test_selector_matches);
    return check_finish();
}
