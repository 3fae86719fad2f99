"""Driven by scripts/migration-exposure: the migration scenarios of tests/migrations.rs under
users' load, with the tools on PATH (this checkout's, or an older build's).

    python3 scripts/migration-exposure.py ROOT WORK
"""

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT, WORK = sys.argv[1], sys.argv[2]
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
WEB = "gunicorn --bind 127.0.0.1:$PORT --workers 2 application:app"
MIGRATING_WEB = f"flask --app application db upgrade && exec {WEB}"

CONFIG = open(os.path.join(ROOT, "tests", "migrations.rs")).read().split('const CONFIG: &str = r#"', 1)[1].split('"#;', 1)[0]


def free_port():
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def sh(cwd, *args, ok=None):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "SAFEDEPLOY_STATE_DIR": os.path.join(cwd, "..", "state")})
    if ok is not None and r.returncode != ok:
        raise SystemExit(f"{' '.join(args)}: exit {r.returncode}, wanted {ok}\n{r.stdout}{r.stderr}")
    return r


def git(app, *args):
    sh(app, "git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args, ok=0)


def revision(app, name, rid, down, body):
    path = os.path.join(app, "migrations", "versions", name)
    with open(path, "w") as f:
        f.write(f'import sqlalchemy as sa\nfrom alembic import op\n\nrevision = "{rid}"\ndown_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n{body}\n\n\ndef downgrade():\n    pass\n')


def edit(app, old, new):
    path = os.path.join(app, "application.py")
    text = open(path).read()
    assert old in text, old
    open(path, "w").write(text.replace(old, new, 1))


def users(port, stop, seen):
    """Reads the front page and the newest post, a page every 50 ms."""
    while not stop.is_set():
        for path in ("/", "/posts/1"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    seen["ok"] += r.status < 500
            except urllib.error.HTTPError as e:
                seen["failed"] += e.code >= 500 and e.code != 404
                seen["ok"] += e.code < 500
            except Exception:
                seen["failed"] += 1
        time.sleep(0.05)


def scenario(name, procfile, change, promote_args):
    base = os.path.join(WORK, name.replace(" ", "-"))
    app, state = os.path.join(base, "app"), os.path.join(base, "state")
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "blog"), app)
    staging, production = free_port(), free_port()
    config = CONFIG.replace("{staging}", str(staging)).replace("{production}", str(production)).replace("{venv_bin}", VENV_BIN)
    open(os.path.join(app, "safedeploy.toml"), "w").write(config)
    open(os.path.join(app, "Procfile"), "w").write(procfile)
    git(app, "init", "-q", "-b", "main")
    git(app, "add", "-A")
    git(app, "commit", "-qm", "v1")
    sh(app, "deploy-staging", "--version", "v1", ok=0)
    sh(app, "smoke-check", "--env", "staging", "--record", ok=0)
    sh(app, "promote", ok=0)
    sh(app, "smoke-check", "--env", "production", "--record", ok=0)
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{production}/posts", data=b"title=hello&body=world"), timeout=5)
    change(app)
    git(app, "add", "-A")
    git(app, "commit", "-qm", "v2")
    sh(app, "deploy-staging", "--version", "v2")
    sh(app, "smoke-check", "--env", "staging", "--record")
    seen, stop = {"ok": 0, "failed": 0}, threading.Event()
    t = threading.Thread(target=users, args=(production, stop, seen))
    t.start()
    time.sleep(1)
    r = sh(app, "promote", "--version", "v2", *promote_args)
    time.sleep(2)
    stop.set()
    t.join()
    db = sqlite3.connect(os.path.join(state, "ledger.sqlite3"))
    incidents, charged = db.execute("SELECT COUNT(*), COALESCE(SUM(downtime_ms), 0) FROM incidents").fetchone()
    open_ = db.execute("SELECT COUNT(*) FROM incidents WHERE restored_at IS NULL").fetchone()[0]
    said_no_downtime = "no downtime" in (r.stdout + r.stderr)
    print(f"| {name} | {seen['failed']} of {seen['ok'] + seen['failed']} | exit {r.returncode} | {incidents} ({open_} open) | {charged / 1000:.1f} s | {'yes' if said_no_downtime else 'no'} |", flush=True)
    subprocess.run(["safedeploy", "stop", "staging"], cwd=app, capture_output=True, env={**os.environ, "SAFEDEPLOY_STATE_DIR": state})
    subprocess.run(["safedeploy", "stop", "production"], cwd=app, capture_output=True, env={**os.environ, "SAFEDEPLOY_STATE_DIR": state})


def rename(app):
    revision(app, "0002_rename.py", "0002", "0001", '    with op.batch_alter_table("post") as batch_op:\n        batch_op.alter_column("body", new_column_name="content")')
    edit(app, "body = db.Column(db.Text, nullable=False)", 'body = db.Column("content", db.Text, nullable=False)')


def drop_with_a_bug(app):
    revision(app, "0002_drop.py", "0002", "0001", '    with op.batch_alter_table("post") as batch_op:\n        batch_op.drop_column("body")')
    edit(app, "    body = db.Column(db.Text, nullable=False)\n", "")


def check_drops_the_table(app):
    edit(app, '    post = Post(title=request.form["title"], body=request.form["body"])\n', '    db.session.execute(text("DROP TABLE post"))\n    db.session.commit()\n    abort(500)\n')


print("| scenario | users' failed requests | promote | incidents | charged | said \"no downtime\" |")
print("|---|---|---|---|---|---|")
scenario("rename, migrated by the web line", f"web: {MIGRATING_WEB}\n", rename, [])
scenario("drop, migrated by the web line, version buggy (forced)", f"web: {MIGRATING_WEB}\n", drop_with_a_bug, ["--force", "--reason", "measure"])
scenario("the check's POST drops the table (forced)", f"web: {MIGRATING_WEB}\n", check_drops_the_table, ["--force", "--reason", "measure"])
