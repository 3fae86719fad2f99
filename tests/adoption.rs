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
