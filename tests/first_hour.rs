//! A new user's first hour on a real-shaped Flask app (tests/fixtures/members): SQLite beside
//! the code by default, a flat unittest `tests.py`, form logins with a CSRF token and a session
//! cookie, a Procfile binding 0.0.0.0, a SECRET_KEY the app reads from its environment. Each
//! test walks one trap of that hour and checks where it leads now.

use crate::support::{Project, agent_path, fast_build, output};

/// The lines init prints for a Flask health route, as the user pastes them.
const HEALTH_ROUTE: &str = "\n\n@app.route(\"/health\")\ndef health():\n    return {\"status\": \"ok\"}\n";
const HEALTH_TEST: &str = "\n\ndef test_health():\n    assert app.test_client().get(\"/health\").status_code == 200\n";

const SECRET: &str = "members-secret-4f9a1c77e2";

/// The fixture with init's config, the health route init printed added, committed: init's
/// config unchanged but for its ports and its build (the shared test venv, not PyPI).
fn adopted() -> Project {
    let p = Project::fixture("members", "");
    let ports = format!("{},{}", p.staging_port, p.production_port);
    p.cmd("safedeploy").args(["init", "--ports", &ports]).assert().success();
    append(&p, "app.py", HEALTH_ROUTE);
    append(&p, "tests.py", HEALTH_TEST);
    p.cmd("safedeploy").args(["init", "--force", "--ports", &ports]).assert().success();
    fast_build(&p);
    p.commit_all("safedeploy init, and the health route it printed", "New User");
    p
}

fn append(p: &Project, rel: &str, text: &str) {
    let path = p.app.join(rel);
    let mut body = std::fs::read_to_string(&path).expect("read");
    body.push_str(text);
    std::fs::write(path, body).expect("write");
}

/// The versions the ledger holds (none when there is no ledger yet).
fn versions(p: &Project) -> i64 {
    if p.state.join("ledger.sqlite3").exists() { p.query_i64("SELECT COUNT(*) FROM versions") } else { 0 }
}

fn stats(p: &Project, env: &str) -> serde_json::Value {
    let (status, body) = p.get(env, "/stats").expect("the app answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// Registers a person through the app's own form, as a browser would.
fn register(p: &Project, env: &str, name: &str) {
    let client = reqwest::blocking::Client::builder().cookie_store(true).build().expect("client");
    let page = client.get(format!("{}/register", p.url(env))).send().expect("page").text().expect("text");
    let token = page.split("name=\"csrf_token\" value=\"").nth(1).and_then(|t| t.split('"').next()).expect("token");
    let r = client
        .post(format!("{}/register", p.url(env)))
        .form(&[("name", name), ("password", "pw"), ("csrf_token", token)])
        .send()
        .expect("register");
    assert!(r.status().is_success(), "{}", r.status());
}

#[test]
fn init_finds_the_name_tests_data_secrets_and_the_missing_health_route() {
    let p = Project::fixture("members", "");
    let ports = format!("{},{}", p.staging_port, p.production_port);
    let a = p.cmd("safedeploy").args(["init", "--ports", &ports, "--json"]).assert().success();
    let (out, err) = output(&a);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let f = &doc["findings"];
    assert_eq!((f["name"].as_str(), f["name_from"].as_str()), (Some("members"), Some("pyproject.toml")), "{f:#}");
    assert_eq!(f["tests"], "pytest: tests.py");
    assert_eq!(f["test_args"], serde_json::json!(["tests.py"]), "pytest's own discovery skips tests.py");
    assert_eq!(f["secrets"], serde_json::json!(["SECRET_KEY"]));
    for said in [
        "data: app.py:17 keeps a SQLite database beside the code (app.db)",
        "warning: the Procfile's web: line binds every interface (gunicorn --bind 0.0.0.0:$PORT app:app)",
        "warning: no health route found",
        "@app.route(\"/health\")",
        "def test_health():",
    ] {
        assert!(err.contains(said), "{said}:\n{err}");
    }
    let text = std::fs::read_to_string(p.config_path()).expect("written");
    for line in [
        "name = \"members\"",
        r#"command = ["python3", "-m", "pytest", "-q", "--junitxml=reports/junit.xml", "tests.py"]"#,
        r#"DATABASE_URL = "sqlite:///${SAFEDEPLOY_DATA_DIR}/app.db""#,
        r#"SECRET_KEY = { from_env = "SECRET_KEY" }"#,
        "follow_redirects = true",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    assert!(!text.contains("gate.tests") && !text.contains("\ntests = "), "the default globs cover tests.py:\n{text}");

    // check says the same of the web line, and nothing of the data init placed.
    let a = p.cmd("safedeploy").arg("check").assert().success();
    let err = output(&a).1;
    assert!(err.contains("binds every interface"), "{err}");
    assert!(!err.contains("SQLite"), "{err}");

    // The gate init wrote runs the flat unittest file, and a change to tests.py counts as one.
    fast_build(&p);
    p.commit_all("safedeploy init", "New User");
    append(&p, "app.py", "\n# a comment\n");
    p.commit_all("an app change alone", "New User");
    let a = p.cmd("gate-tests").env("PATH", agent_path()).args(["--base", "HEAD~1"]).assert().code(1);
    assert!(output(&a).1.contains("no test file"), "{}", output(&a).1);
    append(&p, "tests.py", "\n# and its test\n");
    p.commit_all("an app change with its test", "New User");
    let a = p.cmd("gate-tests").env("PATH", agent_path()).args(["--base", "HEAD~2"]).assert().success();
    let (out, err) = output(&a);
    assert!(format!("{out}{err}").contains("gate: passed — 3 tests executed"), "{out}{err}");
}

#[test]
fn a_config_that_loses_the_data_or_names_an_unknown_variable_is_said_before_any_deploy() {
    let p = adopted();
    // The data path left to the app's default: check says the next deploy loses it.
    let text = std::fs::read_to_string(p.config_path()).expect("config");
    p.edit_config(|c| {
        c.replace(r#"DATABASE_URL = "sqlite:///${SAFEDEPLOY_DATA_DIR}/app.db""#, r#"DATABASE_URL = "sqlite:///app.db""#)
    });
    let err = output(&p.cmd("safedeploy").arg("check").assert().success()).1;
    assert!(
        err.contains(
            "environments.staging.env.DATABASE_URL = \"sqlite:///app.db\" is a path in the version's working copy"
        ),
        "{err}"
    );
    p.edit_config(|_| text.replace("DATABASE_URL = \"sqlite:///${SAFEDEPLOY_DATA_DIR}/app.db\"\n", ""));
    let err = output(&p.cmd("safedeploy").arg("check").assert().success()).1;
    assert!(
        err.contains("environments.production.env.DATABASE_URL is not set, so the app's default (app.py:17)"),
        "{err}"
    );

    // Any ${…} but the four the platform fills is exit 2 at load, naming file, line and field.
    for bad in ["${HOME}/app.db", "${SAFEDEPLOY_DATA_DIR", "${}", "${port}"] {
        p.edit_config(|_| text.replacen("${SAFEDEPLOY_DATA_DIR}/app.db", bad, 1));
        let a = p.cmd("deploy-staging").args(["--version", "v1"]).env("SECRET_KEY", SECRET).assert().code(2);
        let err = output(&a).1;
        assert!(
            err.contains("safedeploy.toml:") && err.contains("environments.staging.env.DATABASE_URL"),
            "{bad}: {err}"
        );
        assert_eq!(versions(&p), 0, "{bad}: nothing built");
    }
}

#[test]
fn the_data_survives_redeploys_and_the_secret_reaches_the_app_from_the_shell_only() {
    let p = adopted();
    let mut said = String::new();
    let mut keep = |a: &assert_cmd::assert::Assert| {
        let (out, err) = output(a);
        said.push_str(&out);
        said.push_str(&err);
    };
    // Without the secret in the deploying shell: exit 2, nothing built or started.
    let a = p.cmd("deploy-staging").args(["--version", "v1"]).assert().code(2);
    let err = output(&a).1;
    assert!(
        err.contains(
            "environments.staging.env.SECRET_KEY: from_env = \"SECRET_KEY\", which the deploying shell does not set"
        ),
        "{err}"
    );
    assert!(err.contains("withCredentials"), "{err}");
    assert_eq!(versions(&p), 0);
    assert!(p.get("staging", "/health").is_none(), "nothing started");

    keep(&p.cmd("deploy-staging").args(["--version", "v1", "-v"]).env("SECRET_KEY", SECRET).assert().success());
    register(&p, "staging", "ann");
    assert_eq!(stats(&p, "staging")["users"], 1);
    // The database is in the environment's data dir, not in the version's working copy.
    let db: Vec<_> = glob::glob(&format!("{}/**/app.db", p.state.display())).expect("glob").flatten().collect();
    assert_eq!(db.len(), 1, "{db:?}");
    assert!(db[0].parent().is_some_and(|d| d.ends_with("staging/data")), "{db:?}");

    // A new version, then the first again (no --commit: the ledger knows v1's): ann stays.
    append(&p, "app.py", "\n# v2\n");
    p.commit_all("v2", "New User");
    keep(&p.cmd("deploy-staging").args(["--version", "v2"]).env("SECRET_KEY", SECRET).assert().success());
    assert_eq!(stats(&p, "staging")["users"], 1, "v2 met v1's data");
    let a = p.cmd("deploy-staging").args(["--version", "v1"]).env("SECRET_KEY", SECRET).assert().success();
    keep(&a);
    assert!(output(&a).1.contains("v1 is known: deploying its commit"), "{}", output(&a).1);
    assert_eq!(stats(&p, "staging")["users"], 1, "v1 again met the same data");
    // A label is still one commit: naming another is refused.
    p.cmd("deploy-staging").args(["--version", "v1", "--commit", "HEAD"]).env("SECRET_KEY", SECRET).assert().code(2);

    // The secret is in no output, and nowhere in the state dir in clear (the app got it: it
    // signs the session it answered with).
    keep(&p.cmd("safedeploy").args(["check"]).env("SECRET_KEY", SECRET).assert().success());
    keep(&p.cmd("safedeploy").args(["status", "--json"]).env("SECRET_KEY", SECRET).assert().success());
    let hunt = p.state.join("hunt.txt");
    let hunt_arg = hunt.display().to_string();
    keep(
        &p.cmd("collect-logs")
            .args(["--env", "staging", "--since", "1h", "--out", &hunt_arg])
            .env("SECRET_KEY", SECRET)
            .assert(),
    );
    assert!(hunt.is_file(), "collect-logs wrote its report");
    assert!(!said.is_empty() && !said.contains(SECRET), "the secret was printed");
    for file in walkdir(&p.state) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the secret in clear",
            file.display()
        );
    }
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().expect("type");
        if t.is_dir() {
            out.extend(walkdir(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

/// The journey a team writes for the app: register (the CSRF token captured, the session
/// cookie kept by the chain's jar), post, read it back; the cleanup deletes both.
const JOURNEY: &str = r#"
[[smoke.checks]]
name = "the register page"
path = "/register"
capture.csrf = { regex = 'name="csrf_token" value="([^"]+)"' }
capture.session_cookie = { header = "set-cookie", regex = '^session=([^;]+)' }

[[smoke.checks]]
name = "register"
method = "POST"
path = "/register"
form = { name = "check-{{run_id}}", password = "pw-{{run_id}}", csrf_token = "{{csrf}}" }
expect_status = [302]

[[smoke.checks]]
name = "post a note"
method = "POST"
path = "/posts"
form = { body = "hello from {{run_id}}", csrf_token = "{{csrf}}" }
expect_status = [302]
capture.post = { header = "location", regex = '/posts/(\d+)$' }

[[smoke.checks]]
name = "read it back"
path = "/posts/{{post}}"
body_contains = "hello from {{run_id}}"

[[smoke.cleanup]]
name = "delete the note"
method = "POST"
path = "/posts/{{post}}/delete"
form = { csrf_token = "{{csrf}}" }
expect_status = [302]

[[smoke.cleanup]]
name = "delete the account"
method = "POST"
path = "/account/delete"
form = { csrf_token = "{{csrf}}" }
expect_status = [302]
"#;

#[test]
fn the_smoke_journey_logs_in_with_its_jar_and_its_cleanup_leaves_no_check_data() {
    let p = adopted();
    p.edit_config(|c| {
        c.replace(
            "\n[[smoke.checks]]\nname = \"the home page answers\"",
            &format!("{JOURNEY}\n[[smoke.checks]]\nname = \"the home page answers\""),
        )
    });
    // check shows where a capture reads from, whatever the capture is called.
    let out = output(&p.cmd("safedeploy").arg("check").assert().success()).0;
    assert!(out.contains("header = \"set-cookie\""), "{out}");
    p.cmd("deploy-staging").args(["--version", "v1"]).env("SECRET_KEY", SECRET).assert().success();
    register(&p, "staging", "ann");

    for round in 0..2 {
        let a = p
            .cmd("smoke-check")
            .args(["--env", "staging", "--record", "-v"])
            .env("SECRET_KEY", SECRET)
            .assert()
            .success();
        let err = output(&a).1;
        assert!(err.contains("ok   checks / read it back"), "round {round}: {err}");
        assert!(err.contains("cleanup \"delete the account\": POST"), "round {round}: {err}");
        assert_eq!(
            stats(&p, "staging"),
            serde_json::json!({"users": 1, "posts": 0}),
            "round {round}: only ann is left"
        );
    }
    // The checks' requests say they are the checks' and whose run: the app logs them apart.
    let logs: Vec<_> =
        glob::glob(&format!("{}/**/staging/app.log", p.state.display())).expect("glob").flatten().collect();
    let log = std::fs::read_to_string(logs.first().expect("app.log")).expect("log");
    let marked: Vec<&str> = log.lines().filter(|l| l.contains("check traffic: run ")).collect();
    assert!(marked.len() >= 2 * 7, "every request of both rounds is marked: {marked:?}");
    assert!(marked.iter().all(|l| l.contains("User-Agent safedeploy/")), "{marked:?}");
    let runs: std::collections::BTreeSet<&str> =
        marked.iter().filter_map(|l| l.split("check traffic: run ").nth(1)?.split(',').next()).collect();
    assert_eq!(runs.len(), 2, "one run id per round: {runs:?}");

    // Without the jar (cookies = false on the post) the app sees no login: the journey fails
    // there, and the cleanup still runs for what was made before.
    p.edit_config(|c| {
        c.replace(
            "name = \"post a note\"\nmethod = \"POST\"",
            "name = \"post a note\"\ncookies = false\nmethod = \"POST\"",
        )
    });
    let a = p.cmd("smoke-check").args(["--env", "staging", "-v"]).env("SECRET_KEY", SECRET).assert().code(1);
    let err = output(&a).1;
    assert!(err.contains("FAIL checks / post a note"), "{err}");
    assert!(err.contains("cleanup \"delete the note\" skipped: nothing captured as post"), "{err}");
    assert!(err.contains("cleanup \"delete the account\": POST"), "{err}");
    assert_eq!(
        stats(&p, "staging"),
        serde_json::json!({"users": 1, "posts": 0}),
        "the failed round left nothing either"
    );
}

#[test]
fn a_health_path_that_answers_a_steady_redirect_or_404_ends_the_wait_early_with_the_right_outcome() {
    let p = adopted();
    p.cmd("deploy-staging").args(["--version", "v1"]).env("SECRET_KEY", SECRET).assert().success();
    // v2 drops the health route v1 answers: v2 broke it (a verdict; v2 is bad).
    let app = std::fs::read_to_string(p.app.join("app.py")).expect("app");
    p.write("app.py", &app.replace(HEALTH_ROUTE, "\n"));
    p.commit_all("v2 without its health route", "New User");
    let a = p.cmd("deploy-staging").args(["--version", "v2"]).env("SECRET_KEY", SECRET).assert().code(1);
    let err = output(&a).1;
    assert!(err.contains("GET /health answered 404, the same"), "{err}");
    assert!(err.contains("where v1 answers it 2xx: v2 broke its health route"), "{err}");
    let deployments = "SELECT label || ':' || outcome FROM deployments WHERE env = 'staging' ORDER BY id";
    assert_eq!(p.query_strings(deployments), vec!["v1:healthy", "v2:failed"]);
    assert_eq!(p.get("staging", "/health").map(|a| a.0), Some(200), "v1 still serves");

    // A health path no version answers 2xx (the login redirect): a configuration mistake, said
    // at once; v3 is stopped and not marked bad, v1 keeps serving.
    p.write("app.py", &app);
    p.commit_all("v3", "New User");
    p.edit_config(|c| c.replace("health_path = \"/health\"", "health_path = \"/\""));
    let a = p.cmd("deploy-staging").args(["--version", "v3"]).env("SECRET_KEY", SECRET).assert().code(2);
    let err = output(&a).1;
    assert!(err.contains("deploy.health_path \"/\": v3 answered 302 → /login, the same"), "{err}");
    assert!(err.contains("it is not a health route; v3 is stopped and not marked bad"), "{err}");
    assert_eq!(p.query_strings(deployments), vec!["v1:healthy", "v2:failed", "v3:failed"]);
    assert!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL").is_empty());
    assert_eq!(p.get("staging", "/health").map(|a| a.0), Some(200), "v1 still serves");
}
