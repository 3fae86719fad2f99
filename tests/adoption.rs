//! Adopting safedeploy on an app it was not built for: no version route, environments that
//! must not share files, an app that must not borrow the agent's tools.

use crate::support::{Project, agent_path, fast_build, output};
use predicates::prelude::*;

fn without_version_route(p: &Project) {
    p.edit_config(|c| {
        assert!(c.contains("version_path = \"/version\"\n"), "the example's version route moved; update this test");
        c.replace("version_path = \"/version\"\n", "")
    });
}

fn header(p: &Project, env: &str, name: &str) -> Option<String> {
    let r = reqwest::blocking::get(format!("{}/", p.url(env))).ok()?;
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[test]
fn without_a_version_route_smoke_check_reads_the_version_nginx_names_and_a_wrong_route_is_not_a_verdict() {
    let p = Project::new();
    without_version_route(&p);
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record", "-v"]).assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("staging: waiting for v1, read from the proxy's X-Safedeploy-Version header"), "{err}");
    assert_eq!(header(&p, "staging", "x-safedeploy-version").as_deref(), Some("v1"));
    assert_eq!(p.query_strings("SELECT label || ':' || passed FROM verifications"), vec!["v1:1"]);

    // A route the app does not have: exit 2 at once, and nothing recorded against v1.
    p.edit_config(|c| c.replace("[smoke]\n", "[smoke]\nversion_path = \"/no-such-route\"\n"));
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().code(2);
    let (_, err) = output(&a);
    assert!(err.contains("smoke.version_path: GET http://127.0.0.1:"), "{err}");
    assert!(err.contains("/no-such-route answered 404"), "{err}");
    assert_eq!(p.query_strings("SELECT label || ':' || passed FROM verifications"), vec!["v1:1"], "nothing recorded");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0);
}

#[test]
fn without_a_proxy_or_a_version_route_the_platform_names_the_version() {
    let p = Project::new();
    without_version_route(&p);
    p.edit_config(|c| c.replace("proxy = \"nginx\"", "proxy = \"none\""));
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record", "-v", "--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("read from the platform's live label and health"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(summary["version"], "v1");
    assert_eq!(header(&p, "staging", "x-safedeploy-version"), None, "no proxy, no header");

    // Expecting a version the platform does not run: the deploy did not land (exit 3).
    p.cmd("smoke-check")
        .args(["--env", "staging", "--record", "--expect-version", "v9"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("staging still serves v1, not v9, after 8s"));
    assert_eq!(p.query_strings("SELECT label || ':' || passed FROM verifications"), vec!["v1:1"]);
}

/// The flat Flask app's config as a team would write it: no version route, no /health, and a
/// build that forgot gunicorn (`build.path` empty).
const FLAT_CONFIG: &str = r#"
[app]
name = "shortener"

[build]
path = []

[gate]
command = ["{venv_bin}/python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=reports/junit.xml"]
junit = "reports/junit.xml"
source = ["**/*.py"]

[deploy]
health_path = "/"
health_timeout = "15s"
stop_grace = "3s"

[environments.staging]
url = "http://127.0.0.1:{staging}"

[environments.production]
url = "http://127.0.0.1:{production}"

[smoke]
deadline = "8s"

[[smoke.checks]]
name = "home"
path = "/"
body_matches = "<form"

[[smoke.chains]]
name = "shorten and follow"

[[smoke.chains.checks]]
name = "shorten"
method = "POST"
path = "/"
form = { url = "https://example.com/{{run_id}}" }
expect_status = [201]
capture = { code = { json = "$.code" } }

[[smoke.chains.checks]]
name = "follow"
path = "/{{code}}"
expect_status = [302]
header_equals = { location = "https://example.com/{{run_id}}" }
"#;

#[test]
fn a_flat_app_runs_on_its_own_build_and_each_environment_on_its_own_files() {
    let p = Project::fixture("flat-flask", FLAT_CONFIG);
    let venv_bin = crate::support::venv().join("bin");
    // The agent's shell has gunicorn; the app's build does not: the start fails, naming it.
    let agent_path = format!("{}:{}", venv_bin.display(), crate::support::tools_path());
    let a = p.cmd("deploy-staging").env("PATH", &agent_path).args(["--version", "v1"]).assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("`gunicorn` is not on the app's PATH (/usr/local/bin:/usr/bin:/bin)"), "{err}");
    assert!(err.contains("install gunicorn in the build"), "{err}");
    assert_eq!(p.get("staging", "/"), None, "nothing serves staging");

    // The build provides it: v1 passes staging without a version route, then production.
    p.edit_config(|c| c.replace("path = []", &format!("path = [{:?}]", venv_bin.display().to_string())));
    p.cmd("deploy-staging").env("PATH", &agent_path).args(["--version", "v1"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    p.cmd("promote").assert().success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();

    // A link made in staging is staging's: production never sees it.
    let client =
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let made: serde_json::Value = client
        .post(format!("{}/", p.url("staging")))
        .form(&[("url", "https://example.com/staging-only")])
        .send()
        .and_then(|r| r.json())
        .expect("shorten in staging");
    let code = made["code"].as_str().expect("a code").to_string();
    assert_eq!(p.get("staging", &format!("/{code}")).map(|(s, _)| s), Some(302));
    assert_eq!(p.get("production", &format!("/{code}")).map(|(s, _)| s), Some(404), "staging's data in production");
    assert!(!p.state.join("local/versions/v1/urls.json").exists(), "the built version was written to");
    // Each environment has exactly one working copy: the one it runs.
    for env in ["staging", "production"] {
        let copies: Vec<_> = std::fs::read_dir(p.state.join(format!("local/envs/{env}/work")))
            .expect("work dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(copies.len(), 1, "{env}: {copies:?}");
        assert!(copies[0].starts_with("v1-"), "{copies:?}");
    }
}

/// PATH as a Jenkins agent has it after setup: the project's Python tools first.
#[test]
fn init_on_the_example_writes_a_config_that_check_accepts_and_the_pipeline_runs_on() {
    let p = Project::new();
    std::fs::remove_file(p.config_path()).expect("remove the example's config");
    let ports = format!("{},{}", p.staging_port, p.production_port);
    let a = p.cmd("safedeploy").args(["init", "--ports", &ports]).assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("web command: gunicorn --bind 127.0.0.1:$PORT"), "{err}");
    assert!(err.contains("(the Procfile's web: line)"), "{err}");
    assert!(err.contains("health path: /health"), "{err}");
    assert!(err.contains("version: the app's route /version"), "{err}");
    assert!(!err.contains("warning:"), "the example lacks nothing: {err}");
    let text = std::fs::read_to_string(p.config_path()).expect("written");
    for line in [
        "[gate]",
        "--cov-report=xml:reports/coverage.xml",
        "min_diff_coverage = 80",
        "health_path = \"/health\"",
        "# stop_grace = \"10s\"",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    p.cmd("safedeploy").arg("check").assert().success();
    fast_build(&p);
    p.commit_all("safedeploy init", "Team");
    p.cmd("gate-tests").env("PATH", agent_path()).args(["--base", "HEAD~1"]).assert().success();
    p.v1_everywhere();
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    // The incident's commit is stopped by the gate init configured.
    p.commit_incident();
    let a = p.cmd("gate-tests").env("PATH", agent_path()).assert().code(1);
    assert!(output(&a).1.contains("TypeError"), "{}", output(&a).1);

    // A second init refuses to overwrite; --force does; --dry-run writes nothing.
    let before = std::fs::read_to_string(p.config_path()).expect("config");
    p.cmd("safedeploy")
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("safedeploy.toml: exists; nothing was written"));
    p.cmd("safedeploy").args(["init", "--force", "--dry-run"]).assert().success();
    assert_eq!(std::fs::read_to_string(p.config_path()).expect("config"), before);
    p.cmd("safedeploy").args(["init", "--ports", "9000,9000"]).assert().code(2);
}

#[test]
fn init_on_a_flat_app_says_what_it_lacks() {
    let p = Project::fixture("flat-flask", "");
    let a = p.cmd("safedeploy").args(["init", "--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("warning: gunicorn starts the app but is not in its requirements"), "{err}");
    assert!(err.contains("warning: no health route found"), "{err}");
    assert!(err.contains("no version route; smoke-check reads the proxy's X-Safedeploy-Version header"), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["findings"]["health_path"], "/");
    assert_eq!(doc["findings"]["tests"], "pytest: test_app.py");
    p.cmd("safedeploy").arg("check").assert().success();

    // A Procfile without a web: line is said as such, not as no Procfile.
    p.write("Procfile", "worker: python worker.py\n");
    let a = p.cmd("safedeploy").args(["init", "--force", "--dry-run"]).assert().success();
    let err = output(&a).1;
    assert!(err.contains("the Procfile has no web: line;") && !err.contains("no Procfile"), "{err}");

    // --force never writes through a symlink: the file it points at is left as it was.
    let elsewhere = p.app.parent().expect("tmp").join("elsewhere.toml");
    std::fs::write(&elsewhere, "# someone else's file\n").expect("write");
    std::fs::remove_file(p.config_path()).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, p.config_path()).expect("symlink");
    p.cmd("safedeploy")
        .args(["init", "--force"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("safedeploy.toml: is a symlink to {}", elsewhere.display())));
    assert_eq!(std::fs::read_to_string(&elsewhere).expect("read"), "# someone else's file\n");
}

#[test]
fn status_history_and_stop_show_and_change_what_runs() {
    let p = Project::new();
    p.v1_everywhere();
    let a = p.cmd("safedeploy").args(["status", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    let envs = doc["environments"].as_array().expect("environments");
    let prod = envs.iter().find(|e| e["env"] == "production").expect("production");
    assert_eq!((prod["live"].as_str(), prod["healthy"].as_bool()), (Some("v1"), Some(true)), "{doc:#}");
    assert_eq!(prod["last_known_good"], "v1");
    assert_eq!(prod["locked_by"], serde_json::Value::Null);
    assert!(doc["budget"]["left_ms"].as_i64().is_some_and(|l| l > 0), "{doc:#}");
    let a = p.cmd("safedeploy").arg("status").assert().success();
    let (out, _) = output(&a);
    assert!(out.contains("production: v1, healthy"), "{out}");
    assert!(out.contains("SLA budget"), "{out}");

    p.cmd("safedeploy").args(["stop", "staging", "--reason", "maintenance"]).assert().success();
    assert_eq!(p.get("staging", "/health"), None, "staging still answers");
    assert_eq!(p.nginx_pid("staging"), None, "staging's nginx still runs");
    assert!(p.stray_processes().iter().all(|s| !s.contains("staging")), "{:?}", p.stray_processes());
    let a = p.cmd("safedeploy").args(["status", "--env", "staging"]).assert().success();
    let (out, _) = output(&a);
    assert!(out.contains("staging: nothing runs"), "{out}");
    assert!(out.contains("stopped by hand at"), "{out}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"), "production was touched");
    // Checking it is no verdict: exit 3 at once, naming the stop; nothing recorded against v1.
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().code(3);
    assert!(output(&a).1.contains("staging was stopped by hand at"), "{}", output(&a).1);
    assert!(output(&a).1.contains("(maintenance)"), "{}", output(&a).1);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM verifications WHERE passed = 0"), 0);

    let a = p.cmd("safedeploy").args(["history", "--env", "staging", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    let kinds: Vec<&str> =
        doc["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, vec!["deployment", "smoke", "stop"], "{doc:#}");
    let a = p.cmd("safedeploy").args(["history", "--limit", "1"]).assert().success();
    assert!(output(&a).0.contains("earlier event(s) not shown"), "{}", output(&a).0);
    p.cmd("safedeploy").args(["history", "--env", "nowhere"]).assert().code(2);
    p.cmd("safedeploy").args(["stop", "nowhere"]).assert().code(2);

    // A stopped environment deploys again.
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
}

#[test]
fn completions_and_man_pages_cover_every_binary() {
    let p = Project::new();
    let a = p.cmd("safedeploy").args(["completions", "bash"]).assert().success();
    let (out, _) = output(&a);
    for bin in crate::support::BINARIES.iter().chain(&["safedeploy"]) {
        assert!(
            out.contains(&format!("complete -F _{} ", bin.replace('-', "__"))) || out.contains(&format!(" {bin}")),
            "{bin}"
        );
    }
    let dir = p.app.join("man");
    // A path that is a file, not a directory: exit 2, nothing written.
    p.cmd("safedeploy")
        .args(["man", "--out", "Procfile"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("exists and is not a directory"));
    p.cmd("safedeploy").args(["completions", "bash", "--bin", ".."]).assert().code(2);
    p.cmd("safedeploy").args(["man", "--out"]).arg(&dir).assert().success();
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .expect("man dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(pages.len(), 7, "{pages:?}");
    let promote = std::fs::read_to_string(dir.join("promote.1")).expect("page");
    assert!(promote.contains(".TH promote 1") && promote.contains("\\-\\-force"), "{promote}");
}

#[test]
fn the_flat_apps_bad_commit_is_stopped_at_each_layer_and_the_proxys_500s_are_reported() {
    let p = Project::fixture("flat-flask", FLAT_CONFIG);
    let venv_bin = crate::support::venv().join("bin");
    p.edit_config(|c| c.replace("path = []", &format!("path = [{:?}]", venv_bin.display().to_string())));
    p.commit_all("safedeploy config", "Team");
    p.v1_everywhere();
    // The incident's mistake, in this app's shape, with no test change.
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write("application.py", &app.replace("json.load(urls_file)", "json.loads(urls_file)"));
    p.commit_all("Read the links with loads", "New Hire");
    // Layer 1: the gate (the suite is green: its tests never read an existing file).
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1"]).assert().code(1);
    assert!(output(&a).1.contains("change policy: 1 source file(s) changed and no test file"), "{}", output(&a).1);
    // Layer 2: staging's smoke check — following the link reads the stored links.
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().code(1);
    assert!(output(&a).1.contains("shorten and follow / follow"), "{}", output(&a).1);
    // Layers 3 and 4, forced past both: production's smoke check fails, rollback restores v1.
    p.cmd("promote")
        .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "test"])
        .assert()
        .success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    p.cmd("rollback").args(["--reason", "smoke failed"]).assert().success();
    assert_eq!(header(&p, "production", "x-safedeploy-version").as_deref(), Some("v1"));
    // collect-logs names the exception, the line and the commit, and the proxy's 500s.
    let a = p.cmd("collect-logs").args(["--env", "production", "--out", "hunt.txt", "--json"]).assert().success();
    let (out, _) = output(&a);
    assert!(out.contains("TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper"), "{out}");
    assert!(out.contains("application.py (v2):"), "{out}");
    assert!(out.contains("New Hire"), "{out}");
    assert!(out.contains("nginx/access.log") && out.contains("HTTP/1.1\\\" 500"), "{out}");
}
