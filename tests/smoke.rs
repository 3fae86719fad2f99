//! smoke-check against a scripted server on loopback: waiting out a rollout, Retry-After,
//! captures and assertions, the fault cases (unreachable, slow, redirect loop, huge or non-UTF-8
//! bodies), parallel chains, samples, the bake period and Datadog monitor gating, invalid specs.

use crate::server::{Resp, Server};
use crate::support::output;
use predicates::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// A config with one environment, `test`, at `url`, and `extra` appended.
struct Fixture {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Fixture {
    fn new(url: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let config = format!(
            "[app]\nname = \"fixture\"\n\n[environments.test]\nurl = \"{url}\"\n\n[smoke]\nversion_path = \"/version\"\ndeadline = \"3s\"\ninterval = \"50ms\"\nconsecutive = 2\ntimeout = \"1s\"\n{extra}"
        );
        std::fs::write(dir.path().join("safedeploy.toml"), config).expect("config");
        Fixture { dir, state: tempfile::tempdir().expect("tmp") }
    }

    fn smoke(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("smoke-check").expect("bin");
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SAFEDEPLOY_STATE_DIR", self.state.path())
            .args(["--env", "test", "--expect-version", "v1"])
            .timeout(Duration::from_secs(60));
        c
    }
}

fn version(v: &str) -> Resp {
    Resp::new(200, format!("{{\"version\": \"{v}\"}}"))
}

const ONE_CHECK: &str = "[[smoke.checks]]\nname = \"home\"\npath = \"/\"\n";

#[test]
fn a_rollout_is_waited_out_until_the_version_answers_twice_in_a_row() {
    // 503 three times, then a mix of old and new behind "the load balancer", then only v1.
    let server = Server::start(|r, n| match r.path.as_str() {
        "/version" if n <= 3 => Resp::new(503, "starting"),
        "/version" if n <= 8 => version(if n % 2 == 0 { "v0" } else { "v1" }),
        "/version" => version("v1"),
        _ => Resp::new(200, "home"),
    });
    let f = Fixture::new(&server.url(), ONE_CHECK);
    f.smoke().assert().success().stderr(predicate::str::contains("test: serving v1"));
    assert!(server.hits("/version") >= 10, "returned before two v1 answers in a row: {}", server.hits("/version"));
    assert_eq!(server.hits("/"), 1);
}

#[test]
fn a_429_is_retried_after_its_retry_after() {
    let server = Server::start(|r, n| match r.path.as_str() {
        "/version" if n == 1 => Resp::new(429, "slow down").header("Retry-After", "1"),
        "/version" => version("v1"),
        _ => Resp::new(200, "home"),
    });
    let f = Fixture::new(&server.url(), ONE_CHECK);
    let started = std::time::Instant::now();
    f.smoke().assert().success();
    assert!(started.elapsed() >= Duration::from_secs(1), "did not wait for Retry-After");
}

#[test]
fn a_version_that_never_arrives_is_a_deploy_that_did_not_land_and_an_unreachable_one_a_verdict() {
    let server = Server::start(|_, _| version("v0"));
    let f = Fixture::new(&server.url(), ONE_CHECK);
    // Not the version's fault: exit 3, not a verdict against v1.
    f.smoke().assert().code(3).stderr(predicate::str::contains(
        "test still serves v0, not v1, after 3s (read from the app's version route /version): the deploy did not land",
    ));
    assert_eq!(server.hits("/"), 0, "no check runs against the wrong version");

    // A reserved port nobody listens on (the lease keeps every other test off it).
    let unanswered = crate::support::reserve_port();
    let f = Fixture::new(&format!("http://127.0.0.1:{}", unanswered.port), ONE_CHECK);
    f.smoke().assert().code(1).stderr(predicate::str::contains("could not connect"));
}

#[test]
fn a_version_route_the_app_lacks_is_a_configuration_error_said_with_its_answer_and_time() {
    // The app has no /version: 404 at once. Exit 2 naming the field, the answer and how long
    // it took, not "did not serve within 3s".
    let server =
        Server::start(|r, _| if r.path == "/version" { Resp::new(404, "Not Found") } else { Resp::new(200, "ok") });
    let f = Fixture::new(&server.url(), ONE_CHECK);
    let a = f.smoke().assert().code(2);
    let (_, err) = output(&a);
    assert!(err.contains("smoke.version_path: GET http://127.0.0.1:"), "{err}");
    assert!(err.contains("/version answered 404 Not Found after "), "{err}");
    assert!(err.contains("ms: expected a 2xx naming the version"), "{err}");
    assert!(err.contains("remove smoke.version_path"), "{err}");
    assert!(!err.contains("within"), "a wait that ended at once is not said as a deadline: {err}");
    assert_eq!(server.hits("/version"), 1, "a 404 is final, not retried");

    // A 500 there is the version's own failure: a verdict.
    let server = Server::start(|_, _| Resp::new(500, "Internal Server Error"));
    let f = Fixture::new(&server.url(), ONE_CHECK);
    f.smoke().assert().code(1).stderr(predicate::str::contains("/version answered 500 Internal Server Error after "));
}

/// A config without `smoke.version_path`, for the platform signals.
fn without_route(url: &str, extra: &str) -> Fixture {
    let f = Fixture::new(url, extra);
    let path = f.dir.path().join("safedeploy.toml");
    let text = std::fs::read_to_string(&path).expect("config").replace("version_path = \"/version\"\n", "");
    std::fs::write(&path, text).expect("config");
    f
}

#[test]
fn without_a_version_route_the_version_is_read_from_the_proxy_header_and_said() {
    // Behind nginx (the local default) every answer carries the label nginx forwarded to; the
    // app has no version route at all.
    let server = Server::start(|r, n| match r.path.as_str() {
        "/" if n <= 2 => Resp::new(502, "Bad Gateway").header("X-Safedeploy-Version", "v1"),
        "/" if n <= 4 => Resp::new(200, "old").header("X-Safedeploy-Version", "v0"),
        "/" => Resp::new(200, "home").header("X-Safedeploy-Version", "v1"),
        _ => Resp::new(404, "no"),
    });
    let f = without_route(&server.url(), ONE_CHECK);
    let a = f.smoke().arg("--json").arg("-v").assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("waiting for v1, read from the proxy's X-Safedeploy-Version header"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(summary["version"], "v1");
    assert!(summary["version_from"].as_str().unwrap_or_default().contains("X-Safedeploy-Version"), "{summary}");
    assert_eq!(server.hits("/version"), 0, "no version route is asked for");

    // Answers without the header are not the environment's proxy: never taken as the version.
    let server = Server::start(|_, _| Resp::new(200, "home"));
    let f = without_route(&server.url(), ONE_CHECK);
    f.smoke().assert().code(1).stderr(predicate::str::contains("test did not serve v1 within 3s"));

    // A server error with the right label is the version failing.
    let server = Server::start(|_, _| Resp::new(500, "boom").header("X-Safedeploy-Version", "v1"));
    let f = without_route(&server.url(), ONE_CHECK);
    f.smoke()
        .assert()
        .code(1)
        .stderr(predicate::str::contains("GET http://127.0.0.1:"))
        .stderr(predicate::str::contains("/ answered 500 boom after"));
}

#[test]
fn captures_flow_down_a_chain_and_failed_assertions_show_the_evidence() {
    let server = Server::start(|r, _| match (r.method.as_str(), r.path.as_str()) {
        (_, "/version") => version("v1"),
        ("POST", "/links") => {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            Resp::new(201, format!("{{\"code\": \"k9\", \"echo\": {body}}}")).header("Content-Type", "application/json")
        }
        ("GET", "/k9") => Resp::new(302, "").header("Location", "https://example.com/target"),
        ("GET", "/about") => Resp::new(200, "<h1>About us</h1>").header("Content-Type", "text/plain"),
        _ => Resp::new(404, "no"),
    });
    let spec = r#"
[[smoke.chains]]
name = "links"
[[smoke.chains.checks]]
name = "create"
method = "POST"
path = "/links"
json = { url = "https://example.com/target", run = "{{run_id}}" }
expect_status = [201]
json_equals = { "$.echo.url" = "https://example.com/target" }
capture = { code = { json = "$.code" } }
[[smoke.chains.checks]]
name = "follow"
path = "/{{code}}"
expect_status = [301, 302]
header_equals = { location = "https://example.com/target" }

[[smoke.chains]]
name = "about"
[[smoke.chains.checks]]
name = "about page"
path = "/about"
body_matches = "<h1>About"
header_matches = { content-type = "^text/html" }
"#;
    let f = Fixture::new(&server.url(), spec);
    let a = f.smoke().arg("--junit-out").arg("smoke.xml").assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("ok   links / follow: GET http://127.0.0.1:"), "{err}");
    assert_eq!(server.hits("/k9"), 1, "the captured code was used");
    assert!(
        err.contains("FAIL about / about page: GET ")
            && err.contains(
                "/about → 200: header content-type: \"text/plain\" does not match /^text/html/; body: <h1>About us</h1>"
            ),
        "{err}"
    );
    let junit = std::fs::read_to_string(f.dir.path().join("smoke.xml")).expect("junit");
    assert!(
        junit.contains(r#"<testsuite name="links" tests="2""#)
            && junit.contains(r#"<testsuite name="about" tests="1""#),
        "{junit}"
    );
}

/// A version that answers with an empty value where a chain captures one: the checks after it
/// would send `/` for `/{{code}}` or look for an empty text every body holds, and pass. The
/// check that uses the empty value fails instead, and a cleanup that uses it is skipped; a
/// value captured empty that nothing uses fails nothing. An empty `body_contains` is refused
/// before any request.
#[test]
fn an_empty_capture_fails_the_check_that_uses_it_and_an_empty_text_is_refused() {
    let server = Server::start(|r, _| match (r.method.as_str(), r.path.as_str()) {
        (_, "/version") => version("v1"),
        ("POST", "/links") => Resp::new(201, r#"{"code": ""}"#).header("Content-Type", "application/json"),
        ("GET", "/session") => Resp::new(200, "ok").header("X-Token", ""),
        _ => Resp::new(200, "home"),
    });
    let spec = r#"
[[smoke.chains]]
name = "links"
[[smoke.chains.checks]]
name = "create"
method = "POST"
path = "/links"
expect_status = [201]
capture = { code = { json = "$.code" } }
[[smoke.chains.checks]]
name = "follow"
path = "/{{code}}"
[[smoke.chains.cleanup]]
name = "delete"
method = "DELETE"
path = "/links/{{code}}"

[[smoke.chains]]
name = "regex"
[[smoke.chains.checks]]
name = "session"
path = "/session"
capture = { token = { header = "x-token", regex = '^(\w*)$' } }
[[smoke.chains.checks]]
name = "profile"
path = "/profile"
body_contains = "{{token}}"

[[smoke.chains]]
name = "unused"
[[smoke.chains.checks]]
name = "session"
path = "/session"
capture = { spare = { header = "x-token" } }
"#;
    let f = Fixture::new(&server.url(), spec);
    // --verbose: a skipped cleanup is a detail.
    let a = f.smoke().arg("--verbose").assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("ok   links / create: POST"), "{err}");
    assert!(
        err.contains(
            "FAIL links / follow: uses {{code}}, which an earlier answer left empty: nothing to send or look for"
        ),
        "{err}"
    );
    assert_eq!(server.hits("/"), 0, "/{{{{code}}}} was never sent as /");
    assert!(err.contains("cleanup \"delete\" skipped: nothing captured as code"), "{err}");
    assert_eq!(server.hits("/links/"), 0, "the cleanup was not sent");
    assert!(err.contains("FAIL regex / profile: uses {{token}}, which an earlier answer left empty"), "{err}");
    assert_eq!(server.hits("/profile"), 0, "{err}");
    assert!(
        err.contains("ok   unused / session: GET"),
        "a value captured empty that nothing uses fails nothing: {err}"
    );

    // A text to look for that is empty, as written or from a variable set to nothing: a
    // mistake in the configuration or the environment, refused before any request.
    let hits = server.hits("/home");
    for (body_contains, marker) in [("", "x"), ("{{env.MARKER}}", ""), ("{{env.MARKER}}", "unset")] {
        let f = Fixture::new(
            &server.url(),
            &format!("[[smoke.checks]]\nname = \"home\"\npath = \"/home\"\nbody_contains = {body_contains:?}\n"),
        );
        let mut c = f.smoke();
        if marker != "unset" {
            c.env("MARKER", marker);
        }
        let a = c.assert().code(2);
        let err = output(&a).1;
        assert_eq!(err.lines().filter(|l| l.contains("error:")).count(), 1, "{body_contains:?}: {err}");
        assert!(err.contains("body_contains"), "{body_contains:?}: {err}");
    }
    assert_eq!(server.hits("/home"), hits, "nothing was requested");
}

#[test]
fn slow_servers_redirect_loops_and_odd_bodies_get_a_verdict() {
    let server = Server::start(|r, _| match r.path.as_str() {
        "/version" => version("v1"),
        "/slow" => Resp::new(200, "late").delay(Duration::from_secs(3)),
        "/loop" => Resp::new(302, "").header("Location", "/loop"),
        "/huge" => Resp::new(200, vec![b'a'; 3 * 1024 * 1024]),
        "/binary" => Resp::new(200, vec![0xff, 0xfe, b'o', b'k', 0x00]),
        _ => Resp::new(404, ""),
    });
    let chain = |name: &str, body: &str| {
        format!("[[smoke.chains]]\nname = \"{name}\"\n[[smoke.chains.checks]]\nname = \"{name}\"\n{body}\n")
    };
    let spec = [
        chain("slow", "path = \"/slow\""),
        chain("loop", "path = \"/loop\"\nfollow_redirects = true"),
        chain("huge", "path = \"/huge\"\nbody_contains = \"the end\""),
        chain("binary", "path = \"/binary\"\nbody_contains = \"ok\""),
    ]
    .concat();
    let f = Fixture::new(&server.url(), &spec);
    let a = f.smoke().assert().code(1);
    let (_, err) = output(&a);
    assert!(
        err.contains("FAIL slow / slow: GET ") && err.contains("/slow → no answer: GET") && err.contains("timed out"),
        "{err}"
    );
    assert!(err.contains("FAIL loop / loop:") && err.contains("too many redirects"), "{err}");
    assert!(err.contains("body longer than 1048576 bytes, judged on its start"), "{err}");
    assert!(err.contains("ok   binary / binary:"), "a non-UTF-8 body is judged, not rejected: {err}");
    assert!(server.hits("/loop") > 5, "the redirect was followed until the limit");
}

#[test]
fn independent_chains_run_side_by_side() {
    let server = Server::start(|r, _| match r.path.as_str() {
        "/version" => version("v1"),
        _ => Resp::new(200, "ok").delay(Duration::from_millis(300)),
    });
    let spec: String = (0..5)
        .map(|i| {
            format!("[[smoke.chains]]\nname = \"c{i}\"\n[[smoke.chains.checks]]\nname = \"c{i}\"\npath = \"/p{i}\"\n")
        })
        .collect();
    let f = Fixture::new(&server.url(), &spec);
    f.smoke().assert().success();
    assert_eq!(server.max_in_flight(), 5, "all five chains were in flight at once");
}

#[test]
fn samples_give_a_p95_budget() {
    let server = Server::start(|r, n| match r.path.as_str() {
        "/version" => version("v1"),
        // One slow answer in ten: the p95 of ten samples is the slow one.
        _ if n == 7 => Resp::new(200, "ok").delay(Duration::from_millis(400)),
        _ => Resp::new(200, "ok"),
    });
    let f = Fixture::new(&server.url(), "[[smoke.checks]]\nname = \"home\"\npath = \"/\"\np95_latency = \"250ms\"\n");
    f.smoke()
        .args(["--samples", "10"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("p95 4").and(predicate::str::contains("over 10 samples (budget 250ms)")));
    assert_eq!(server.hits("/"), 10, "every sample was taken before the p95 was judged");
}

#[test]
fn the_bake_catches_a_version_that_breaks_after_it_went_live() {
    let server = Server::start(|r, n| match r.path.as_str() {
        "/version" => version("v1"),
        _ if n <= 3 => Resp::new(200, "fine"),
        _ => Resp::new(500, "Internal Server Error"),
    });
    let f = Fixture::new(&server.url(), ONE_CHECK);
    f.smoke()
        .args(["--watch", "20s", "--interval", "100ms"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("failed the smoke checks in bake round 4"))
        .stderr(predicate::str::contains("→ 500: status 500 (expected 200); body: Internal Server Error"));
    assert_eq!(server.hits("/"), 4, "the watch ended at the first failure");
}

/// A bake shorter than the pause between rounds (`--watch 300ms` beside the default 30 s) still
/// bakes: its one round comes at its end, and it is said. It used to end after the first round,
/// a `--watch` that checked nothing more.
#[test]
fn a_bake_shorter_than_its_interval_still_has_a_round() {
    let server = Server::start(|r, n| match r.path.as_str() {
        "/version" => version("v1"),
        _ if n <= 1 => Resp::new(200, "fine"),
        _ => Resp::new(500, "Internal Server Error"),
    });
    let f = Fixture::new(&server.url(), ONE_CHECK);
    f.smoke()
        .args(["--watch", "300ms"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "test: --interval 30s is longer than --watch 0.3s: one bake round, at its end",
        ))
        .stderr(predicate::str::contains("failed the smoke checks in bake round 2"));
    assert_eq!(server.hits("/"), 2, "the first round and the bake's one round");
}

/// A monitor as Datadog's `GET /api/v1/monitor/{id}` answers it (the fields its model requires).
fn monitor_answer(state: &str) -> serde_json::Value {
    serde_json::json!({
        "id": 42, "name": "5xx rate on url-shortener", "type": "metric alert",
        "query": "sum(last_5m):sum:trace.flask.request.errors{service:url-shortener}.as_count() > 5",
        "overall_state": state, "tags": ["service:url-shortener"], "message": "@webhook-jenkins"
    })
}

#[test]
fn the_monitor_answers_served_here_are_datadogs_own_shape() {
    crate::support::check_shapes(&[
        ("datadog_monitor", monitor_answer("OK")),
        ("datadog_monitor", monitor_answer("Alert")),
    ]);
}

#[test]
fn datadog_monitors_gate_each_round_and_their_keys_stay_secret() {
    let server = Server::start(|r, n| match r.path.as_str() {
        "/version" => version("v1"),
        "/api/v1/monitor/42"
            if r.header("DD-API-KEY") != Some("ddapikey-123456") || r.header("DD-APPLICATION-KEY").is_none() =>
        {
            Resp::new(403, "{\"errors\": [\"Forbidden\"]}")
        }
        "/api/v1/monitor/42" => Resp::new(200, monitor_answer(if n <= 2 { "OK" } else { "Alert" }).to_string()),
        _ => Resp::new(200, "home"),
    });
    let extra = format!("{ONE_CHECK}[smoke.datadog]\napi_url = \"{}\"\nmonitors = [42]\n", server.url());
    let f = Fixture::new(&server.url(), &extra);
    let a = f
        .smoke()
        .env("DD_API_KEY", "ddapikey-123456")
        .env("DD_APP_KEY", "ddappkey-654321")
        .args(["--watch", "20s", "--interval", "100ms", "--json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "failed the smoke checks in bake round 3 after 0s — Datadog monitor 42 (5xx rate on url-shortener) is Alert",
        ));
    let (out, err) = output(&a);
    for secret in ["ddapikey-123456", "ddappkey-654321"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} leaked");
    }
    assert_eq!(server.hits("/api/v1/monitor/42"), 3);

    // Without the keys the bake cannot judge the monitors: a usage error before any request.
    f.smoke()
        .args(["--watch", "1s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("smoke.datadog: DD_API_KEY is not set"));
}

#[test]
fn an_invalid_spec_is_exit_2_naming_the_chain_check_and_field() {
    let server = Server::start(|_, _| version("v1"));
    for (spec, message) in [
        (
            "[[smoke.checks]]\nname = \"a\"\npath = \"/{{code}}\"\n",
            "smoke chain \"checks\", check 1 (\"a\"): path: unknown variable {{code}}",
        ),
        (
            "[[smoke.checks]]\nname = \"a\"\npath = \"/\"\nbody_matches = \"(\"\n",
            "check 1 (\"a\"): body_matches: invalid regex",
        ),
        (
            "[[smoke.checks]]\nname = \"a\"\npath = \"/\"\njson_equals = { \"$..[\" = 1 }\n",
            "check 1 (\"a\"): json_equals: invalid JSONPath",
        ),
        (
            "[[smoke.checks]]\nname = \"a\"\npath = \"/\"\ncapture = { x = { json = \"$.a\", header = \"b\" } }\n",
            "capture.x: expected one of json, regex, header (or header with a regex on its value)",
        ),
        ("[[smoke.checks]]\nname = \"a\"\npath = \"/\"\nexpect_body = \"x\"\n", "unknown field `expect_body`"),
    ] {
        let f = Fixture::new(&server.url(), spec);
        f.smoke().assert().code(2).stderr(predicate::str::contains(message));
    }
    assert_eq!(server.total_hits(), 0, "nothing was requested");
}

#[test]
fn checks_can_live_in_an_included_file() {
    let server = Server::start(|r, _| match r.path.as_str() {
        "/version" => version("v1"),
        _ => Resp::new(200, "home"),
    });
    let f = Fixture::new(&server.url(), "include = \"checks.toml\"\n");
    std::fs::write(
        f.dir.path().join("checks.toml"),
        "[[chains]]\nname = \"included\"\n[[chains.checks]]\nname = \"home\"\npath = \"/\"\nbody_contains = \"home\"\n",
    )
    .expect("write");
    f.smoke().assert().success().stderr(predicate::str::contains("ok   included / home"));
    std::fs::write(f.dir.path().join("checks.toml"), "[[chains]]\nname = \"included\"\nbogus = 1\n").expect("write");
    f.smoke().assert().code(2).stderr(predicate::str::contains("checks.toml:3: unknown field `bogus`"));
}

#[test]
fn a_check_skipped_after_a_failure_says_skip_on_the_console_and_in_junit() {
    let server = Server::start(|r, _| match r.path.as_str() {
        "/version" => version("v1"),
        _ => Resp::new(500, "boom"),
    });
    let spec = "[[smoke.chains]]\nname = \"links\"\n[[smoke.chains.checks]]\nname = \"create\"\npath = \"/a\"\n\
                [[smoke.chains.checks]]\nname = \"follow\"\npath = \"/b\"\n";
    let f = Fixture::new(&server.url(), spec);
    let a = f.smoke().arg("--junit-out").arg("smoke.xml").assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("FAIL links / create: GET "), "{err}");
    assert!(err.contains("skip links / follow: skipped: an earlier check of the chain failed"), "{err}");
    assert!(!err.contains("FAIL links / follow"), "a skipped check is not a failure: {err}");
    let junit = std::fs::read_to_string(f.dir.path().join("smoke.xml")).expect("junit");
    assert!(junit.contains("<skipped"), "{junit}");
    assert_eq!(server.hits("/b"), 0);
}

/// Monitors in `Warn` and `No Data` say nothing of the version unless the team says so, and
/// monitors named by tags are judged with those named by id; each is said with its state.
#[test]
fn warn_and_no_data_are_no_verdict_by_default_and_monitors_are_found_by_tags() {
    let listed = |state: &str| {
        let mut m = monitor_answer(state);
        m["id"] = serde_json::json!(7);
        m["name"] = serde_json::json!("p95 latency");
        serde_json::json!([m]).to_string()
    };
    let server = Server::start(move |r, _| match r.path.as_str() {
        "/version" => version("v1"),
        "/api/v1/monitor/42" => Resp::new(200, monitor_answer("No Data").to_string()),
        p if p.starts_with("/api/v1/monitor?") && p.contains("monitor_tags=service%3Aurl-shortener%2Cenv%3Aprod") => {
            Resp::new(200, listed("Warn"))
        }
        p if p.starts_with("/api/v1/monitor?") => Resp::new(400, "{\"errors\": [\"unexpected query\"]}"),
        _ => Resp::new(200, "home"),
    });
    let dd = |extra: &str| {
        format!(
            "{ONE_CHECK}[smoke.datadog]\napi_url = \"{}\"\nmonitors = [42]\nmonitor_tags = [\"service:url-shortener\", \"env:prod\"]\n{extra}",
            server.url()
        )
    };
    let keys = [("DD_API_KEY", "ddapikey-123456"), ("DD_APP_KEY", "ddappkey-654321")];
    let f = Fixture::new(&server.url(), &dd(""));
    let a = f.smoke().envs(keys).args(["--watch", "1s", "--interval", "200ms", "--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(
        err.contains(
            "Datadog monitor 42 (5xx rate on url-shortener) is No Data: no verdict (smoke.datadog.no_data = \"ignore\")"
        ),
        "{err}"
    );
    assert!(
        err.contains("Datadog monitor 7 (p95 latency) is Warn: no verdict (smoke.datadog.warn = \"ignore\")"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["monitors"].as_array().map(Vec::len), Some(2), "{doc:#}");
    assert_eq!(doc["monitors"][0]["judged"]["not_judged"], "smoke.datadog.no_data = \"ignore\"");

    // A team that wants them to count says so: then they are a verdict.
    let f = Fixture::new(&server.url(), &dd("warn = \"fail\"\n"));
    f.smoke()
        .envs(keys)
        .args(["--watch", "1s", "--interval", "200ms"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("Datadog monitor 7 (p95 latency) is Warn"));

    // A policy that is neither, or a tag with a comma, is exit 2 at load.
    for (extra, field) in [("no_data = \"maybe\"\n", "no_data"), ("", "monitor_tags")] {
        let text = if extra.is_empty() { dd("").replace("\"env:prod\"", "\"env:prod,team:web\"") } else { dd(extra) };
        let f = Fixture::new(&server.url(), &text);
        f.smoke().envs(keys).args(["--watch", "1s"]).assert().code(2).stderr(predicate::str::contains(field));
    }
}

/// The team's own suite as evidence: a pass with a fresh report, a failing report (a verdict
/// naming the cases), and every way of giving no evidence (could not act, exit 3).
#[test]
fn a_suite_is_evidence_only_with_a_fresh_report_and_failing_cases_are_named() {
    let server = Server::start(|r, _| match r.path.as_str() {
        "/version" => version("v1"),
        _ => Resp::new(200, "home"),
    });
    let suite = |command: &str, extra: &str| {
        format!(
            "{ONE_CHECK}\n[[smoke.suites]]\nname = \"e2e\"\ncommand = [\"sh\", \"-c\", {command:?}]\njunit = \"reports/e2e-*.xml\"\ntimeout = \"2s\"\n{extra}"
        )
    };
    const PASS: &str = "mkdir -p reports && echo \"$SAFEDEPLOY_TARGET_URL $SAFEDEPLOY_VERSION $SAFEDEPLOY_PHASE $SAFEDEPLOY_ENV\" > seen && printf '<testsuite tests=\"2\"><testcase classname=\"e2e\" name=\"login\"/><testcase classname=\"e2e\" name=\"checkout\"/></testsuite>' > reports/e2e-1.xml";
    const FAIL: &str = "mkdir -p reports && printf '<testsuite tests=\"2\"><testcase classname=\"e2e\" name=\"login\"/><testcase classname=\"e2e\" name=\"checkout\"><failure message=\"POST /checkout answered 500\"/></testcase></testsuite>' > reports/e2e-1.xml; exit 1";

    let f = Fixture::new(&server.url(), &suite(PASS, ""));
    let a = f.smoke().args(["--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("ok   suite / e2e: 2 case(s) passed against v1"), "{err}");
    let seen = std::fs::read_to_string(f.dir.path().join("seen")).expect("the suite ran");
    assert_eq!(seen.trim(), format!("{} v1 smoke test", server.url()));
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["checks"].as_array().map(Vec::len), Some(2), "{doc:#}");

    let f = Fixture::new(&server.url(), &suite(FAIL, ""));
    f.smoke().assert().code(1).stderr(predicate::str::contains(
        "suite / e2e: 1 of 2 case(s) failed against v1 (exit status 1): e2e.checkout: POST /checkout answered 500",
    ));

    // No evidence: not found, killed at its limit, no fresh report, a failure it does not name.
    for (command, said) in [
        ("exec no-such-suite-runner", "wrote no fresh report"),
        ("sleep 30", "timed out after 2s"),
        ("true", "wrote no fresh report matching reports/e2e-*.xml"),
        (
            "mkdir -p reports && printf '<testsuite tests=\"1\"><testcase classname=\"e2e\" name=\"a\"/></testsuite>' > reports/e2e-1.xml; exit 3",
            "it exit status 3, and its report names no failing case",
        ),
        (
            "mkdir -p reports && printf '<testsuite tests=\"0\"></testsuite>' > reports/e2e-1.xml",
            "its report names no executed case",
        ),
    ] {
        let f = Fixture::new(&server.url(), &suite(command, ""));
        // A stale report from an earlier run is no evidence either.
        std::fs::create_dir_all(f.dir.path().join("reports")).expect("mkdir");
        std::fs::write(
            f.dir.path().join("reports/e2e-0.xml"),
            "<testsuite tests=\"1\"><testcase classname=\"old\" name=\"x\"/></testsuite>",
        )
        .expect("stale");
        let a = f.smoke().args(["--record"]).assert().code(3);
        let err = output(&a).1;
        assert!(err.contains("suite \"e2e\" gave no evidence") && err.contains(said), "{command}: {err}");
    }

    // A suite only for other phases does not run here; a bad phase is exit 2 at load.
    let f = Fixture::new(&server.url(), &suite(FAIL, "phases = [\"pre_traffic\"]\n"));
    f.smoke().assert().success();
    let f = Fixture::new(&server.url(), &suite(PASS, "phases = [\"later\"]\n"));
    f.smoke().assert().code(2).stderr(predicate::str::contains("phases"));
    let f = Fixture::new(&server.url(), &suite(PASS, "phases = []\n"));
    f.smoke().assert().code(2).stderr(predicate::str::contains("smoke.suites[0].phases"));
}

/// A Datadog metrics query answer (`GET /api/v1/query`), one series of `points` (`null`: a gap).
fn metrics_answer(query: &str, points: &[Option<f64>]) -> serde_json::Value {
    let pointlist: Vec<serde_json::Value> = points
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!([1_796_540_000_000.0 + i as f64 * 10_000.0, v]))
        .collect();
    let series = if points.is_empty() {
        vec![]
    } else {
        vec![serde_json::json!({
            "metric": "trace.flask.request.errors", "display_name": "errors", "expression": query,
            "scope": "version:v1", "pointlist": pointlist, "start": 1_796_540_000_000i64, "end": 1_796_540_300_000i64,
            "interval": 10, "length": points.len(), "aggr": "sum"
        })]
    };
    serde_json::json!({ "status": "ok", "res_type": "time_series", "query": query, "from_date": 1_796_540_000_000i64,
        "to_date": 1_796_540_300_000i64, "group_by": [], "series": series })
}

#[test]
fn the_metrics_answers_served_here_are_datadogs_own_shape() {
    crate::support::check_shapes(&[
        ("datadog_metrics_query", metrics_answer("sum:x{version:v1}", &[Some(0.01), None, Some(0.02)])),
        ("datadog_metrics_query", metrics_answer("sum:x{version:v1}", &[])),
    ]);
}

/// A Datadog metric in smoke-check's rounds: its value judged, and each way of having no data or
/// no answer kept apart — an empty series or only gaps is no verdict unless `no_data = "fail"`,
/// a 429 is waited out by its `Retry-After`, an answer that never comes is exit 3.
#[test]
fn a_datadog_metric_is_judged_and_no_data_and_a_failing_provider_are_not_verdicts() {
    let mode = Arc::new(std::sync::Mutex::new("pass"));
    let m = mode.clone();
    let server = Server::start(move |r, n| {
        let path = r.path.as_str();
        if path == "/version" {
            return version("v1");
        }
        if !path.starts_with("/api/v1/query?") {
            return Resp::new(200, "home");
        }
        assert!(path.contains("query=avg%3Aerror_ratio%7Bversion%3Av1%2Cenv%3Atest%7D"), "{path}");
        let q = "avg:error_ratio{version:v1,env:test}";
        match *m.lock().expect("mode") {
            "pass" => Resp::new(200, metrics_answer(q, &[Some(0.01), None, Some(0.03)]).to_string()),
            "fail" => Resp::new(200, metrics_answer(q, &[Some(0.2), Some(0.4)]).to_string()),
            "empty" => Resp::new(200, metrics_answer(q, &[]).to_string()),
            "gaps" => Resp::new(200, metrics_answer(q, &[None, None]).to_string()),
            "throttled" if n % 2 == 1 => {
                Resp::new(429, "{\"errors\": [\"Rate limit exceeded\"]}").header("Retry-After", "1")
            }
            "throttled" => Resp::new(200, metrics_answer(q, &[Some(0.01)]).to_string()),
            "slow" => Resp::new(200, "{}").delay(Duration::from_secs(3)),
            _ => Resp::new(500, "{\"errors\": [\"Internal\"]}"),
        }
    });
    let config = |extra: &str| {
        format!(
            "{ONE_CHECK}[smoke.datadog]\napi_url = \"{}\"\n\n[[smoke.metrics]]\nname = \"error ratio\"\nprovider = \"datadog\"\nquery = \"avg:error_ratio{{version:{{{{version}}}},env:{{{{env}}}}}}\"\ncompare = \"absolute\"\nmax = 0.05\nphases = [\"smoke\"]\n{extra}",
            server.url()
        )
    };
    let keys = [("DD_API_KEY", "ddapikey-123456"), ("DD_APP_KEY", "ddappkey-654321")];
    let run = |f: &Fixture, state: &'static str| {
        *mode.lock().expect("mode") = state;
        f.smoke().envs(keys).assert()
    };
    let f = Fixture::new(&server.url(), &config(""));
    let err = output(&run(&f, "pass").success()).1;
    assert!(err.contains("ok   metric / error ratio: passed: candidate 0.0200 against a maximum of 0.05"), "{err}");
    run(&f, "fail")
        .code(1)
        .stderr(predicate::str::contains("metric / error ratio: failed: candidate 0.3000 against a maximum of 0.05"));
    for state in ["empty", "gaps"] {
        let err = output(&run(&f, state).success()).1;
        assert!(err.contains("no verdict (no_data = \"ignore\"): no data for the candidate"), "{state}: {err}");
    }
    let err = output(&run(&f, "throttled").success()).1;
    assert!(err.contains("passed: candidate 0.0100"), "{err}");
    run(&f, "slow")
        .code(3)
        .stderr(predicate::str::contains("metric \"error ratio\"").and(predicate::str::contains("4 tries")));
    run(&f, "broken").code(3).stderr(predicate::str::contains("answered 500"));
    let f = Fixture::new(&server.url(), &config("no_data = \"fail\"\n"));
    run(&f, "empty").code(1).stderr(predicate::str::contains("not enough data (no_data = \"fail\")"));
    // A metric that cannot work is exit 2 at load.
    // A ratio under 1 would fail a candidate equal to the stable version.
    let text = config("").replace("compare = \"absolute\"\n", "").replace("max = 0.05\n", "max_ratio = 0.5\n");
    let f = Fixture::new(&server.url(), &text);
    f.smoke().envs(keys).assert().code(2).stderr(predicate::str::contains("max_ratio"));
    let f = Fixture::new(&server.url(), &config("").replace("max = 0.05\n", ""));
    f.smoke().envs(keys).assert().code(2).stderr(predicate::str::contains("compare = \"absolute\" needs max"));
    let f = Fixture::new(&server.url(), &config("").replace("phases = [\"smoke\"]", "phases = [\"pre_traffic\"]"));
    f.smoke()
        .envs(keys)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("before traffic a candidate has no users' metrics"));
}

/// A v2 timeseries answer of Datadog's (`/api/v2/query/timeseries`) with one formula series of
/// `values` (null: a gap), or none.
fn timeseries_answer(values: Option<&[Option<f64>]>) -> serde_json::Value {
    let (series, times, rows) = match values {
        Some(v) => (
            vec![serde_json::json!({"group_tags": [], "query_index": 0, "unit": null})],
            (0..v.len()).map(|i| 1_796_540_000_000i64 + i as i64 * 10_000).collect::<Vec<_>>(),
            vec![v.to_vec()],
        ),
        None => (vec![], vec![], vec![]),
    };
    serde_json::json!({"data": {"type": "timeseries_response", "attributes": {"series": series, "times": times, "values": rows}}})
}

/// A Datadog v2 formula over named queries: the body sent and the answers served are
/// datadog-api-client's own models; the formula's value is judged; and `no_data = "extend"`
/// bakes on until the metric has data (a pass once it does), else ends inconclusive (exit 4,
/// said), also for one round without a bake. A metric configured wrongly is exit 2 at load.
#[test]
fn a_datadog_formula_is_judged_and_a_metric_without_data_extends_the_bake_to_its_cap() {
    let mode = Arc::new(std::sync::Mutex::new("pass"));
    let asked = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let (m, sent) = (mode.clone(), asked.clone());
    let server = Server::start(move |r, _| {
        if r.path == "/version" {
            return version("v1");
        }
        if r.path != "/api/v2/query/timeseries" {
            return Resp::new(200, "home");
        }
        assert_eq!((r.method.as_str(), r.header("dd-api-key")), ("POST", Some("ddapikey-123456")));
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON body");
        let n = {
            let mut sent = sent.lock().expect("asked");
            sent.push(body);
            sent.len()
        };
        let answer = match *m.lock().expect("mode") {
            "pass" => timeseries_answer(Some(&[Some(0.5), None, Some(1.5)])),
            "fail" => timeseries_answer(Some(&[Some(12.0), Some(15.0)])),
            "late" if n < 3 => timeseries_answer(None),
            "late" => timeseries_answer(Some(&[Some(1.0)])),
            _ => timeseries_answer(None),
        };
        Resp::new(200, answer.to_string())
    });
    let metric = "[[smoke.metrics]]\nname = \"error share\"\nprovider = \"datadog\"\nformula = \"100 * errors / hits\"\nqueries = { errors = \"sum:errors{version:{{version}}}.as_count()\", hits = \"sum:hits{version:{{version}}}.as_count()\" }\ncompare = \"absolute\"\nmax = 5.0\nphases = [\"smoke\", \"bake\"]\ninterval = \"1s\"\nno_data = \"extend\"\nextend_up_to = \"3s\"\n";
    let config = |m: &str| format!("{ONE_CHECK}[smoke.datadog]\napi_url = \"{}\"\n\n{m}", server.url());
    let keys = [("DD_API_KEY", "ddapikey-123456"), ("DD_APP_KEY", "ddappkey-654321")];
    let f = Fixture::new(&server.url(), &config(metric));
    let run = |state: &'static str, watch: bool| {
        *mode.lock().expect("mode") = state;
        asked.lock().expect("asked").clear();
        let mut c = f.smoke();
        c.envs(keys);
        if watch {
            c.args(["--watch", "1s", "--interval", "200ms"]);
        }
        c.assert()
    };
    let err = output(&run("pass", false).success()).1;
    assert!(err.contains("ok   metric / error share: passed: candidate 1.0000 against a maximum of 5"), "{err}");
    let body = asked.lock().expect("asked")[0].clone();
    let attrs = &body["data"]["attributes"];
    assert_eq!(attrs["formulas"], serde_json::json!([{"formula": "100 * errors / hits"}]), "{body}");
    assert_eq!(attrs["queries"][0]["query"], "sum:errors{version:v1}.as_count()", "{body}");
    assert_eq!(attrs["to"].as_i64().zip(attrs["from"].as_i64()).map(|(t, f)| t - f), Some(300_000), "{body}");
    crate::support::check_shapes(&[
        ("datadog_timeseries_request", body),
        ("datadog_timeseries_response", timeseries_answer(Some(&[Some(0.5), None]))),
        ("datadog_timeseries_response", timeseries_answer(None)),
    ]);
    run("fail", false)
        .code(1)
        .stderr(predicate::str::contains("metric / error share: failed: candidate 13.5000 against a maximum of 5"));
    // One round without data: nothing to extend, inconclusive.
    let err = output(&run("empty", false).code(4)).1;
    assert!(err.contains("not enough evidence to judge v1 in the round that asked it (smoke-check --watch bakes on until it has data, for a metric whose phases include \"bake\"): no data from error share"), "{err}");
    // A bake waits for the data past --watch, and judges it when it comes.
    let err = output(&run("late", true).success()).1;
    assert!(err.contains("bake extended: waiting for data from error share"), "{err}");
    assert!(err.contains("passed: candidate 1.0000"), "{err}");
    assert!(asked.lock().expect("asked").len() >= 3);
    // Data that never comes: the bake ends at extend_up_to, inconclusive.
    let err = output(&run("empty", true).code(4)).1;
    assert!(
        err.contains("not enough evidence to judge v1 after ")
            && err.contains("s of bake (extend_up_to): no data from error share"),
        "{err}"
    );
    assert!(err.contains("nothing is marked bad"), "{err}");
    // A metric no bake asks again (phases = ["smoke"]) is not waited for: the bake ends on
    // time, inconclusive, without extending.
    let f =
        Fixture::new(&server.url(), &config(&metric.replace("phases = [\"smoke\", \"bake\"]", "phases = [\"smoke\"]")));
    *mode.lock().expect("mode") = "empty";
    let err = output(&f.smoke().envs(keys).args(["--watch", "1s", "--interval", "200ms"]).assert().code(4)).1;
    assert!(!err.contains("bake extended"), "{err}");
    assert!(err.contains("in the round that asked it"), "{err}");

    // Each metric that cannot work is exit 2 at load, naming its field.
    let bad = [
        (metric.replace("provider = \"datadog\"", "provider = \"prometheus\"\nurl = \"http://127.0.0.1:9\""), "formula"),
        (metric.replace("formula = \"100 * errors / hits\"\n", ""), "formula"),
        (metric.replace("queries = {", "query = \"sum:x{*}\"\nqueries = {"), "query"),
        (metric.replace("queries = { errors = \"sum:errors{version:{{version}}}.as_count()\", hits = \"sum:hits{version:{{version}}}.as_count()\" }\n", ""), "queries"),
        (metric.replace("errors = \"sum", "\"err ors\" = \"sum"), "queries"),
        (metric.replace("phases = [\"smoke\", \"bake\"]", "phases = [\"canary\"]"), "no_data"),
        (metric.replace("no_data = \"extend\"", "range = true"), "range"),
        (metric.replace("no_data = \"extend\"", "no_data = \"maybe\""), "no_data"),
        (metric.replace("extend_up_to = \"3s\"", "extend_up_to = \"0s\""), "extend_up_to"),
    ];
    for (text, field) in bad {
        let f = Fixture::new(&server.url(), &config(&text));
        let a = f.smoke().envs(keys).assert().code(2);
        let err = output(&a).1;
        // (serde's own refusals name the array without its index)
        assert!(err.contains("smoke.metrics") && err.contains(&format!(".{field}: ")), "{field}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{field}: one line: {err}");
    }
}
