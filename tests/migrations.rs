//! Versions that change shared data: a blog on Flask, SQLAlchemy and Alembic
//! (tests/fixtures/blog) whose versions migrate one SQLite database per environment. The
//! release phase runs each version's migrations once per environment before it starts; the
//! version users are served is watched while anything that can change their data runs; the
//! gate classes each new migration expand or contract.

use crate::support::{Project, output};

const CONFIG: &str = r#"
[app]
name = "blog"
source_dir = "."

[platform]
kind = "local"

[build]
command = "true"
path = ["{venv_bin}"]

[gate]
command = ["{venv_bin}/python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=reports/junit.xml"]
junit = "reports/junit.xml"

[deploy]
health_path = "/health"
health_timeout = "15s"
stop_grace = "3s"

[environments.staging]
url = "http://127.0.0.1:{staging}"

[environments.production]
url = "http://127.0.0.1:{production}"

[smoke]
deadline = "8s"
version_path = "/version"

[[smoke.chains]]
name = "write and read a post"

[[smoke.chains.checks]]
name = "write a post"
method = "POST"
path = "/posts"
form = { title = "smoke {{run_id}}", body = "checked" }
expect_status = [201]
capture = { id = { json = "$.id" } }

[[smoke.chains.checks]]
name = "read it back"
path = "/posts/{{id}}"
expect_status = [200]
json_equals = { "$.title" = "smoke {{run_id}}" }

[[smoke.chains]]
name = "the front page"

[[smoke.chains.checks]]
name = "posts are listed"
path = "/"
expect_status = [200]

[sla]
environments = ["production"]
"#;

fn blog() -> Project {
    Project::fixture("blog", CONFIG)
}

/// An Alembic revision `id` after `down`, whose upgrade is `body` (Python, indented).
fn revision(p: &Project, file: &str, id: &str, down: &str, body: &str) {
    p.write(
        &format!("migrations/versions/{file}"),
        &format!(
            "\"\"\"{file}\"\"\"\nimport sqlalchemy as sa\nfrom alembic import op\n\nrevision = \"{id}\"\ndown_revision = \"{down}\"\nbranch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n{body}\n\n\ndef downgrade():\n    pass\n"
        ),
    );
}

/// Replaces `from` with `to` in the app's application.py (it must be there).
fn edit_app(p: &Project, from: &str, to: &str) {
    let path = p.app.join("application.py");
    let text = std::fs::read_to_string(&path).expect("application.py");
    assert!(text.contains(from), "application.py lacks {from:?}");
    std::fs::write(&path, text.replace(from, to)).expect("write application.py");
}

/// Revision `id` adds a nullable column `tags`, and the model maps it: an expand.
fn add_tags(p: &Project, id: &str, down: &str) {
    revision(
        p,
        &format!("{id}_add_tags.py"),
        id,
        down,
        "    op.add_column(\"post\", sa.Column(\"tags\", sa.String(100), nullable=True))",
    );
    edit_app(
        p,
        "    body = db.Column(db.Text, nullable=False)\n",
        "    body = db.Column(db.Text, nullable=False)\n    tags = db.Column(db.String(100))\n",
    );
}

/// Revision `id` renames `body` to `content` (line 13 of its file), and the model follows: a
/// contract the version before it cannot read.
fn rename_body(p: &Project, id: &str, down: &str) {
    revision(
        p,
        &format!("{id}_rename_body.py"),
        id,
        down,
        "    with op.batch_alter_table(\"post\") as batch_op:\n        batch_op.alter_column(\"body\", new_column_name=\"content\")",
    );
    edit_app(p, "body = db.Column(db.Text, nullable=False)", "body = db.Column(\"content\", db.Text, nullable=False)");
}

fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The gate's check named `name` in a `--json` document.
fn gate_check(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    doc["checks"].as_array().expect("checks").iter().find(|c| c["name"] == name).cloned().expect(name)
}

#[test]
fn an_additive_migration_is_released_once_per_environment_promoted_and_rolled_back_cleanly() {
    let p = blog();
    let v1_commit = p.git(&["rev-parse", "HEAD"]);
    p.v1_everywhere();
    assert_eq!(
        p.query_strings("SELECT env || ' ' || label || ' ' || exit FROM releases WHERE ok = 1 ORDER BY id"),
        ["staging v1 exit status 0", "production v1 exit status 0"],
        "v1's release ran once in each environment, before it started"
    );

    // v2 adds a nullable column: the version before it works on the migrated schema.
    add_tags(&p, "0002", "0001");
    p.commit_all("Posts get tags", "Team");
    let a = p.cmd("gate-tests").args(["--base", &v1_commit, "--json"]).assert().success();
    let (out, _) = output(&a);
    let check = gate_check(&json_of(&out), "migrations");
    assert_eq!(check["status"], "passed", "{check}");
    assert!(check["summary"].as_str().unwrap_or_default().contains("all expand"), "{check}");

    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let a = p.cmd("promote").args(["--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(
        err.contains("production: running v2's release before it starts: flask --app application db upgrade"),
        "{err}"
    );
    assert!(err.contains("v2's release passed"), "{err}");
    assert!(!err.contains("users met"), "{err}");
    let doc = json_of(&out);
    assert_eq!(doc["release"]["exit"], "exit status 0", "{doc}");
    assert_eq!(
        p.query_i64(
            "SELECT COUNT(*) FROM deployments d JOIN releases r ON r.id = d.release_id
             WHERE d.env = 'production' AND d.label = 'v2' AND r.label = 'v2' AND r.ok = 1"
        ),
        1,
        "the deployment records the release that ran before it"
    );
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();

    // Back to v1 on the migrated schema: it serves its users (the restore is verified).
    let a = p.cmd("rollback").args(["--env", "production", "--to", "v1"]).assert().success();
    let (out, _) = output(&a);
    assert!(out.contains("production: v1 restored in"), "{out}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    // And forward again: v2's release already ran in production; it does not run twice.
    p.cmd("promote").args(["--version", "v2"]).assert().success();
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM releases WHERE env = 'production' AND label = 'v2'"), 1);
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents WHERE cause = 'release'"), 0);
}

#[test]
fn a_rename_migrated_by_the_web_line_is_a_contract_at_the_gate_and_an_incident_when_promoted() {
    let p = blog();
    // The common pattern: the web line migrates as it starts.
    p.write(
        "Procfile",
        "web: flask --app application db upgrade && exec gunicorn --bind 127.0.0.1:$PORT --workers 2 application:app\n",
    );
    p.commit_all("Migrate as the app starts", "Team");
    let a = p.cmd("safedeploy").arg("check").assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("the Procfile's web: line runs a migrator (`flask db upgrade`)"), "{err}");
    assert!(err.contains("move it to a `release:` line"), "{err}");
    let v1_commit = p.git(&["rev-parse", "HEAD"]);
    p.v1_everywhere();

    // v2 renames body to content: v1 reads a column that is gone.
    rename_body(&p, "0002", "0001");
    p.commit_all("Rename body to content", "Team");
    let a = p.cmd("gate-tests").args(["--base", &v1_commit, "--json"]).assert().code(1);
    let (out, err) = output(&a);
    assert!(err.contains("migrations/versions/0002_rename_body.py:13: renames a column"), "{err}");
    let check = gate_check(&json_of(&out), "migrations");
    assert_eq!(check["status"], "failed", "{check}");
    // --allow-untested does not waive it; --allow-contract does, recorded.
    p.cmd("gate-tests").args(["--base", &v1_commit, "--allow-untested", "x"]).assert().code(1);
    for empty in ["", " "] {
        p.cmd("gate-tests").args(["--base", &v1_commit, "--allow-contract", empty]).assert().code(2);
    }
    p.cmd("gate-tests").args(["--base", &v1_commit, "--allow-contract", "two-phase by hand"]).assert().success();
    assert_eq!(p.query_strings("SELECT checks || ': ' || reason FROM gate_waivers"), ["migrations: two-phase by hand"]);

    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    // The candidate's start migrates production's data beside v1, which users are served: the
    // watch sees v1 fail; v2 passed its own check, so the promote rolls forward.
    let a = p.cmd("promote").assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("users met v2's change before it took traffic: v1 failed its checks from"), "{err}");
    assert!(err.contains("rolled forward: v2 passed its own check"), "{err}");
    assert!(!err.contains("no downtime"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    assert_eq!(
        p.query_strings(
            "SELECT bad_label || ' ' || restored_label FROM incidents WHERE cause = 'release' AND downtime_ms > 0"
        ),
        ["v2 v2"],
        "one incident, charged from the candidate's start to the switch"
    );
    assert_eq!(
        p.query_i64(
            "SELECT passed FROM verifications WHERE env = 'production' AND label = 'v1' ORDER BY id DESC LIMIT 1"
        ),
        0,
        "v1 cannot serve the migrated data: its newest verdict there is a failure"
    );
}

#[test]
fn a_drop_whose_version_fails_its_check_leaves_an_open_incident_and_exit_3() {
    let p = blog();
    p.v1_everywhere();
    // v2 drops body in its release, and its own pages still use it: neither version serves.
    revision(
        &p,
        "0002_drop_body.py",
        "0002",
        "0001",
        "    with op.batch_alter_table(\"post\") as batch_op:\n        batch_op.drop_column(\"body\")",
    );
    edit_app(&p, "    body = db.Column(db.Text, nullable=False)\n", "");
    p.commit_all("Drop body", "Team");
    let a = p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("staging: v1, which users are served, fails its checks since the change began at"), "{err}");
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().code(1);
    let a = p.cmd("promote").args(["--version", "v2", "--force", "--reason", "test"]).assert().code(3);
    let (_, err) = output(&a);
    assert!(err.contains("production is not served: v2's release or start changed the shared data, and v1"), "{err}");
    assert!(err.contains("v2 cannot take over: it failed its own check before traffic"), "{err}");
    assert!(!err.contains("no downtime"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"), "nothing was switched");
    assert_eq!(
        p.query_i64(
            "SELECT COUNT(*) FROM incidents WHERE cause = 'release' AND restored_at IS NULL AND bad_label = 'v2'"
        ),
        1,
        "the incident stays open"
    );
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE label = 'v2' AND bad_at IS NOT NULL"), 1);
    let a = p.cmd("safedeploy").args(["status", "--env", "production", "--json"]).assert().success();
    let (out, _) = output(&a);
    let doc = json_of(&out);
    assert_eq!(doc["environments"][0]["healthy"], false, "{doc}");
    assert_eq!(doc["environments"][0]["open_incidents"], 1, "{doc}");
}

#[test]
fn a_failed_release_starts_nothing_and_is_exit_1() {
    let p = blog();
    p.v1_everywhere();
    p.write(
        "Procfile",
        "release: test \"$SAFEDEPLOY_ENV\" != production || { echo '0002: disk full' >&2; exit 3; }; flask --app application db upgrade\nweb: gunicorn --bind 127.0.0.1:$PORT --workers 2 application:app\n",
    );
    p.commit_all("A release that fails in production", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let a = p.cmd("promote").assert().code(1);
    let (_, err) = output(&a);
    assert!(
        err.contains("v2's release failed in production (exit status 3) and v2 was not started; v1 still serves, and still passes its checks"),
        "{err}"
    );
    assert!(err.contains("0002: disk full"), "the release's output is said: {err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(
        p.query_strings("SELECT exit FROM releases WHERE env = 'production' AND label = 'v2' AND ok = 0"),
        ["exit status 3"]
    );
    assert_eq!(
        p.query_strings("SELECT outcome FROM deployments WHERE env = 'production' AND label = 'v2'"),
        ["failed"]
    );
    let state = std::fs::read_to_string(p.state.join("local/envs/production/state.json")).expect("state");
    assert!(state.contains("\"label\":\"v1\"") || state.contains("\"label\": \"v1\""), "{state}");
    assert!(
        !p.state.join("local/envs/production/starting.json").exists() || {
            let s = std::fs::read_to_string(p.state.join("local/envs/production/starting.json")).unwrap_or_default();
            !s.contains("v2")
        }
    );
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0, "users met nothing of it");

    // A release that fails everywhere stops deploy-staging the same way.
    p.write(
        "Procfile",
        "release: echo 'migrating'; exit 4\nweb: gunicorn --bind 127.0.0.1:$PORT --workers 2 application:app\n",
    );
    p.commit_all("A release that always fails", "Team");
    let a = p.cmd("deploy-staging").args(["--version", "v3"]).assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("v3's release failed in staging (exit status 4); v3 was not started"), "{err}");
    assert_eq!(p.served_version("staging").as_deref(), Some("v2"));
}

#[test]
fn what_a_candidates_check_writes_never_reaches_the_users_data() {
    let p = blog();
    p.v1_everywhere();
    // v2 answers its check's POST by dropping the table its users read, then failing.
    edit_app(
        &p,
        "    post = Post(title=request.form[\"title\"], body=request.form[\"body\"])\n",
        "    db.session.execute(text(\"DROP TABLE post\"))\n    db.session.commit()\n    abort(500)\n    post = Post(title=request.form[\"title\"], body=request.form[\"body\"])\n",
    );
    p.commit_all("Drop the posts on a write", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let a = p.cmd("promote").args(["--version", "v2", "--force", "--reason", "test"]).assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("v2 is checked before traffic on a copy of production's data dir"), "{err}");
    assert!(
        err.contains(
            "v2 was stopped before it took traffic in production (v1 still serves and passes its checks; no downtime)"
        ),
        "{err}"
    );
    // The users' data is whole: v1 passes its checks, and nothing of the copy is left.
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    let left: Vec<String> = std::fs::read_dir(p.state.join("local/envs/production"))
        .expect("env dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("check-data-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
}

#[test]
fn a_contract_passes_the_gate_by_the_two_phase_rule_only_once_its_release_is_production_s_known_good() {
    let p = blog();
    p.v1_everywhere();
    // v2, the expand half: its pages stop showing body.
    edit_app(&p, "return jsonify(title=post.title, body=post.body)", "return jsonify(title=post.title)");
    p.commit_all("Stop showing body", "Team");
    let v2_commit = p.git(&["rev-parse", "HEAD"]);
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    p.cmd("promote").assert().success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();

    // The contract half names v2, production's last known good: safe.
    revision(
        &p,
        "0002_drop_body.py",
        "0002",
        "0001",
        "    with op.batch_alter_table(\"post\") as batch_op:\n        batch_op.drop_column(\"body\")",
    );
    p.commit_all("Drop body\n\nContract-After: v2", "Team");
    let a = p.cmd("gate-tests").args(["--base", &v2_commit, "--json"]).assert().success();
    let (out, _) = output(&a);
    let check = gate_check(&json_of(&out), "migrations");
    assert_eq!(check["status"], "passed", "{check}");
    assert!(
        check["summary"].as_str().unwrap_or_default().contains("1 contract(s) safe by the two-phase rule"),
        "{check}"
    );

    // Naming a release production does not run yet: not safe.
    p.git(&["-c", "user.name=Team", "commit", "-q", "--amend", "-m", "Drop body\n\nContract-After: v9"]);
    let a = p.cmd("gate-tests").args(["--base", &v2_commit]).assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("migrations/versions/0002_drop_body.py:13: drops a column"), "{err}");
    assert!(err.contains("Contract-After: v9, but production's last known good is v2: promote v9 first"), "{err}");
}

#[test]
fn a_rollback_rehearsal_in_staging_decides_whether_a_version_may_reach_production() {
    let p = blog();
    p.v1_everywhere();
    // v2 adds a column: production's v1 still serves on v2's migrated data.
    add_tags(&p, "0002", "0001");
    p.commit_all("Posts get tags", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("staging: rehearsing a rollback from v2 to v1 (production's last known good)"), "{err}");
    assert!(out.contains("staging: rollback-safe: v1 serves its users on v2's migrated data"), "{out}");
    p.cmd("promote").assert().success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();

    // v3 renames body: production's v2 cannot read v3's migrated data.
    rename_body(&p, "0003", "0002");
    p.commit_all("Rename body to content", "Team");
    p.cmd("deploy-staging").args(["--version", "v3"]).assert().success();
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("staging: a rollback from v3 to v2 would fail: v2 fails on v3's data"), "{err}");
    assert_eq!(
        p.query_strings("SELECT label || ' ' || target || ' ' || ok FROM rehearsals ORDER BY id"),
        ["v2 v1 1", "v3 v2 0"]
    );
    let a = p.cmd("promote").assert().code(1);
    let (_, err) = output(&a);
    assert!(
        err.contains(
            "refusing to promote v3 to production: a rollback from v3 to v2 would fail (rehearsed in staging:"
        ),
        "{err}"
    );
    // --force is no answer to that; only its own word is.
    p.cmd("promote").args(["--force", "--reason", "x"]).assert().code(1);
    assert_eq!(p.served_version("production").as_deref(), Some("v2"), "nothing changed");
    let a = p.cmd("promote").args(["--accept-irreversible", "renamed on purpose"]).assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("only a roll forward is possible afterwards — reason: renamed on purpose"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v3"));
    assert_eq!(
        p.query_strings("SELECT reason FROM deployments WHERE env = 'production' AND label = 'v3'"),
        ["irreversible accepted: renamed on purpose"]
    );
    let a = p.cmd("safedeploy").args(["status", "--env", "production"]).assert().success();
    let (out, _) = output(&a);
    assert!(
        out.contains(
            "ROLL FORWARD ONLY: promoted though a rehearsed rollback from it would fail (accepted: renamed on purpose)"
        ),
        "{out}"
    );
}

#[test]
fn on_postgresql_the_watch_is_the_evidence_that_a_candidates_start_broke_the_live_version() {
    let pg = crate::pg::Postgres::start();
    for db in ["blog_staging", "blog_production"] {
        pg.create_db(db);
    }
    // Each environment's database on the server; nothing of it is in the data dir to copy.
    let config = CONFIG
        .replace(
            "url = \"http://127.0.0.1:{staging}\"",
            &format!(
                "url = \"http://127.0.0.1:{{staging}}\"\nenv = {{ DATABASE_URL = \"{}\" }}",
                pg.url("blog_staging")
            ),
        )
        .replace(
            "url = \"http://127.0.0.1:{production}\"",
            &format!(
                "url = \"http://127.0.0.1:{{production}}\"\nenv = {{ DATABASE_URL = \"{}\" }}",
                pg.url("blog_production")
            ),
        );
    let p = Project::fixture("blog", &config);
    p.write(
        "Procfile",
        "web: flask --app application db upgrade && exec gunicorn --bind 127.0.0.1:$PORT --workers 2 application:app\n",
    );
    p.commit_all("Migrate as the app starts", "Team");
    p.v1_everywhere();
    assert_eq!(pg.sql("blog_production", "SELECT version_num FROM alembic_version"), "0001");
    assert!(!p.state.join("local/envs/production/data/blog.db").exists(), "the data is on the server");

    rename_body(&p, "0002", "0001");
    p.commit_all("Rename body to content", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    // The check on a copy of the data dir does not keep the candidate off the server: its start
    // renames the column v1 reads. The watch sees v1 fail; v2 passed, so the promote rolls forward.
    let a = p.cmd("promote").assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("its database server (DATABASE_URL) is not copied"), "{err}");
    assert!(err.contains("users met v2's change before it took traffic: v1 failed its checks from"), "{err}");
    assert!(!err.contains("no downtime"), "{err}");
    assert_eq!(
        pg.sql(
            "blog_production",
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'post' ORDER BY column_name"
        ),
        "content\nid\ntitle"
    );
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents WHERE cause = 'release' AND downtime_ms > 0"), 1);
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));

    // A release on the server: a rollback cannot be rehearsed on a copy, and says why.
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    p.write(
        "Procfile",
        "release: flask --app application db upgrade\nweb: gunicorn --bind 127.0.0.1:$PORT --workers 2 application:app\n",
    );
    // The column only: the model already renamed body.
    revision(
        &p,
        "0003_add_tags.py",
        "0003",
        "0002",
        "    op.add_column(\"post\", sa.Column(\"tags\", sa.String(100), nullable=True))",
    );
    p.commit_all("Tags, migrated by a release", "Team");
    p.cmd("deploy-staging").args(["--version", "v3"]).assert().success();
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let (_, err) = output(&a);
    assert!(
        err.contains("a rollback from v3 to v2 cannot be rehearsed: its app reaches a database server (DATABASE_URL), which is not copied"),
        "{err}"
    );
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM rehearsals"), 0);
    assert_eq!(pg.sql("blog_staging", "SELECT version_num FROM alembic_version"), "0003");
}
