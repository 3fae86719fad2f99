//! `safedeploy report`: the page and the document say what the ledger holds — every figure on
//! the page (its `data-value`) is read back with an XML parser and checked against the `--json`
//! document, and the document against the ledger's own rows.

use crate::support::{Project, output};

/// The incident replayed through every layer: the gate fails v2's commit, staging's smoke check
/// fails v2, promote stops it before traffic, then it is forced into production, fails its
/// smoke check there and is rolled back.
fn the_incident_through_every_layer(p: &Project) {
    p.v1_everywhere();
    p.commit_incident();
    p.cmd("gate-tests").assert().code(1);
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().code(1);
    p.cmd("promote").args(["--version", "v2", "--force", "--reason", "t"]).assert().code(1);
    p.v2_forced_and_rolled_back();
}

impl Project {
    fn v2_forced_and_rolled_back(&self) {
        self.cmd("promote")
            .args(["--version", "v2", "--force", "--reason", "t", "--skip-pre-traffic", "test"])
            .assert()
            .success();
        self.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
        self.cmd("rollback").assert().success();
    }
}

/// The page, read as XML (it starts with the HTML doctype).
fn parse(page: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    roxmltree::Document::parse_with_options(page, opts).expect("the page is well-formed XHTML")
}

/// Every `data-key` figure of the page, with its value.
fn figures(page: &str) -> Vec<(String, String)> {
    let doc = parse(page);
    doc.descendants()
        .filter(|n| n.attribute("data-key").is_some())
        .map(|n| {
            (n.attribute("data-key").unwrap_or_default().into(), n.attribute("data-value").unwrap_or_default().into())
        })
        .collect()
}

fn one(figs: &[(String, String)], key: &str) -> String {
    let v: Vec<&String> = figs.iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect();
    assert_eq!(v.len(), 1, "{key}: {figs:?}");
    v[0].clone()
}

#[test]
fn every_figure_on_the_page_is_the_documents_and_the_document_is_the_ledgers() {
    let p = Project::new();
    the_incident_through_every_layer(&p);
    let page = p.app.join("report/index.html");
    let a = p.cmd("safedeploy").args(["report", "--json", "--html"]).arg(&page).assert().success();
    let (out, err) = output(&a);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(err.contains("DORA: "), "{err}");
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(!html.contains("<script"), "no script");
    assert!(!html.contains("http://") || !html.contains("src=\"http"), "nothing fetched");
    let figs = figures(&html);

    // The document against the ledger.
    let ledger_deployments = p.query_i64("SELECT COUNT(*) FROM deployments");
    assert_eq!(doc["deployment_count"].as_i64(), Some(ledger_deployments));
    assert_eq!(doc["incidents"].as_array().map(Vec::len), Some(p.query_i64("SELECT COUNT(*) FROM incidents") as usize));
    assert_eq!(doc["budget"]["used_ms"].as_i64(), Some(p.query_i64("SELECT SUM(downtime_ms) FROM incidents")));
    assert_eq!(doc["budget"]["allowed_ms"].as_i64(), Some(900_000));
    let promoted = p.query_i64(
        "SELECT COUNT(*) FROM deployments WHERE env = 'production' AND action = 'promote' AND outcome = 'healthy'",
    );
    assert_eq!(promoted, 2, "v1, then v2 forced");
    assert_eq!(doc["dora"]["deployments"].as_i64(), Some(promoted));
    assert_eq!(doc["dora"]["failed_changes"].as_i64(), Some(1));
    assert_eq!(doc["dora"]["change_failure_rate"].as_f64(), Some(0.5));
    let mut leads: Vec<i64> = p
        .query_strings(
            "SELECT CAST(d.switched_at - v.committed_at AS TEXT) FROM deployments d JOIN versions v ON v.label = d.label
             WHERE d.env = 'production' AND d.action = 'promote' AND d.outcome = 'healthy'",
        )
        .iter()
        .map(|s| s.parse().expect("ms"))
        .collect();
    leads.sort();
    assert_eq!(doc["dora"]["lead_time_ms"].as_i64(), Some((leads[0] + leads[1]) / 2));
    let restore = p.query_i64("SELECT restored_at - detected_at FROM incidents");
    assert_eq!(doc["dora"]["time_to_restore_ms"].as_i64(), Some(restore));
    assert_eq!(
        doc["stopped"],
        serde_json::json!({"gate": 1, "staging_smoke": 1, "pre_traffic": 1, "canary": 0, "production_smoke": 1, "alert": 0, "by_hand": 0})
    );
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM gate_runs WHERE passed = 0"), 1);

    // The page against the document.
    for (key, path) in [
        ("budget.used_ms", "/budget/used_ms"),
        ("budget.left_ms", "/budget/left_ms"),
        ("budget.allowed_ms", "/budget/allowed_ms"),
        ("dora.lead_time_ms", "/dora/lead_time_ms"),
        ("dora.time_to_restore_ms", "/dora/time_to_restore_ms"),
        ("deployments.count", "/deployment_count"),
        ("stopped.gate", "/stopped/gate"),
        ("stopped.staging_smoke", "/stopped/staging_smoke"),
        ("stopped.pre_traffic", "/stopped/pre_traffic"),
        ("stopped.production_smoke", "/stopped/production_smoke"),
    ] {
        assert_eq!(one(&figs, key), doc.pointer(path).expect(path).to_string(), "{key}");
    }
    assert_eq!(one(&figs, "dora.change_failure_rate").parse::<f64>().ok(), Some(0.5));
    assert_eq!(one(&figs, "incidents.count"), "1");
    let exposure: Vec<&String> = figs.iter().filter(|(k, _)| k == "incident.exposure_ms").map(|(_, v)| v).collect();
    assert_eq!(exposure, vec![&doc["incidents"][0]["exposure_ms"].to_string()]);
    // The timeline lists each deployment, newest first, with its commit.
    let rows = parse(&html)
        .descendants()
        .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("deployment ")))
        .count();
    assert_eq!(rows as i64, ledger_deployments);
    assert!(html.contains("<polyline points="), "the burn chart");
}

#[test]
fn hostile_values_are_escaped_and_bad_flags_are_exit_2() {
    let p = Project::new();
    // Who deployed comes from Jenkins' variables: markup in them stays text.
    p.cmd("deploy-staging")
        .args(["--version", "v1"])
        .env("JOB_NAME", "<script>alert('x')</script>&\"")
        .env("BUILD_NUMBER", "1\u{7}")
        .assert()
        .success();
    let page = p.app.join("r.html");
    p.cmd("safedeploy").args(["report", "--html"]).arg(&page).assert().success();
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(!html.contains("<script>"), "{html}");
    let doc = parse(&html);
    assert!(doc.descendants().any(|n| n.text().is_some_and(|t| t.contains("<script>alert('x')</script>&\""))));
    // Nothing asked for, a bad --since, an unknown environment, a page over a directory.
    for args in [
        vec!["report"],
        vec!["report", "--json", "--since", "yesterday-ish"],
        vec!["report", "--json", "--since", "2999-01-01"],
        vec!["report", "--json", "--env", "nope"],
    ] {
        let a = p.cmd("safedeploy").args(&args).assert().code(2);
        assert!(output(&a).1.contains("error"), "{args:?}");
    }
    std::fs::create_dir_all(p.app.join("adir")).expect("dir");
    p.cmd("safedeploy").args(["report", "--html"]).arg(p.app.join("adir")).assert().code(2);
    // `-` is no file name for a report: no file named `-` appears.
    p.cmd("safedeploy").args(["report", "--html", "-"]).assert().code(2);
    p.cmd("collect-logs").args(["--input", "r.html", "--out", "-"]).assert().code(2);
    assert!(!p.app.join("-").exists());
    // Nor is a name that looks like an option (`--out=-v`, a mistyped flag): exit 2, nothing
    // written; `./-v` says it is meant.
    for (bin, args) in [
        ("safedeploy", vec!["report", "--html=-v"]),
        ("collect-logs", vec!["--input", "r.html", "--out=-v"]),
        ("gate-tests", vec!["--junit-out=-v"]),
        ("smoke-check", vec!["--env", "staging", "--junit-out=-v"]),
        ("safedeploy", vec!["man", "--out=-v"]),
    ] {
        let a = p.cmd(bin).args(&args).assert().code(2);
        assert!(output(&a).1.contains("starts with '-', like an option"), "{bin} {args:?}: {}", output(&a).1);
        assert!(!p.app.join("-v").exists(), "{bin} {args:?}");
    }
    // An empty window is a mistake, not an empty report.
    let a = p.cmd("collect-logs").args(["--input", "r.html", "--since", "1h", "--until", "2h"]).assert().code(2);
    assert!(output(&a).1.contains("--until 2h is before --since 1h"), "{}", output(&a).1);
    // A period with nothing in it is a page of zeros, not an error.
    let a = p.cmd("safedeploy").args(["report", "--json", "--since", "1ms"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    assert_eq!(doc["deployment_count"].as_i64(), Some(0));
    assert!(doc["dora"]["lead_time_ms"].is_null());
}

/// Headless Chromium, as scripts/test finds it (`SAFEDEPLOY_CHROMIUM`), or Debian's path.
/// Without it this test cannot run: it says so, and fails where a browser is required
/// (`SAFEDEPLOY_REQUIRE_BROWSER=1`, as CI sets it).
fn chromium() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("SAFEDEPLOY_CHROMIUM")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/usr/bin/chromium")))
        .filter(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("SAFEDEPLOY_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "SAFEDEPLOY_REQUIRE_BROWSER=1 but no chromium (apt-get install chromium)"
        );
        eprintln!("the browser test did not run: no chromium (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on `args` and returns its stdout; bounded to a minute.
fn headless(browser: &std::path::Path, profile: &std::path::Path, args: &[String]) -> String {
    let mut child = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium");
    let mut out = String::new();
    let reader = {
        let mut stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).ok();
            s
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish within a minute: {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    out.push_str(&reader.join().unwrap_or_default());
    out
}

#[test]
fn the_page_renders_in_headless_chromium_with_its_figures_and_is_not_blank() {
    let Some(browser) = chromium() else { return };
    let p = Project::new();
    the_incident_through_every_layer(&p);
    let page = p.app.join("report.html");
    let a = p.cmd("safedeploy").args(["report", "--json", "--html"]).arg(&page).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    let profile = p.app.join("chromium-profile");
    let url = format!("file://{}", page.display());
    // The DOM as the browser built it: the keys, the incident, the budget.
    let dom = headless(&browser, &profile, &["--dump-dom".into(), url.clone()]);
    for key in ["dora.per_week", "dora.lead_time_ms", "dora.change_failure_rate", "dora.time_to_restore_ms"] {
        assert!(dom.contains(&format!("data-key=\"{key}\"")), "{key} missing from the DOM");
    }
    assert!(dom.contains("50.0 % (1 of 2)"), "change failure rate as read: {dom}");
    let used = doc["budget"]["used_ms"].to_string();
    assert!(dom.contains(&format!("data-key=\"budget.used_ms\" data-value=\"{used}\"")), "{dom}");
    assert_eq!(dom.matches("class=\"incident\"").count(), 1);
    assert!(dom.contains("<polyline"), "the burn chart");
    // A screenshot, beside one of an empty page taken the same way: the page draws something.
    let blank_page = p.app.join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").expect("blank");
    let shot = |target: &std::path::Path, png: &std::path::Path| {
        headless(
            &browser,
            &profile,
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1280,1600".into(),
                format!("file://{}", target.display()),
            ],
        );
        std::fs::metadata(png).map(|m| m.len()).unwrap_or(0)
    };
    let blank = shot(&blank_page, &p.app.join("blank.png"));
    let report = shot(&page, &p.app.join("report.png"));
    assert!(blank > 0, "chromium took no screenshot");
    assert!(
        report > 4 * blank && report > 20_000,
        "the page looks blank: {report} bytes against {blank} for an empty page"
    );
    if let Ok(dir) = std::env::var("SAFEDEPLOY_SCREENSHOT_DIR") {
        std::fs::copy(p.app.join("report.png"), std::path::Path::new(&dir).join("report.png")).expect("copy");
    }
}
