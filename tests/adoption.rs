//! Adopting safedeploy on an app it was not built for: no version route, environments that
//! must not share files, an app that must not borrow the agent's tools.

mod support;

use predicates::prelude::*;
use support::{Project, output};

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
"#;

#[test]
fn a_flat_app_runs_on_its_own_build_and_each_environment_on_its_own_files() {
    let p = Project::fixture("flat-flask", FLAT_CONFIG);
    let venv_bin = support::venv().join("bin");
    // The agent's shell has gunicorn; the app's build does not: the start fails, naming it.
    let agent_path = format!("{}:{}", venv_bin.display(), support::tools_path());
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
