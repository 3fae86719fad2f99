"""A small URL shortener, the example app safedeploy deploys.

POST /shorten stores a URL under a short code; GET /<code> redirects to it. Links live in
urls.json in the data directory (SAFEDEPLOY_DATA_DIR on the local platform, so they survive
deploys and rollbacks). /health answers without touching storage; /version names the running
version; /metrics gives Prometheus the requests and their durations, labelled by version.
"""

import fcntl
import json
import os
import secrets
import string
from contextlib import contextmanager

from flask import Flask, jsonify, redirect, request

app = Flask(__name__)
app.config["URLS_FILE"] = os.path.join(
    os.environ.get("SAFEDEPLOY_DATA_DIR", os.path.dirname(os.path.abspath(__file__))), "urls.json"
)
VERSION = os.environ.get("SAFEDEPLOY_VERSION", "dev")
CODE_CHARS = string.ascii_letters + string.digits
MAX_URL = 2048

PAGE = """<!doctype html>
<title>URL shortener</title>
<h1>Shorten a URL</h1>
<form method="post" action="/shorten">
  <input name="url" placeholder="https://example.com/long/path" size="60">
  <input name="code" placeholder="custom code (optional)">
  <button>Shorten</button>
</form>
"""


def make_code(length=6):
    """A random code of letters and digits."""
    return "".join(secrets.choice(CODE_CHARS) for _ in range(length))


def valid_url(url):
    return isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) <= MAX_URL


def valid_code(code):
    return isinstance(code, str) and 0 < len(code) <= 64 and all(c in CODE_CHARS + "-_" for c in code)


@contextmanager
def locked_store():
    """Serialises read-modify-write of urls.json across the server's worker processes."""
    path = app.config["URLS_FILE"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_urls(path):
    if not os.path.exists(path):
        return {}
    with open(path) as urls_file:
        return json.load(urls_file)


def save_urls(path, urls):
    tmp = path + ".tmp"
    with open(tmp, "w") as urls_file:
        json.dump(urls, urls_file, indent=2, sort_keys=True)
    os.replace(tmp, path)


@app.get("/")
def index():
    return PAGE


@app.post("/shorten")
def shorten():
    data = request.get_json(silent=True) or request.form
    url = data.get("url", "")
    code = data.get("code") or make_code()
    if not valid_url(url):
        return jsonify(error="url must be an http(s) URL of at most %d characters" % MAX_URL), 400
    if not valid_code(code):
        return jsonify(error="code must be 1-64 letters, digits, - or _"), 400
    with locked_store() as path:
        urls = load_urls(path)
        if code in urls and urls[code] != url:
            return jsonify(error="code %r is taken" % code), 409
        urls[code] = url
        save_urls(path, urls)
    return jsonify(code=code, url=url, short_url=request.host_url + code), 201


@app.get("/<code>")
def follow(code):
    with locked_store() as path:
        urls = load_urls(path)
    if code not in urls:
        return jsonify(error="no such short link"), 404
    return redirect(urls[code], code=302)


@app.get("/health")
def health():
    return "ok\n"


@app.get("/version")
def version():
    return jsonify(version=VERSION)


# Metrics for Prometheus, labelled by the running version. gunicorn's workers are processes: under
# the platform (SAFEDEPLOY_VERSION set) they share prometheus-client's multiprocess directory,
# one per start, in the start's working copy (removed with it).
if "SAFEDEPLOY_VERSION" in os.environ and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(os.getcwd(), ".metrics-%d" % os.getppid())
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

import time  # noqa: E402

import prometheus_client  # noqa: E402  (imported once its directory is chosen)
from prometheus_client import multiprocess  # noqa: E402

REQUESTS = prometheus_client.Counter("http_requests_total", "Requests answered", ["version", "status"])
DURATION = prometheus_client.Histogram("http_request_duration_seconds", "Time to answer", ["version"])


@app.before_request
def _started():
    request.environ["app.started"] = time.monotonic()


@app.after_request
def _counted(response):
    # Users' requests only: the platform's probes (/health, /version) and the scrapes are not.
    if request.path not in ("/metrics", "/health", "/version"):
        REQUESTS.labels(VERSION, str(response.status_code)).inc()
        DURATION.labels(VERSION).observe(time.monotonic() - request.environ.get("app.started", time.monotonic()))
    return response


@app.get("/metrics")
def metrics():
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return prometheus_client.generate_latest(registry), 200, {"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
