//! The Node example (`examples/notes-node`: node's http module, `node --test` with its JUnit and
//! lcov reporters, `web: node server.js`, no version route) through the whole pipeline with the
//! real binaries, node and nginx: the gate on node's reports, staging, production, then a bad
//! commit stopped by the gate and by staging's smoke check, forced into production anyway,
//! rolled back, and collect-logs naming the Node error, its in-app frame and the commit.

use crate::support::{Project, output};

/// What nginx says served the last request to `env`.
fn served_by(p: &Project, env: &str) -> Option<String> {
    let r = reqwest::blocking::get(format!("{}/health", p.url(env))).ok()?;
    r.headers().get("x-safedeploy-version")?.to_str().ok().map(str::to_string)
}

fn write_note(p: &Project, env: &str, text: &str) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/notes", p.url(env)))
        .json(&serde_json::json!({ "text": text }))
        .send()
        .expect("POST /notes");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// The test cases of the gate's JUnit report.
fn junit_cases(p: &Project) -> usize {
    std::fs::read_to_string(p.app.join("reports/junit.xml")).expect("junit report").matches("<testcase ").count()
}

#[test]
fn the_node_example_goes_through_the_pipeline_and_its_bad_commit_is_named_by_its_node_frame() {
    let p = Project::example("notes-node");
    assert!(!p.app.join("reports").exists(), "the example ships no reports directory");

    // The gate on v1: node's reporters write into reports/, which the gate creates.
    let a = p.cmd("gate-tests").assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("ok   tests: 3 executed, 0 skipped"), "{err}");
    assert!(!err.contains("Warning"), "node warns of nothing:\n{err}");
    assert_eq!(junit_cases(&p), 3);

    // v1 to staging and production, checked by the user's journey; the version is read from
    // the proxy's header (the app has no version route).
    p.v1_everywhere();
    assert_eq!(served_by(&p, "production").as_deref(), Some("v1"));
    let (status, note) = write_note(&p, "production", "  hello  ");
    assert_eq!((status, note["text"].as_str()), (201, Some("hello")), "{note}");

    // The state dir is outside the app: the suite runs its own 3 tests, not every version's.
    p.cmd("gate-tests").assert().success();
    assert_eq!(junit_cases(&p), 3, "old versions' test files were run too");

    // A new hire adds a summary to each note, read from a field that does not exist.
    let patch = p.app.join("incident/v2.patch");
    p.git(&["apply", &patch.to_string_lossy()]);
    p.commit_all("Show a summary of each note", "New Hire");

    // Layer 1: the gate — the change comes without a test change, and the suite fails.
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1"]).assert().code(1);
    let (_, err) = output(&a);
    assert!(err.contains("a note is shown with its id, text and time"), "the failing test is named:\n{err}");
    assert!(err.contains("change policy: 1 source file(s) changed and no test file"), "{err}");

    // Layer 2: staging. v2 starts and answers /health, but writing a note fails.
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().code(1);
    assert!(output(&a).1.contains("write and read a note / write a note"), "{}", output(&a).1);

    // Forced past both into production: its smoke check fails and the rollback restores v1.
    p.cmd("promote")
        .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "test"])
        .assert()
        .success();
    assert_eq!(write_note(&p, "production", "lost").0, 500, "v2 fails users in production");
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    p.cmd("rollback").args(["--reason", "smoke failed"]).assert().success();
    assert_eq!(served_by(&p, "production").as_deref(), Some("v1"));
    assert_eq!(write_note(&p, "production", "back").0, 201);
    assert_eq!(
        p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"),
        vec!["v2".to_string()],
        "v2 is marked bad, v1 not"
    );

    // collect-logs: the Node error is one group, its frame the app's line, and the suspect the
    // commit that changed that line.
    let a = p.cmd("collect-logs").args(["--env", "production", "--out", "hunt.txt", "--json"]).assert().success();
    let (out, _) = output(&a);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let groups: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "group").collect();
    let error = "TypeError: Cannot read properties of undefined (reading 'split')";
    let found: Vec<&&serde_json::Value> = groups.iter().filter(|g| g["exception"] == error).collect();
    assert_eq!(found.len(), 1, "one group for the error:\n{out}");
    let g = found[0];
    assert_eq!(g["frame"], "lib/notes.js (v2):41 in render", "{g:#}");
    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["type"], "summary");
    let suspect = &summary["suspect"];
    let (good, bad) = (p.git(&["rev-parse", "HEAD~1"]), p.git(&["rev-parse", "HEAD"]));
    assert_eq!(
        (&suspect["file"], &suspect["line"], &suspect["function"]),
        (&"lib/notes.js".into(), &41.into(), &"render".into()),
        "{suspect:#}"
    );
    assert_eq!(
        (&suspect["good"], &suspect["bad"], &suspect["commit"]),
        (&good.into(), &bad.clone().into(), &bad.into())
    );
    assert_eq!((&suspect["author"], &suspect["subject"]), (&"New Hire".into(), &"Show a summary of each note".into()));
    let example = g["example"].as_array().expect("example");
    assert!(example.iter().any(|l| l.to_string().contains("at handle (")), "the whole trace is one record: {g:#}");
    let report = std::fs::read_to_string(p.app.join("hunt.txt")).expect("report");
    assert!(report.contains("=== suspect change\nlib/notes.js:41 in render"), "{report}");
}

#[test]
fn init_on_the_node_example_writes_a_config_the_pipeline_runs_on() {
    let p = Project::example("notes-node");
    std::fs::remove_file(p.config_path()).expect("remove the example's config");
    let ports = format!("{},{}", p.staging_port, p.production_port);
    let a = p.cmd("safedeploy").args(["init", "--ports", &ports]).assert().success();
    let (_, err) = output(&a);
    for said in [
        "web command: node server.js (the Procfile's web: line)",
        "build: none (package.json has no dependencies: nothing to install)",
        "tests: node --test: test/",
        "health path: /health",
        "version: no version route",
    ] {
        assert!(err.contains(said), "{said}:\n{err}");
    }
    assert!(!err.contains("warning:"), "the example lacks nothing: {err}");
    let text = std::fs::read_to_string(p.config_path()).expect("written");
    for line in [
        r#"coverage = "reports/lcov.info""#,
        r#"source = ["**/*.js", "**/*.cjs", "**/*.mjs"]"#,
        r#"path = "/health""#,
        "--test-reporter-destination=reports/junit.xml",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    assert!(!text.contains("pytest"), "{text}");
    p.commit_all("safedeploy init", "Team");
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1"]).assert().success();
    assert!(output(&a).1.contains("ok   tests: 3 executed"), "{}", output(&a).1);
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    assert_eq!(served_by(&p, "staging").as_deref(), Some("v1"));
}

#[test]
fn init_on_node_apps_it_cannot_gate_says_why_and_writes_no_gate() {
    // (package.json, a file, what init says, whether it writes a [gate]).
    let cases: [(&str, &str, &str, bool); 3] = [
        (r#"{"scripts": {"test": "jest --ci"}}"#, "test/a.test.js", "package.json's test script runs jest", false),
        ("{ not json", "test/a.test.js", "package.json is not JSON (key must be a string at line 1 column 3)", true),
        (r#"{"dependencies": {}}"#, "src/app.js", "tests: none found: no [gate] section", false),
    ];
    for (package, file, said, gate) in cases {
        let p = Project::example("notes-node");
        std::fs::remove_file(p.config_path()).expect("remove the example's config");
        std::fs::remove_dir_all(p.app.join("test")).expect("remove the tests");
        p.write("package.json", package);
        p.write(file, "'use strict';\n");
        let ports = format!("{},{}", p.staging_port, p.production_port);
        let a = p.cmd("safedeploy").args(["init", "--ports", &ports]).assert().success();
        let (_, err) = output(&a);
        assert!(err.contains(said), "{package}: {said}:\n{err}");
        let text = std::fs::read_to_string(p.config_path()).expect("written");
        assert_eq!(text.lines().any(|l| l == "[gate]"), gate, "{package}:\n{text}");
        p.cmd("safedeploy").arg("check").assert().success();
    }
}

#[test]
fn diff_coverage_on_nodes_lcov_leaves_out_the_comment_and_blank_lines_it_marks_unrun() {
    let p = Project::example("notes-node");
    // A title for long notes, whose long branch no test takes; inside it two comment lines and a
    // blank one, which node's lcov marks executable and unrun (DA:n,0).
    let notes = std::fs::read_to_string(p.app.join("lib/notes.js")).expect("notes.js");
    p.write(
        "lib/notes.js",
        &notes
            .replace(
                "function render(note) {",
                "function title(text) {\n  if (text.length > 40) {\n    // A long note is shown by its first words,\n    // cut where a word ends.\n\n    const cut = text.lastIndexOf(' ', 40);\n    return text.slice(0, cut > 0 ? cut : 40);\n  }\n  return text;\n}\n\nfunction render(note) {",
            )
            .replace("render, MAX_TEXT }", "render, title, MAX_TEXT }"),
    );
    let tests = std::fs::read_to_string(p.app.join("test/notes.test.js")).expect("tests");
    p.write(
        "test/notes.test.js",
        &format!(
            "{tests}\ntest('a short note is its own title', () => {{\n  assert.strictEqual(require('../lib/notes').title('hi'), 'hi');\n}});\n"
        ),
    );
    p.commit_all("Titles for long notes", "Team");
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1"]).assert().code(1);
    let (_, err) = output(&a);
    let lcov = std::fs::read_to_string(p.app.join("reports/lcov.info")).expect("lcov");
    for unrun_comment in ["DA:42,0", "DA:43,0", "DA:44,0"] {
        assert!(lcov.contains(unrun_comment), "node's lcov no longer marks comments: {unrun_comment}\n{lcov}");
    }
    // Of the changed lines node's lcov measures, the two comments and the blank are left out: 8
    // measured, 5 covered (with them: 5 of 11, 45 %); the uncovered lines listed are code.
    assert!(err.contains("diff coverage: 62.5 % of 8 measured changed lines covered, below the minimum 80 %"), "{err}");
    for code in ["lib/notes.js:45:", "lib/notes.js:46:", "lib/notes.js:47:"] {
        assert!(err.contains(code), "{code}:\n{err}");
    }
    for comment in ["lib/notes.js:42:", "lib/notes.js:43:", "lib/notes.js:44:"] {
        assert!(!err.contains(comment), "{comment} counted:\n{err}");
    }
}
