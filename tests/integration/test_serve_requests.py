"""The reference design's client request against `distml serve`.

The reference client reads a JPEG, puts its standard base64 in
{"instances": [{"image_bytes": {"b64": ...}}]}, and POSTs it with
python-requests (data=json.dumps(...), a Host header naming the service)
or with curl -d @inference-input.json. Both must get 200 with one row of
10 probabilities, and the same reply. The JPEG is a 299x299 three-channel
baseline image like the reference one. cjpeg makes it when installed, and
the F1 fixture is sent either way.

Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space),
DISTML_SOURCE_DIR (the checkout).
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import requests

DISTML = os.environ["DISTML"]
SOURCE = os.environ.get("DISTML_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
TMP = os.path.join(os.environ.get("DISTML_TEST_TMP", "/tmp"), "serve-requests.%d" % os.getpid())
FIXTURES = os.path.join(SOURCE, "tests", "serve", "fixtures")
HOST = "fmnist.kubeflow.example.com"

passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print("ok     " + name)
    else:
        failed += 1
        print("FAILED " + name + (": " + detail if detail else ""))


def make_model(base):
    """Trains a cnn for a few steps on generated data into BASE/1."""
    script = ('. "$1/tests/integration/lib/models.sh"; make_noise_dataset "$tmp/root"; '
              'make_model "$tmp/root" 1 5 "$2/1"')
    subprocess.run(["sh", "-c", script, "sh", SOURCE, base], check=True,
                   env=dict(os.environ, tmp=TMP, DISTML=DISTML))


def start_server(base, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen([DISTML, "serve", "--model_name", "fmnist", "--model_base_path", base,
                             "--rest_api_port", "0", "--bind_address", "127.0.0.1"],
                            stderr=log)
    for _ in range(100):
        text = open(log_path).read()
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+) ", text)
        if found:
            return proc, "http://127.0.0.1:%s" % found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    sys.exit("the server did not start:\n" + open(log_path).read())


def reference_jpeg(path):
    """Writes a 299x299 RGB baseline JPEG with cjpeg; False when it is missing."""
    cjpeg = shutil.which("cjpeg")
    if cjpeg is None:
        return False
    pixels = bytes(((x * 3 + y) % 256, (x + y * 2) % 256, (x * y) % 256)[c]
                   for y in range(299) for x in range(299) for c in range(3))
    ppm = b"P6\n299 299\n255\n" + pixels
    with open(path, "wb") as out:
        subprocess.run([cjpeg, "-quality", "90", "-baseline"], input=ppm, stdout=out, check=True)
    return True


def send_both_ways(name, url, image_path):
    """Sends IMAGE_PATH with python-requests and with curl, as the reference client does."""
    with open(image_path, "rb") as f:
        payload = {"instances": [{"image_bytes": {"b64": base64.b64encode(f.read()).decode()}}]}
    body_path = os.path.join(TMP, name + "-inference-input.json")
    with open(body_path, "w") as f:
        json.dump(payload, f)

    predict = url + "/v1/models/fmnist:predict"
    reply = requests.post(predict, data=json.dumps(payload), headers={"Host": HOST}, timeout=30)
    check(name + " with requests: status 200", reply.status_code == 200,
          "%d %s" % (reply.status_code, reply.text[:300]))
    check(name + " with requests: Content-Type application/json",
          reply.headers.get("Content-Type") == "application/json",
          str(reply.headers.get("Content-Type")))
    rows = reply.json().get("predictions") if reply.status_code == 200 else None
    check(name + " with requests: one row of 10 probabilities",
          isinstance(rows, list) and len(rows) == 1 and len(rows[0]) == 10
          and abs(sum(rows[0]) - 1.0) < 1e-5, str(rows))

    curl = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-H", "Host: " + HOST,
                           "-d", "@" + body_path, predict],
                          capture_output=True, text=True, check=False)
    curl_body, _, curl_code = curl.stdout.rpartition("\n")
    check(name + " with curl: status 200", curl_code == "200", curl.stdout[-300:])
    check(name + " with curl: the same reply as requests", curl_body == reply.text)

    with_json = requests.post(predict, json=payload, timeout=30)
    check(name + " with requests json=: the same reply", with_json.text == reply.text)


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    base = os.path.join(TMP, "models", "fmnist")
    make_model(base)
    log_path = os.path.join(TMP, "server.log")
    proc, url = start_server(base, log_path)
    try:
        send_both_ways("F1 fixture", url, os.path.join(FIXTURES, "F1-gray128-baseline-28.jpg"))
        jpeg = os.path.join(TMP, "reference.jpg")
        if reference_jpeg(jpeg):
            send_both_ways("299x299 RGB JPEG", url, jpeg)
        else:
            print("skip   299x299 RGB JPEG: cjpeg (libjpeg-turbo-progs) is not installed")
        status = requests.get(url + "/v1/models/fmnist", timeout=10).json()
        check("status lists version 1 AVAILABLE",
              status["model_version_status"][0]["version"] == "1"
              and status["model_version_status"][0]["state"] == "AVAILABLE", str(status))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    check("SIGTERM: exit status 0", code == 0, str(code))
    print("%d passed, %d failed" % (passed, failed))
    if failed == 0:
        shutil.rmtree(TMP, ignore_errors=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
