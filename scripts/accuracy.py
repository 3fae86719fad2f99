"""The verdict-accuracy corpus, driven by scripts/accuracy (which builds the release binaries,
puts them on PATH and gives this a scratch directory).

Every run is one version of the example app, changed as its kind says, taken through the
pipeline while users use production. Two workers run side by side, each with its own app
checkout, state dir and ports.

    python3 scripts/accuracy.py ROOT WORK BAD_RUNS HEALTHY_RUNS
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT, WORK, BAD_RUNS, HEALTHY_RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
WORKERS = 2

# Kept in the corpus's own base: one more thing to check (a static asset) and a latency budget.
EXTRA_CHECKS = """
[[smoke.chains]]
name = "static asset"

[[smoke.chains.checks]]
name = "the stylesheet is served"
path = "/static/style.css"
body_contains = "font-family"
"""


def sub(old, new):
    """An edit of application.py that must apply."""

    def edit(files):
        assert old in files["application.py"], old
        files["application.py"] = files["application.py"].replace(old, new, 1)

    return edit


def prepend_route_hook(code):
    """A hook run before every request (the health and version routes too)."""
    return sub("@app.get(\"/\")\n", "@app.before_request\ndef _fault():\n" + code + "\n\n\n@app.get(\"/\")\n")


def procfile(prefix):
    def edit(files):
        files["Procfile"] = files["Procfile"].replace("web: ", "web: " + prefix, 1)

    return edit


def rename_static(files):
    files["static/styles.css"] = files.pop("static/style.css")


# Ten kinds of bad version: each must be stopped before it serves production for good.
BAD = {
    "5xx on one path": sub("def follow(code):\n", "def follow(code):\n    return \"boom\\n\", 500\n"),
    "wrong redirect target": sub("return redirect(urls[code], code=302)", "return redirect(\"https://example.com/\", code=302)"),
    "wrong body": sub('<form method="post" action="/shorten">', '<form method="post" action="/shorten/">'),
    "crash on start": sub("VERSION = ", "raise RuntimeError(\"a setting is missing\")\nVERSION = "),
    "hang": sub("def shorten():\n", "def shorten():\n    time.sleep(3600)\n"),
    "slow p95": sub("def index():\n", "def index():\n    if random.random() < 0.4:\n        time.sleep(0.8)\n"),
    "dies after 3 s": procfile("timeout -s KILL 3 "),
    "500 only on POST (the incident)": sub("json.load(urls_file)", "json.loads(urls_file)"),
    "broken static asset": rename_static,
    "leaks memory until killed": lambda f: (
        sub("def index():\n", "def index():\n    LEAK.append(bytearray(25 * 1024 * 1024))\n")(f),
        sub("VERSION = ", "LEAK = []\nVERSION = ")(f),
        procfile("ulimit -v 400000; exec ")(f),
    ),
}

# Subtle bad versions: each fails users in a way the journey does not walk. What the
# evidence beyond the journey (the canary's judge on users' answers, the latency rule) catches
# of them, and after how many of the candidate's requests, is published as it is.
SUBTLE = {
    "2 % 500 on a page the journey does not visit": sub(
        "def about():\n", "def about():\n    if random.random() < 0.02:\n        return \"boom\\n\", 500\n"
    ),
    "p95 +200 ms": sub("def index():\n", "def index():\n    if random.random() < 0.08:\n        time.sleep(0.2)\n"),
    "errors only under concurrency": prepend_route_hook(
        "    import fcntl as _f\n    global _LOCK\n    if request.path in (\"/health\", \"/version\"):\n        return None\n"
        "    _LOCK = open(\"/tmp/corpus-concurrency-\" + VERSION, \"a\")\n"
        "    try:\n        _f.flock(_LOCK, _f.LOCK_EX | _f.LOCK_NB)\n    except OSError:\n        return \"busy elsewhere\\n\", 500\n"
    ),
}
BAD.update(SUBTLE)

# Healthy versions under transient faults: none of them may be failed.
HEALTHY = {
    "no fault": lambda f: sub("MAX_URL = 2048", "MAX_URL = 2048  # unchanged")(f),
    "503 blip (0.3 s)": prepend_route_hook("    if 1.5 < time.time() - STARTED < 1.8:\n        return \"busy\\n\", 503"),
    "502 blip (0.3 s)": prepend_route_hook("    if 2.5 < time.time() - STARTED < 2.8:\n        return \"bad gateway\\n\", 502"),
    "slow start (4 s)": sub("VERSION = ", "time.sleep(4)\nVERSION = "),
    "429 with Retry-After": prepend_route_hook(
        "    COUNT[0] += 1\n    if COUNT[0] % 25 == 0:\n        return \"slow down\\n\", 429, {\"Retry-After\": \"1\"}"
    ),
    "connection resets": prepend_route_hook(
        "    COUNT[0] += 1\n    sock = request.environ.get(\"gunicorn.socket\")\n"
        "    if COUNT[0] % 30 == 0 and sock is not None:\n        sock.shutdown(socket.SHUT_RDWR)\n        return \"\""
    ),
}


# The kind of the restore row.
RESTORE = "the restored version cannot serve"


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cmd, cwd, env, timeout=300):
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return 124, f"timed out after {timeout}s: {e}"


class Worker:
    def __init__(self, n):
        self.n = n
        self.dir = os.path.join(WORK, f"app{n}")
        self.results = []
        self.staging, self.production = free_port(), free_port()
        shutil.copytree(os.path.join(ROOT, "examples/url-shortener"), self.dir)
        venv = os.path.join(ROOT, ".venv/bin")
        cfg_path = os.path.join(self.dir, "safedeploy.toml")
        cfg = open(cfg_path).read()
        cfg = re.sub(r'(?m)^command = "python3 -m venv.*$', 'command = "true"', cfg)
        cfg = cfg.replace('path = [".venv/bin"]', f'path = ["{venv}"]')
        cfg = cfg.replace("127.0.0.1:8101", f"127.0.0.1:{self.staging}").replace("127.0.0.1:8102", f"127.0.0.1:{self.production}")
        cfg = cfg.replace('deadline = "30s"', 'deadline = "30s"\ntimeout = "3s"')
        cfg = cfg.replace('body_matches = "<form', 'p95_latency = "400ms"\nbody_matches = "<form')
        open(cfg_path, "w").write(cfg + EXTRA_CHECKS)
        os.makedirs(os.path.join(self.dir, "static"), exist_ok=True)
        open(os.path.join(self.dir, "static/style.css"), "w").write("body { font-family: sans-serif; }\n")
        app = open(os.path.join(self.dir, "application.py")).read()
        app = app.replace("import fcntl\n", "import fcntl\nimport random\nimport socket\nimport time\n")
        app = app.replace("VERSION = ", "STARTED = time.time()\nCOUNT = [0]\nVERSION = ")
        # Every version of the corpus can be made unable to serve its users where it runs (the
        # restore row): a file named after it in the data dir.
        app = app.replace("@app.get(\"/\")\n", "@app.before_request\ndef _broken_here():\n"
                          "    data = os.environ.get(\"SAFEDEPLOY_DATA_DIR\", \".\")\n"
                          "    if request.path not in (\"/health\", \"/version\") and os.path.exists(os.path.join(data, \"break-\" + VERSION)):\n"
                          "        return \"broken here\\n\", 500\n\n\n@app.get(\"/\")\n", 1)
        # A page users visit that the journey does not; and what the concurrency kind holds
        # during a request, let go after it.
        app = app.replace("@app.get(\"/\")\n", "@app.get(\"/about\")\ndef about():\n    return \"about\\n\"\n\n\n"
                          "_LOCK = None\n\n\n@app.after_request\ndef _let_go(r):\n    global _LOCK\n"
                          "    if _LOCK is not None:\n        _LOCK.close()\n        _LOCK = None\n    return r\n\n\n@app.get(\"/\")\n", 1)
        open(os.path.join(self.dir, "application.py"), "w").write(app)
        self.env = dict(os.environ, SAFEDEPLOY_STATE_DIR=os.path.join(self.dir, ".state"),
                        SAFEDEPLOY_CONFIG=cfg_path)
        self.git("init", "-q", "-b", "main")
        open(os.path.join(self.dir, ".gitignore"), "w").write(".state/\n")
        self.commit("base")
        self.git("tag", "base")
        self.good = "base"
        for cmd in (["deploy-staging", "--version", "base"], ["smoke-check", "--env", "staging", "--record"],
                    ["promote"], ["smoke-check", "--env", "production", "--record"]):
            code, out = run(cmd, self.dir, self.env)
            assert code == 0, f"worker {n}: {cmd}: {out}"

    def git(self, *args):
        subprocess.run(["git", *args], cwd=self.dir, check=True, capture_output=True)

    def commit(self, message):
        self.git("add", "-A")
        self.git("-c", "user.name=corpus", "-c", "user.email=c@example.com", "commit", "--allow-empty", "-qm", message)

    def files(self):
        out = {}
        for rel in ("application.py", "Procfile", "static/style.css"):
            out[rel] = open(os.path.join(self.dir, rel)).read()
        return out

    def one(self, label, kind, bad, edit, forced=False, restore_breaks=False):
        started = time.time()
        self.git("checkout", "-q", "base", "--", ".")
        files = self.files()
        edit(files)
        if "static/style.css" not in files:
            os.remove(os.path.join(self.dir, "static/style.css"))
        for rel, text in files.items():
            with open(os.path.join(self.dir, rel), "w") as f:
                f.write(text)
        self.commit(label)
        promote = ["promote", "--version", label, "--canary", "10", "--bake", "3s"]
        steps = [
            ("staging deploy", ["deploy-staging", "--version", label]),
            ("staging smoke", ["smoke-check", "--env", "staging", "--record", "--watch", "3s", "--interval", "1s", "--samples", "20"]),
            ("promote", promote),
            ("production smoke", ["smoke-check", "--env", "production", "--record", "--samples", "20"]),
        ]
        if forced:
            # Past staging whatever it says: only production's layers are measured.
            run(steps[0][1], self.dir, self.env)
            steps = [("promote", promote + ["--force", "--reason", "corpus: forced past staging"]), steps[3]]
        if restore_breaks:
            # Past the check before traffic and the canary too: production's smoke check fails it,
            # and the rollback's restore is what is measured.
            skip = ["--version", label, "--force", "--reason", "corpus", "--skip-pre-traffic", "corpus: the restore row"]
            steps = [("promote", ["promote", *skip]), steps[-1]]
        verdict, layer, said, decided = "passed", None, "", None
        for name, cmd in steps:
            code, out = run(cmd, self.dir, self.env)
            if code == 0:
                continue
            said = out.strip().splitlines()[-1][:300] if out.strip() else ""
            decided = re.search(r"after (\d+) candidate request", out)
            if code == 1:
                verdict = "stopped"
                layer = name
                if name == "promote":
                    layer = "before traffic" if "stopped before it took traffic" in out else (
                        "canary" if "failed its canary" in out else (
                            "promote: never healthy" if "did not become healthy" in out or "exited during start-up" in out
                            else "promote"))
            else:
                verdict, layer = "error", f"{name} exit {code}"
            break
        restore = None
        if restore_breaks and verdict == "stopped" and layer == "production smoke":
            restore = self.restore_that_cannot_serve()
        elif verdict == "stopped" and layer == "production smoke" or (bad and verdict == "passed"):
            code, out = run(["rollback", "--to", self.good, "--reason", "corpus"], self.dir, self.env)
            assert code == 0, f"rollback: {out}"
        if verdict == "passed" and not bad:
            self.good = label
        # Each version's files go back to the base's for the next run.
        if os.path.exists(os.path.join(self.dir, "static/styles.css")):
            os.remove(os.path.join(self.dir, "static/styles.css"))
        self.results.append({"label": label, "kind": kind, "bad": bad, "forced": forced, "verdict": verdict,
                             "layer": layer, "said": said, "from": started, "to": time.time(), "restore": restore,
                             "decided_after": int(decided.group(1)) if decided else None})
        return verdict, layer

    def restore_that_cannot_serve(self):
        """The good version to restore no longer serves its users (its data changed under it: a
        file in the data dir makes every page but /health and /version answer 500). Caught when
        rollback does not call it restored: it goes on to an older version that serves, or exits
        1; missed when it exits 0 while production fails its checks."""
        data = os.path.join(self.dir, ".state/local/envs/production/data")
        broken = os.path.join(data, f"break-{self.good}")
        open(broken, "w").close()
        code, out = run(["rollback", "--reason", "corpus: a restore that cannot serve"], self.dir, self.env)
        check, _ = run(["smoke-check", "--env", "production"], self.dir, self.env)
        outcome = "caught" if code != 0 or check == 0 else "missed"
        os.remove(broken)
        # Back to the good version, which serves again, and known good again by a recorded pass.
        for cmd in (["rollback", "--to", self.good, "--force", "--reason", "corpus: back to the good version"],
                    ["smoke-check", "--env", "production", "--record"]):
            c, o = run(cmd, self.dir, self.env)
            assert c == 0, f"{cmd}: {o}"
        return {"outcome": outcome, "rollback_exit": code, "said": out.strip().splitlines()[-1][:200] if out.strip() else ""}


def users(port, stop, seen):
    """Users on production: a page every 50 ms (bounded by the stop flag and an hour). A server
    error or no answer is a failure, put down to the version nginx says answered it (its
    X-Safedeploy-Version header), or to none; a 4xx (the 429 variant's rate limit) is not."""
    until = time.time() + 3600
    n = 0
    while not stop.is_set() and time.time() < until:
        n += 1
        page = "/about" if n % 2 else "/"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=5) as r:
                r.read()
            seen["ok"] += 1
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                seen["failed"] += 1
                seen.setdefault("by", []).append(e.headers.get("X-Safedeploy-Version", "-"))
            else:
                seen["ok"] += 1
        except Exception:  # noqa: BLE001 - no answer at all: nobody to put it down to
            seen["failed"] += 1
            seen.setdefault("by", []).append("-")
        time.sleep(0.05)


def main():
    plan = []
    for kind, edit in BAD.items():
        plan += [(kind, True, edit, False), (kind, True, edit, True)] * BAD_RUNS
    # The restore row: the incident's bad version forced in and failing production's check, and
    # the good version to restore unable to serve its users once restored.
    plan += [(RESTORE, True, BAD["500 only on POST (the incident)"], True)] * BAD_RUNS
    kinds = list(HEALTHY.items())
    plan += [(kinds[i % len(kinds)][0], False, kinds[i % len(kinds)][1], False) for i in range(HEALTHY_RUNS)]
    workers = [Worker(n) for n in range(WORKERS)]
    stop = threading.Event()
    seen = [{"ok": 0, "failed": 0} for _ in workers]
    user_threads = [threading.Thread(target=users, args=(w.production, stop, seen[i])) for i, w in enumerate(workers)]
    for t in user_threads:
        t.start()
    started = time.time()

    def drive(w, items):
        for i, (kind, bad, edit, forced) in enumerate(items):
            label = f"w{w.n}-{i}-{'bad' if bad else 'ok'}"
            verdict, layer = w.one(label, kind, bad, edit, forced, restore_breaks=kind == RESTORE)
            how = " (forced past staging)" if forced else ""
            print(f"  {label:<14} {kind + how:<56} {verdict}{' (' + layer + ')' if layer else ''}", flush=True)

    threads = [threading.Thread(target=drive, args=(w, plan[w.n::WORKERS])) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in user_threads:
        t.join()
    results = [r for w in workers for r in w.results]
    # Each failed user request is put down to the version that answered it.
    by_label = {r["label"]: r for r in results}
    unattributed = 0
    for sn in seen:
        for label in sn.get("by", []):
            if label in by_label:
                by_label[label]["users_failed"] = by_label[label].get("users_failed", 0) + 1
            else:
                unattributed += 1
    seen[0]["unattributed"] = unattributed
    json.dump(results, open(os.path.join(ROOT, "target", "accuracy.json"), "w"), indent=1)
    print(table(results, seen, time.time() - started))


def table(results, seen, took):
    lines = ["| version | runs | stopped, by layer | missed / falsely failed | users' failed requests | candidate requests the judge decided on |",
             "|---|---|---|---|---|---|"]
    rows = [(True, False, BAD, "bad"), (True, True, BAD, "bad, forced past staging"), (False, False, HEALTHY, "healthy")]
    for bad, forced, kinds, what in rows:
        for kind in kinds:
            rs = [r for r in results if r["kind"] == kind and r["bad"] == bad and r.get("forced", False) == forced]
            if not rs:
                continue
            layers = {}
            for r in rs:
                if r["verdict"] != "passed":
                    layers[r["layer"]] = layers.get(r["layer"], 0) + 1
            by = ", ".join(f"{n} {layer}" for layer, n in sorted(layers.items())) or "-"
            wrong = sum(1 for r in rs if (r["verdict"] == "passed") == bad)
            users_failed = sum(r.get("users_failed", 0) for r in rs)
            took_n = sorted(r["decided_after"] for r in rs if r.get("decided_after"))
            decided = f"median {took_n[len(took_n) // 2]} ({len(took_n)} run(s))" if took_n else "-"
            lines.append(f"| {what}: {kind} | {len(rs)} | {by} | {wrong} | {users_failed} | {decided} |")
    restores = [r["restore"] for r in results if r.get("restore")]
    if restores:
        caught = sum(1 for x in restores if x["outcome"] == "caught")
        lines.append(f"| restore: {RESTORE} | {len(restores)} | {caught} caught by the verified restore | "
                     f"{len(restores) - caught} | - | - |")
    missed = sum(1 for r in results if r["bad"] and r["verdict"] == "passed")
    false = sum(1 for r in results if not r["bad"] and r["verdict"] != "passed")
    nbad = sum(1 for r in results if r["bad"])
    nok = len(results) - nbad
    ok = sum(s["ok"] for s in seen)
    failed = sum(s["failed"] for s in seen)
    lines += [
        "",
        f"Missed bad versions: **{missed} of {nbad}** (goal 0). "
        f"False failures: **{false} of {nok}** healthy runs (goal 0).",
        f"Users' requests to production during the runs (a page every 50 ms per worker): {ok + failed}, "
        f"of which {failed} failed (5xx or no answer; {seen[0].get('unattributed', 0)} with no version to put "
        f"them down to). {len(results)} runs in {took / 60:.0f} min on {WORKERS} workers.",
    ]
    errors = [r for r in results if r["verdict"] == "error" or (r["verdict"] == "passed") == r["bad"]]
    for r in errors[:10]:
        lines.append(f"- {r['label']} ({r['kind']}): {r['verdict']} {r['layer'] or ''}: {r['said']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
