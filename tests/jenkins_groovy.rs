//! The Jenkinsfiles executed by real Groovy (Groovy 4, as npm-groovy-lint ships it) with the
//! step harness of `jenkins/harness/run.groovy`: the declarative DSL's sections in Jenkins'
//! order, every `sh` step running the real binaries against the local platform. Four scenarios
//! of the main job and the alert job, the team's Jenkinsfile and the shared library's step, and
//! a sweep of typos each of which must stop the build.

use crate::server::{Resp, Server};
use crate::support::Project;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One harness run: its exit status, its console and its result file.
struct Build {
    code: i32,
    console: String,
    result: Value,
    dir: PathBuf,
}

impl Build {
    fn stages(&self) -> Vec<(String, String)> {
        let stages = self.result["stages"].as_array().expect("stages");
        stages
            .iter()
            .map(|s| (s["name"].as_str().unwrap_or("").into(), s["status"].as_str().unwrap_or("").into()))
            .collect()
    }

    /// The pipeline-level post conditions that ran, in the order they ran.
    fn post_ran(&self) -> Vec<String> {
        let post = self.result["post"].as_array().expect("post");
        post.iter()
            .filter(|p| p["where"] == "pipeline" && p["ran"] == true)
            .map(|p| p["condition"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The `sh` steps that ran (first word of each) and their exit codes.
    fn sh(&self) -> Vec<(String, Value)> {
        let steps = self.result["steps"].as_array().expect("steps");
        steps
            .iter()
            .filter(|s| s["type"] == "sh" && s["skipped"] != true)
            .map(|s| {
                (s["script"].as_str().unwrap_or("").split(' ').next().unwrap_or("").to_string(), s["exit"].clone())
            })
            .collect()
    }

    fn step(&self, starts: &str) -> Value {
        let steps = self.result["steps"].as_array().expect("steps");
        steps.iter().find(|s| s["script"].as_str().is_some_and(|c| c.starts_with(starts))).cloned().expect(starts)
    }
}

fn harness() -> Command {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/run-jenkinsfile"))
}

/// Runs `jenkinsfile` (a repository path) as build `number` in the project's workspace, the
/// built binaries and the test tools on the agent's PATH; `args` are more harness options.
fn run(p: &Project, jenkinsfile: &str, number: u32, args: &[&str]) -> Build {
    let bin_dir = assert_cmd::cargo::cargo_bin("rollback").parent().expect("dir").to_path_buf();
    let builds = p.workspace().with_file_name("builds").join(number.to_string());
    let out = harness()
        .arg("--workspace")
        .arg(p.workspace())
        .arg("--build-dir")
        .arg(&builds)
        .args(["--env", &format!("BUILD_NUMBER={number}"), "--env", "JOB_NAME=url-shortener"])
        .arg("--env")
        .arg(format!("XDG_STATE_HOME={}", p.xdg_state_home().display()))
        // The tools are built by cargo for the tests: the Jenkinsfiles' tools build is skipped.
        .args(["--skip-sh", "^scripts/setup && cargo build", "--skip-sh", "^python3 -m venv"])
        .args(args)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(jenkinsfile))
        .env("PATH", format!("{}:{}", bin_dir.display(), crate::support::tools_path()))
        .env("HOME", p.workspace().with_file_name("home"))
        .env_remove("SAFEDEPLOY_STATE_DIR")
        .env_remove("SAFEDEPLOY_CONFIG")
        .output()
        .expect("scripts/run-jenkinsfile");
    let console = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let result = std::fs::read_to_string(builds.join("result.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("{jenkinsfile} #{number}: no result.json\n{console}"));
    Build { code: out.status.code().unwrap_or(-1), console, result, dir: builds }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const STAGES: [&str; 6] =
    ["Build tools", "Gate: unit tests", "Deploy staging", "Smoke staging", "Promote", "Smoke production"];

fn statuses(list: &[&str]) -> Vec<(String, String)> {
    STAGES.iter().zip(list).map(|(n, s)| (n.to_string(), s.to_string())).collect()
}

fn head(p: &Project) -> String {
    p.git(&["rev-parse", "HEAD"]).trim().to_string()
}

/// Scenario 1, a clean run, then scenario 2, a commit the gate fails (a source change with no
/// test): the later stages are skipped, `post { failure }` runs, production is untouched.
#[test]
fn the_main_jenkinsfile_on_groovy_a_clean_run_then_a_failing_gate() {
    let p = Project::in_workspace();
    let b = run(&p, "Jenkinsfile", 1, &["--param", "PRODUCTION_BAKE=1s", "--env", "SAFEDEPLOY_INTERVAL=300ms"]);
    assert_eq!(b.code, 0, "{}", b.console);
    assert_eq!(b.result["result"], "SUCCESS");
    assert_eq!(b.stages(), statuses(&["SUCCESS"; 6]));
    assert_eq!(
        b.sh(),
        ["smoke-check", "gate-tests", "deploy-staging", "smoke-check", "promote", "smoke-check", "safedeploy"]
            .map(|s| (s.to_string(), Value::from(0)))
    );
    assert_eq!(b.post_ran(), names(&["cleanup"]), "success: no failure block, the report last");
    assert!(b.console.contains("round(s) of bake"), "production's smoke check baked:\n{}", b.console);
    assert_eq!(p.served_version("production").as_deref(), Some("build-1"));
    // The environment directive, evaluated: the default state dir is under XDG_STATE_HOME.
    assert_eq!(b.result["environment"]["VERSION_LABEL"], "build-1");
    assert_eq!(b.result["environment"]["SAFEDEPLOY_DRY_RUN"], "false");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments WHERE label = 'build-1'"), 2);
    // promote ran inside the production lock, and only promote.
    assert_eq!(b.step("promote")["locks"], serde_json::json!(["url-shortener-production"]));
    assert_eq!(b.step("deploy-staging")["locks"], serde_json::json!([]));
    // The gate's JUnit reports were recorded; the report page was published; the description set.
    let junit = &b.result["junit"][0];
    assert!(junit["tests"].as_u64().unwrap_or(0) >= 8 && junit["failures"] == 0, "{junit}");
    let page = std::fs::read_to_string(b.dir.join("htmlreports/safedeploy_report/index.html")).expect("published");
    assert!(page.contains("data-key=\"deployments.count\" data-value=\"2\""), "{page}");
    assert_eq!(b.result["description"], "build-1 → production: SUCCESS");
    assert!(b.result["archived"].as_array().expect("archived").is_empty());

    // Scenario 2: the incident's commit, no test with it.
    let good = head(&p);
    p.commit_incident();
    let base = format!("GIT_PREVIOUS_SUCCESSFUL_COMMIT={good}");
    let b = run(&p, "Jenkinsfile", 2, &["--env", &base, "--param", "PRODUCTION_BAKE=1s"]);
    assert_eq!(b.code, 1, "{}", b.console);
    assert_eq!(b.result["result"], "FAILURE");
    assert_eq!(b.stages(), statuses(&["SUCCESS", "FAILURE", "SKIPPED", "SKIPPED", "SKIPPED", "SKIPPED"]));
    assert_eq!(b.result["stages"][1]["error"], "script returned exit code 1");
    assert!(b.console.contains("Stage \"Deploy staging\" skipped due to earlier failure(s)"), "{}", b.console);
    assert!(b.console.contains("application.py"), "the gate names the untested change:\n{}", b.console);
    assert_eq!(b.post_ran(), names(&["failure", "cleanup"]));
    assert_eq!(
        b.sh(),
        ["smoke-check", "gate-tests", "rollback", "collect-logs", "safedeploy"]
            .map(|s| (s.to_string(), Value::from(if s == "gate-tests" { 1 } else { 0 })))
    );
    assert_eq!(b.result["archived"], serde_json::json!(["error_hunt.txt"]));
    assert!(b.dir.join("archive/error_hunt.txt").exists());
    assert_eq!(b.result["description"], "build-2 → production: FAILURE");
    assert_eq!(p.served_version("production").as_deref(), Some("build-1"), "production untouched");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM gate_runs WHERE passed = 1"), 1);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM gate_runs WHERE passed = 0"), 1);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE label = 'build-2'"), 0, "nothing deployed");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
}

/// A production bake the smoke check would refuse fails the build in its first stage, before
/// anything deploys: the same refusal after promote would fail the production smoke and roll a
/// good version back.
#[test]
fn a_bad_production_bake_fails_the_build_before_anything_deploys() {
    let p = Project::in_workspace();
    for (n, bake) in ["", "0s", "25h", "-1s", "two minutes", " "].into_iter().enumerate() {
        let param = format!("PRODUCTION_BAKE={bake}");
        let b = run(&p, "Jenkinsfile", n as u32 + 1, &["--param", &param]);
        assert_eq!(b.code, 1, "{bake:?}: {}", b.console);
        let stages = statuses(&["FAILURE", "SKIPPED", "SKIPPED", "SKIPPED", "SKIPPED", "SKIPPED"]);
        assert_eq!(b.stages(), stages, "{bake:?}");
        assert!(b.console.contains("smoke-check: error:"), "{bake:?}: {}", b.console);
        assert_eq!(b.result["stages"][0]["error"], "script returned exit code 2", "{bake:?}");
    }
    assert!(!p.state.join("ledger.sqlite3").exists() || p.query_i64("SELECT COUNT(*) FROM deployments") == 0);
}

/// Scenario 3: build 2 passes the gate and staging, but production's Datadog monitor goes to
/// Alert once build 2 serves production; the production smoke fails, and `post { failure }`
/// rolls back to build 1, collects the logs and archives them; the report page, written in
/// `cleanup` (after `failure`), shows build 1 back.
#[test]
fn the_main_jenkinsfile_on_groovy_rolls_a_failing_production_smoke_back_in_post() {
    let p = Project::in_workspace();
    let live = p.state.join("local/envs/production/state.json");
    let monitor = Server::start(move |_, _| {
        let state = std::fs::read_to_string(&live).unwrap_or_default();
        let bad = state.contains("\"label\":\"build-2\"") || state.contains("\"label\": \"build-2\"");
        let answer = serde_json::json!({
            "id": 42, "name": "url-shortener 5xx rate", "type": "metric alert",
            "query": "sum(last_5m):sum:trace.flask.request.errors{env:production}.as_count() > 5",
            "overall_state": if bad { "Alert" } else { "OK" }, "tags": ["service:url-shortener"], "message": "@webhook-jenkins"
        });
        Resp::new(200, answer.to_string())
    });
    p.edit_config(|c| format!("{c}\n[smoke.datadog]\napi_url = \"{}\"\nmonitors = [42]\n", monitor.url()));
    p.commit_all("Watch the 5xx monitor", "Team");
    // The agent's environment holds the Datadog keys here (the main job binds no credentials).
    // A short bake, its rounds 300 ms apart.
    let keys = [
        "--env",
        "DD_API_KEY=dd-api-key-0123456789",
        "--env",
        "DD_APP_KEY=dd-app-key-9876543210",
        "--param",
        "PRODUCTION_BAKE=1s",
        "--env",
        "SAFEDEPLOY_INTERVAL=300ms",
    ];
    let b = run(&p, "Jenkinsfile", 1, &keys);
    assert_eq!(b.code, 0, "{}", b.console);

    let good = head(&p);
    p.write("application.py", &std::fs::read_to_string(p.app.join("application.py")).expect("app").replace(
        "@app.get(\"/health\")",
        "@app.get(\"/robots.txt\")\ndef robots():\n    return \"User-agent: *\\nDisallow: /\\n\", 200, {\"Content-Type\": \"text/plain\"}\n\n\n@app.get(\"/health\")",
    ));
    p.write(
        "tests/test_robots.py",
        "from application import app\n\n\ndef test_robots_txt_disallows_crawlers():\n    r = app.test_client().get(\"/robots.txt\")\n    assert r.status_code == 200 and b\"Disallow: /\" in r.data\n",
    );
    p.commit_all("Keep crawlers off the short links", "New Hire");
    let mut args = keys.to_vec();
    let base = format!("GIT_PREVIOUS_SUCCESSFUL_COMMIT={good}");
    args.extend(["--env", &base]);
    let b = run(&p, "Jenkinsfile", 2, &args);
    assert_eq!(b.code, 1, "{}", b.console);
    assert_eq!(b.stages(), statuses(&["SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "FAILURE"]));
    assert!(b.console.contains("Datadog monitor 42 (url-shortener 5xx rate) is Alert"), "{}", b.console);
    assert_eq!(b.post_ran(), names(&["failure", "cleanup"]));
    assert_eq!(p.served_version("production").as_deref(), Some("build-1"), "rolled back in post");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 1);
    let hunt = std::fs::read_to_string(b.dir.join("archive/error_hunt.txt")).expect("archived");
    assert!(hunt.contains("production"), "{hunt}");
    let page = std::fs::read_to_string(b.dir.join("htmlreports/safedeploy_report/index.html")).expect("published");
    assert!(page.contains("data-key=\"incidents.count\" data-value=\"1\""), "the page after the rollback: {page}");
    assert_eq!(b.result["description"], "build-2 → production: FAILURE");
    for secret in ["dd-api-key-0123456789", "dd-app-key-9876543210"] {
        assert!(!b.console.contains(secret), "{secret} in the console");
    }
}

/// Scenario 4: the alert job, triggered by Datadog's webhook through the Generic Webhook
/// Trigger: a Triggered alert rolls production back and notifies; a Recovered one changes
/// nothing; a webhook with the wrong token triggers nothing. Credentials are bound only around
/// collect-logs and masked in the console.
#[test]
fn the_alert_jenkinsfile_on_groovy_for_triggered_and_recovered_alerts() {
    let p = Project::in_workspace();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let r = received.clone();
    let hooks = Server::start(move |req, _| {
        r.lock().expect("lock").push((req.path.clone(), String::from_utf8_lossy(&req.body).into_owned()));
        Resp::new(if req.path == "/api/v1/events" { 202 } else { 200 }, "ok")
    });
    p.edit_config(|c| c.replace("[logs]\n", &format!("[logs]\ndatadog_api_url = \"{}\"\n", hooks.url())));
    p.commit_all("Datadog events to the local server", "Team");
    p.v2_failing_in_production();
    let tmp = p.workspace().with_file_name("jenkins");
    std::fs::create_dir_all(&tmp).expect("dir");
    let slack = format!("{}/services/T000/B000/slacksecret123", hooks.url());
    let creds = serde_json::json!({
        "slack-webhook-url": slack, "datadog-api-key": "dd-api-key-0123456789", "datadog-webhook-token": "hook-token-4242"
    });
    std::fs::write(tmp.join("credentials.json"), creds.to_string()).expect("credentials");
    let payload = |transition: &str| {
        let body = serde_json::json!({
            "alert_id": "4711", "transition": transition, "title": format!("[{transition}] url-shortener 5xx rate"),
            "date": safedeploy::clock::now_ms().to_string(), "hostname": "web-1", "tags": "service:url-shortener,env:production",
            "scope": "env:production", "link": "https://app.datadoghq.com/monitors/4711"
        });
        let file = tmp.join(format!("{transition}.json"));
        std::fs::write(&file, body.to_string()).expect("payload");
        file.display().to_string()
    };
    let creds = tmp.join("credentials.json").display().to_string();
    let alert = |n: u32, transition: &str, token: &str| {
        let file = payload(transition);
        run(
            &p,
            "jenkins/alert.Jenkinsfile",
            n,
            &["--credentials", &creds, "--webhook", &file, "--webhook-token", token],
        )
    };

    // A webhook with another token triggers nothing, and changes nothing.
    let b = alert(1, "Triggered", "not-the-token");
    assert_eq!(b.code, 4, "{}", b.console);
    assert!(b.console.contains("does not match the job's (credential datadog-webhook-token)"), "{}", b.console);
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));

    let b = alert(2, "Triggered", "hook-token-4242");
    assert_eq!(b.code, 0, "{}", b.console);
    assert_eq!(
        b.stages(),
        [("Build tools", "SUCCESS"), ("Roll back production", "SUCCESS")].map(|(a, s)| (a.into(), s.into()))
    );
    assert_eq!(b.sh(), [("rollback", 0), ("collect-logs", 0)].map(|(s, c)| (s.to_string(), Value::from(c))));
    // The trigger filled the parameter, writeFile wrote it, rollback read it.
    assert!(b.result["params"]["DD_PAYLOAD"].as_str().unwrap_or("").contains("\"transition\":\"Triggered\""));
    assert_eq!(b.step("rollback")["locks"], serde_json::json!(["url-shortener-production"]));
    assert_eq!(b.step("collect-logs")["credentials"], serde_json::json!(["SLACK_WEBHOOK_URL", "DD_API_KEY"]));
    assert_eq!(b.step("rollback")["credentials"], serde_json::json!([]), "credentials only inside withCredentials");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert!(p.query_strings("SELECT reason FROM incidents")[0].starts_with("Datadog alert 4711 (Triggered"));
    let hunt = std::fs::read_to_string(b.dir.join("archive/error_hunt.txt")).expect("archived");
    assert!(hunt.contains("=== suspect change\napplication.py:67 in load_urls"), "{hunt}");
    let got = received.lock().expect("lock").clone();
    assert!(got.iter().any(|(path, body)| path.starts_with("/services/") && body.contains("TypeError")), "{got:?}");
    assert!(got.iter().any(|(path, _)| path == "/api/v1/events"), "{got:?}");
    for secret in ["slacksecret123", "dd-api-key-0123456789", "hook-token-4242"] {
        assert!(!b.console.contains(secret), "{secret} in the console:\n{}", b.console);
    }

    // Recovered: acknowledged, nothing rolled back.
    let incidents = p.query_i64("SELECT COUNT(*) FROM incidents");
    let deployments = p.query_i64("SELECT COUNT(*) FROM deployments");
    let b = alert(3, "Recovered", "hook-token-4242");
    assert_eq!(b.code, 0, "{}", b.console);
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), incidents);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments"), deployments);
}

/// The team's Jenkinsfile (installed tools) and the shared library's step, each a clean run.
#[test]
fn the_team_jenkinsfile_and_the_shared_library_step_on_groovy() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (file, extra) in [
        ("examples/team-app/Jenkinsfile", vec![]),
        ("examples/team-app/Jenkinsfile.with-library", vec!["--library", root]),
    ] {
        // The config at the repository's root; the state where the tools' default puts it.
        let p = Project::in_dirs("app", "xdg/safedeploy/url-shortener");
        let b = run(&p, file, 9, &extra);
        assert_eq!(b.code, 0, "{file}:\n{}", b.console);
        let names: Vec<String> = b.sh().into_iter().map(|(s, _)| s).collect();
        assert_eq!(
            names,
            ["safedeploy", "gate-tests", "deploy-staging", "smoke-check", "promote", "smoke-check"],
            "{file}"
        );
        assert_eq!(p.served_version("production").as_deref(), Some("build-9"), "{file}");
        assert_eq!(b.post_ran(), Vec::<String>::new(), "{file}");
        assert_eq!(b.step("promote")["locks"], serde_json::json!(["url-shortener-production"]), "{file}");
    }
}

/// Every Jenkinsfile runs clean on Groovy with no `sh` run (structure and Groovy only), and each
/// typo below, made in each file that has the text it changes, stops the build: refused as an
/// invalid pipeline (exit 2) or failed (exit 1), never SUCCESS.
#[test]
fn each_deliberate_typo_in_a_jenkinsfile_stops_the_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tmp");
    let creds = tmp.path().join("credentials.json");
    std::fs::write(&creds, r#"{"slack-webhook-url": "https://hooks.slack.test/services/T0/B0/sweep", "datadog-api-key": "sweep-dd-key", "datadog-webhook-token": "sweep-token"}"#).expect("c");
    let misplace_post = |t: &str| {
        let i = t.rfind("\n    post {")?;
        let end = t.rfind('}')?;
        let (before, post) = (&t[..i], &t[i..end]);
        Some(format!("{}\n}}\n", before.replacen("    stages {\n", &format!("    stages {{{post}\n"), 1)))
    };
    type Edit = Box<dyn Fn(&str) -> Option<String>>;
    type Typo = (&'static str, Edit);
    let replace = |from: &'static str, to: &'static str| -> Edit {
        Box::new(move |t: &str| t.contains(from).then(|| t.replacen(from, to, 1)))
    };
    let typos: Vec<Typo> = vec![
        ("lok( for lock(", replace("lock(", "lok(")),
        ("${BUILD_NUMBR}", replace("${BUILD_NUMBER}", "${BUILD_NUMBR}")),
        ("${WORKSPACES}", replace("${WORKSPACE}", "${WORKSPACES}")),
        ("the pipeline's post inside stages", Box::new(misplace_post)),
        ("shh for sh", replace("sh '", "shh '")),
        ("post condition allways", replace("always {", "allways {")),
        ("post condition failed", replace("failure {", "failed {")),
        ("archiveArtifacts artifact:", replace("archiveArtifacts artifacts:", "archiveArtifacts artifact:")),
        ("junit testResult:", replace("testResults:", "testResult:")),
        ("timeout unit MINUTE", replace("unit: 'MINUTES'", "unit: 'MINUTE'")),
        ("booleanParam defaultValue 'false'", replace("defaultValue: false", "defaultValue: 'false'")),
        ("a stage named twice", replace("stage('Smoke staging')", "stage('Promote')")),
        ("a missing closing brace", Box::new(|t: &str| t.rfind('}').map(|i| t[..i].to_string()))),
        ("strng( for string(", replace("[string(", "[strng(")),
        ("params.DD_PAYLOD", replace("params.DD_PAYLOAD", "params.DD_PAYLOD")),
        ("genericVariable:", replace("genericVariables:", "genericVariable:")),
        ("stage steps as step", replace("steps {", "step {")),
    ];
    let files =
        ["Jenkinsfile", "jenkins/alert.Jenkinsfile", "examples/team-app/Jenkinsfile", "vars/safedeployPipeline.groovy"];
    let mut cases = vec![]; // (file written, what it is, the typo or None)
    for file in files {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let dir = tmp.path().join(cases.len().to_string());
        // The file as written (case 0), then each typo that finds the text it changes.
        let variants = std::iter::once(("as written", Some(text.clone())))
            .chain(typos.iter().map(|(what, typo)| (*what, typo(&text))));
        for (i, (what, changed)) in variants.enumerate() {
            let Some(changed) = changed else { continue };
            assert!(i == 0 || changed != text, "{file}: {what} changed nothing");
            // A library step is run through a Jenkinsfile that calls it, from a library of its own.
            let lib = dir.join(format!("lib{i}"));
            let path = if file.starts_with("vars/") {
                std::fs::create_dir_all(lib.join("vars")).expect("vars");
                std::fs::write(lib.join("vars/safedeployPipeline.groovy"), &changed).expect("var");
                let jf = lib.join("Jenkinsfile");
                std::fs::write(&jf, crate::support::repo_file("examples/team-app/Jenkinsfile.with-library"))
                    .expect("jf");
                jf
            } else {
                std::fs::create_dir_all(&dir).expect("dir");
                let jf = dir.join(format!("{i}.Jenkinsfile"));
                std::fs::write(&jf, &changed).expect("jf");
                jf
            };
            cases.push((path, file, what, i > 0, file.starts_with("vars/").then_some(lib)));
        }
    }
    // Each case twice, one JVM each time: the success path, then the failure path (the last
    // stage's step fails, so the failure blocks run). A clean file passes the first and fails
    // the second with only that injected error; a typo must show in either.
    let args: Vec<String> = cases
        .iter()
        .map(|c| match &c.4 {
            Some(lib) => format!("{}::{}", c.0.display(), lib.display()),
            None => c.0.display().to_string(),
        })
        .collect();
    let run_stub = |fail: Option<&str>| -> Vec<Value> {
        let out_file = tmp.path().join("results.json");
        let mut c = harness();
        c.args(["--stub-sh", "--credentials"])
            .arg(&creds)
            .arg("--workspace")
            .arg(tmp.path())
            .arg("--result")
            .arg(&out_file);
        if let Some(f) = fail {
            c.args(["--fail-sh", f]);
        }
        let out = c.args(&args).output().expect("harness");
        let text = std::fs::read_to_string(&out_file)
            .unwrap_or_else(|_| panic!("no results: {}", String::from_utf8_lossy(&out.stderr)));
        serde_json::from_str::<Value>(&text).expect("json").as_array().expect("list").clone()
    };
    let last_step =
        r#"^(smoke-check --env (production|"\$SAFEDEPLOY_TO") --expect-version|rollback --datadog-payload)"#;
    let (passing, failing) = (run_stub(None), run_stub(Some(last_step)));
    assert_eq!((passing.len(), failing.len()), (cases.len(), cases.len()));
    let said = |r: &Value| {
        let errors: Vec<&str> =
            r["errors"].as_array().map(|e| e.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        format!(
            "{} {}",
            r["result"].as_str().unwrap_or(""),
            r["invalid"].as_str().map(|i| vec![i]).unwrap_or(errors).join("; ")
        )
    };
    let mut outcomes: Vec<(String, &str, &str, bool)> = vec![];
    for ((case, ok), bad) in cases.iter().zip(&passing).zip(&failing) {
        let injected_only =
            bad["result"] == "FAILURE" && bad["errors"] == serde_json::json!(["script returned exit code 1"]);
        let clean = ok["result"] == "SUCCESS" && injected_only;
        let outcome = if clean {
            "clean".to_string()
        } else if ok["result"] != "SUCCESS" {
            said(ok)
        } else {
            format!("(failure path) {}", said(bad))
        };
        outcomes.push((outcome, case.1, case.2, case.3));
    }
    let mut table = String::new();
    for (outcome, file, what, is_typo) in &outcomes {
        table.push_str(&format!("{file:<34} {what:<36} {}\n", outcome.chars().take(160).collect::<String>()));
        assert_eq!(outcome == "clean", !is_typo, "{file}: {what}: {outcome}");
    }
    eprintln!("{table}");
    let typos_made = outcomes.iter().filter(|o| o.3).count();
    assert!(typos_made >= 50, "{typos_made} typos made:\n{table}");
}

/// A bad harness option is exit 2 naming it, before any build runs.
#[test]
fn bad_harness_options_are_exit_2_naming_the_option() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bad_json = tmp.path().join("bad.json");
    std::fs::write(&bad_json, "[1").expect("json");
    let list = tmp.path().join("list.json");
    std::fs::write(&list, "[1]").expect("json");
    let jenkinsfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("Jenkinsfile").display().to_string();
    let (bad, list) = (bad_json.display().to_string(), list.display().to_string());
    let cases: [(&[&str], &str); 7] = [
        (&["--credentials", "/nonexistent.json"], "--credentials /nonexistent.json: expected a readable JSON file"),
        (&["--credentials", &bad], "expected a readable JSON file"),
        (&["--credentials", &list], "expected a JSON object of id: secret"),
        (&["--webhook", &bad], "--webhook"),
        (&["--workspace", "/nonexistent"], "--workspace /nonexistent: not a directory"),
        (&["--skip-sh", "("], "Unclosed group"),
        (&["--env", "=x"], "--env =x: expected NAME=VALUE"),
    ];
    for (args, said) in cases {
        let out =
            harness().current_dir(tmp.path()).arg("--stub-sh").args(args).arg(&jenkinsfile).output().expect("harness");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines().next().is_some_and(|l| l.starts_with("run-jenkinsfile: ") && l.contains(said)),
            "{args:?}: {err}"
        );
        assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{args:?}: no build ran");
    }
    let out = harness().arg("/nonexistent.Jenkinsfile").output().expect("harness");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.Jenkinsfile: no such Jenkinsfile"));
}

/// `scripts/groovy` compiles a script once per content into `.tools/groovy-classes/<key>` (the
/// key of the content compiled), runs the compiled class after that without compiling again,
/// names the script (not its copy) in a compile error and stores nothing for it, and removes the
/// entries no run has used for 30 days when it compiles.
#[test]
fn scripts_groovy_compiles_once_per_content_and_prunes_unused_entries() {
    use sha2::{Digest, Sha256};
    let real = Path::new(env!("CARGO_MANIFEST_DIR"));
    let install = Command::new(real.join("scripts/groovy")).arg("--install").output().expect("scripts/groovy");
    assert!(install.status.success(), "{}", String::from_utf8_lossy(&install.stderr));
    // A checkout of its own: the script and the installed Groovy, an empty cache.
    let root = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(root.path().join("scripts")).expect("scripts");
    std::fs::create_dir_all(root.path().join(".tools")).expect("tools");
    std::fs::copy(real.join("scripts/groovy"), root.path().join("scripts/groovy")).expect("copy, mode kept");
    let script_text = std::fs::read_to_string(real.join("scripts/groovy")).expect("script");
    std::os::unix::fs::symlink(real.join(".tools/groovy-lint"), root.path().join(".tools/groovy-lint")).expect("link");
    let version = script_text.lines().find_map(|l| l.strip_prefix("version=")).expect("version= line");
    let cache = root.path().join(".tools/groovy-classes");
    let entries = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&cache)
            .map(|d| d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let key = |content: &str| {
        let digest = Sha256::digest(format!("{version} Hello\n{content}"));
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..32].to_string()
    };
    let groovy = |file: &Path, args: &[&str]| {
        let out = Command::new(root.path().join("scripts/groovy")).arg(file).args(args).output().expect("groovy");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A directory last used `days` ago.
    let age = |dir: &Path, days: u64| {
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 24 * 3600);
        std::fs::File::open(dir).expect("dir").set_modified(then).expect("mtime");
    };
    let hello = root.path().join("Hello.groovy");
    let first = "println 'hello ' + args.join(',')\n";
    std::fs::write(&hello, first).expect("hello");

    let (code, out, err) = groovy(&hello, &["a", "b"]);
    assert_eq!((code, out.as_str()), (Some(0), "hello a,b\n"), "{err}");
    assert_eq!(entries(), vec![key(first)], "one entry, named by the content compiled");
    let class = cache.join(key(first)).join("Hello.class");
    let compiled = std::fs::metadata(&class).expect("Hello.class").modified().expect("mtime");

    // Run again: the class is run as it is, and its entry is marked as used.
    age(&cache.join(key(first)), 40);
    let (code, out, _) = groovy(&hello, &["c"]);
    assert_eq!((code, out.as_str()), (Some(0), "hello c\n"));
    assert_eq!(std::fs::metadata(&class).expect("class").modified().expect("mtime"), compiled, "not compiled again");
    let used = std::fs::metadata(cache.join(key(first))).expect("entry").modified().expect("mtime");
    assert!(used.elapsed().expect("clock") < std::time::Duration::from_secs(24 * 3600), "the run marks its entry used");

    // A compile removes what no run used for 30 days, and only that.
    for (dir, days) in [("unused", 40), ("recent", 29)] {
        std::fs::create_dir_all(cache.join(dir)).expect("dir");
        age(&cache.join(dir), days);
    }
    let second = "println 'bye'\n";
    std::fs::write(&hello, second).expect("hello");
    let (code, out, err) = groovy(&hello, &[]);
    assert_eq!((code, out.as_str()), (Some(0), "bye\n"), "{err}");
    let mut want = vec![key(first), key(second), "recent".to_string()];
    want.sort();
    assert_eq!(entries(), want);

    // A script that does not compile: exit 1, Groovy's error naming the script, nothing stored.
    let bad = root.path().join("Bad.groovy");
    std::fs::write(&bad, "def x =\nprintln(\n").expect("bad");
    let (code, out, err) = groovy(&bad, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("{}: 2:", bad.display())), "the error names the script: {err}");
    assert!(!err.contains(".compiling."), "the copy's path is not shown: {err}");
    assert!(err.ends_with(&format!("scripts/groovy: {} does not compile (above)\n", bad.display())), "{err}");
    assert_eq!(entries(), want, "nothing stored, no compile directory left");
}
