//! Stack traces of every mainstream web runtime are records with frames: each trace, as its
//! runtime printed it, is one record; its group names the error type and the innermost in-app
//! frame; two call sites throwing the same message are two groups; the same site twice is one.
//! Node's and Java's traces are printed here by node and java themselves (from the programs in
//! tests/fixtures/traces/); Go's and Ruby's are their documented formats (fixtures).

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces")
}

/// What a program printed on stdout and stderr (it is expected to fail).
fn printed(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// collect-logs on `log` with no context: the groups (each as its JSON line) and the summary.
fn collect(dir: &Path, log: &str) -> (Vec<Value>, Value) {
    std::fs::write(dir.join("app.log"), log).expect("log");
    let out = Command::cargo_bin("collect-logs")
        .expect("bin")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["--input", "app.log", "--context", "0", "--out", "hunt.txt", "--json"])
        .output()
        .expect("collect-logs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    let summary = lines.pop().expect("summary");
    (lines, summary)
}

fn group<'a>(groups: &'a [Value], exception_starts: &str, frame: &str) -> &'a Value {
    groups
        .iter()
        .find(|g| g["exception"].as_str().is_some_and(|e| e.starts_with(exception_starts)) && g["frame"] == frame)
        .unwrap_or_else(|| panic!("no group {exception_starts:?} at {frame:?} in {groups:#?}"))
}

/// The example's lines, without the time stamps collect-logs puts before lines it has one for.
fn example(g: &Value) -> Vec<String> {
    let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ").expect("regex");
    let lines = g["example"].as_array().expect("example");
    lines.iter().map(|l| stamp.replace(l.as_str().unwrap_or(""), "").into_owned()).collect()
}

#[test]
fn node_traces_as_node_prints_them_are_records_with_frames() {
    let tmp = tempfile::tempdir().expect("tmp");
    let node = fixtures().join("node");
    let run = |file: &str, arg: &str| printed(std::process::Command::new("node").arg(node.join(file)).arg(arg));
    let crash = run("server.js", "crash");
    assert!(crash.contains("\n    at loadUrls ("), "node printed: {crash}");
    let log = [
        "2026-11-23T22:40:01.000Z listening on 8080".to_string(),
        crash.clone(),
        run("server.js", "logged"),
        run("server.js", "cause"),
        run("async.js", ""),
        crash,
        "2026-11-23T22:40:09.000Z GET /health 200".to_string(),
    ]
    .join("\n");
    let (groups, summary) = collect(tmp.path(), &log);
    let file = |f: &str| node.join(f).display().to_string();
    let at = |f: &str, line: u32, func: &str| format!("{}:{line} in {func}", file(f));

    // The crash (its header `server.js:3`, source line, caret, blank, error, frames, version
    // line) and the logged error from the same site are one group: same frames, same type.
    let crashes = group(&groups, "TypeError: Cannot read properties of undefined", &at("server.js", 3, "loadUrls"));
    assert_eq!(crashes["count"], 3, "{crashes:#}");
    let ex = example(crashes);
    assert_eq!(ex[0], format!("{}:3", file("server.js")), "the crash header starts the record: {ex:#?}");
    assert!(ex.iter().any(|l| l.trim() == "^"), "the caret line: {ex:#?}");
    assert!(ex.iter().any(|l| l.starts_with("Node.js v")), "the version line ends it: {ex:#?}");
    assert!(ex.iter().any(|l| l.contains("at node:internal/main/run_main_module")), "every frame: {ex:#?}");
    // The ENOENT error with its property block `{ errno, code, syscall, path }` is one record;
    // its innermost in-app frame is the app's, not node:fs.
    let enoent = group(&groups, "Error: ENOENT: no such file or directory", &at("server.js", 7, "handler"));
    let ex = example(enoent);
    assert!(ex.iter().any(|l| l.contains("code: 'ENOENT'")) && ex.last().is_some_and(|l| l == "}"), "{ex:#?}");
    // An error with a cause: the cause's frames are in the same record.
    let cause = group(&groups, "Error: loading the store failed", &at("server.js", 15, "Object.<anonymous>"));
    assert!(example(cause).iter().any(|l| l.contains("[cause]: TypeError")), "{cause:#}");
    // `at async loadAll (…)`.
    let asynchronous = group(&groups, "RangeError: store /data/urls.json is corrupt", &at("async.js", 1, "readStore"));
    assert!(example(asynchronous).iter().any(|l| l.contains("at async loadAll (")), "{asynchronous:#}");
    assert_eq!(groups.len(), 4, "{groups:#?}");
    assert_eq!(summary["matches"], 6);
}

#[test]
fn java_traces_as_the_jvm_prints_them_are_records_with_frames() {
    let tmp = tempfile::tempdir().expect("tmp");
    let classes = tmp.path().join("classes");
    let src = fixtures().join("java");
    let sources = ["com/example/shortener/UrlStore.java", "com/example/shortener/Handler.java"].map(|f| src.join(f));
    let javac = std::process::Command::new("javac").arg("-d").arg(&classes).args(&sources).output().expect("javac");
    assert!(javac.status.success(), "{}", String::from_utf8_lossy(&javac.stderr));
    let java = |class: &str, args: &[&str]| {
        printed(std::process::Command::new("java").arg("-cp").arg(&classes).arg(class).args(args))
    };
    let npe = java("com.example.shortener.UrlStore", &[]);
    assert!(npe.starts_with("Exception in thread \"main\" java.lang.NullPointerException"), "java printed: {npe}");
    let log = [
        npe.clone(),
        java("com.example.shortener.UrlStore", &["wrap"]),
        java("com.example.shortener.Handler", &[]),
        "2026-11-23 22:40:09.000 INFO started".to_string(),
        npe,
    ]
    .join("\n");
    let (groups, _) = collect(tmp.path(), &log);
    let npe = group(
        &groups,
        "java.lang.NullPointerException: Cannot invoke",
        "com/example/shortener/UrlStore.java:9 in UrlStore.lookup",
    );
    assert_eq!(npe["count"], 2);
    // Wrapped: the outer exception's type, `Caused by:` and its frames in the same record.
    let wrapped = group(
        &groups,
        "java.lang.IllegalStateException: the store could not answer",
        "com/example/shortener/UrlStore.java:18 in UrlStore.main",
    );
    assert!(example(wrapped).iter().any(|l| l.starts_with("Caused by: java.lang.NullPointerException")), "{wrapped:#}");
    // `... 1 more` ends the record; the JDK's frames are not the app's.
    let handler = group(
        &groups,
        "java.lang.IllegalArgumentException: bad limit",
        "com/example/shortener/Handler.java:12 in Handler.serve",
    );
    let ex = example(handler);
    assert_eq!(ex.last().map(|l| l.trim()), Some("... 1 more"), "{ex:#?}");
    assert!(ex.iter().any(|l| l.contains("at java.base/java.lang.Integer.parseInt")), "{ex:#?}");
    assert_eq!(groups.len(), 3, "{groups:#?}");
}

#[test]
fn go_and_ruby_traces_in_their_documented_formats_are_records_with_frames() {
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(fixtures().join("go.log")).expect("go.log");
    let (groups, summary) = collect(tmp.path(), &text);
    let index = group(
        &groups,
        "runtime error: index out of range [5] with length 3",
        "/home/app/shortener/store.go:12 in main.lookup",
    );
    assert_eq!(example(index).last().map(String::as_str), Some("exit status 2"), "{index:#}");
    // net/http's recovered panic: the runtime's and net/http's frames are skipped for the app's.
    let nil = group(
        &groups,
        "runtime error: invalid memory address or nil pointer dereference",
        "/home/app/shortener/store.go:21 in main.(*store).lookup",
    );
    assert!(example(nil).iter().any(|l| l.starts_with("created by net/http")), "{nil:#}");
    assert_eq!((groups.len(), summary["matches"].as_u64()), (2, Some(2)), "the log line after is its own: {groups:#?}");

    let text = std::fs::read_to_string(fixtures().join("ruby.log")).expect("ruby.log");
    let (groups, _) = collect(tmp.path(), &text);
    // Ruby 3.4 ('Class#method', error_highlight's snippet) and before (backquotes).
    let new =
        group(&groups, "NoMethodError: undefined method 'fetch' for nil", "/app/lib/url_store.rb:9 in UrlStore#lookup");
    let ex = example(new);
    assert!(
        ex.iter().any(|l| l.trim() == "^^^^^^") && ex.last().is_some_and(|l| l.contains("/app/app.rb:20")),
        "{ex:#?}"
    );
    let old =
        group(&groups, "NoMethodError: undefined method `fetch' for nil:NilClass", "/app/lib/url_store.rb:9 in lookup");
    assert_eq!(example(old).len(), 4, "{old:#}");
    assert_eq!(groups.len(), 2, "{groups:#?}");
}

/// Two call sites throwing the same message are two groups, in every runtime.
#[test]
fn the_same_message_from_two_call_sites_is_two_groups() {
    let tmp = tempfile::tempdir().expect("tmp");
    let node = |line: u32, func: &str| {
        format!(
            "Error: store unavailable\n    at {func} (/app/server.js:{line}:11)\n    at Server.emit (node:events:519:28)\n"
        )
    };
    let java = |line: u32, m: &str| {
        format!(
            "java.lang.IllegalStateException: store unavailable\n\tat com.example.Store.{m}(Store.java:{line})\n\tat java.base/java.lang.Thread.run(Thread.java:840)\n"
        )
    };
    let log = [node(10, "load"), node(20, "save"), node(10, "load"), java(5, "load"), java(9, "save")].concat();
    let (groups, _) = collect(tmp.path(), &log);
    let counts: Vec<(String, u64)> = groups
        .iter()
        .map(|g| (g["frame"].as_str().unwrap_or("").to_string(), g["count"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(
        counts,
        [
            ("/app/server.js:10 in load".to_string(), 2),
            ("/app/server.js:20 in save".to_string(), 1),
            ("com/example/Store.java:5 in Store.load".to_string(), 1),
            ("com/example/Store.java:9 in Store.save".to_string(), 1),
        ]
    );
}

/// A JVM trace of hundreds of frames (a framework's) stays one record up to its last `Caused
/// by:`: its frames are found by the search, not only handed over after the exception line.
#[test]
fn long_traces_stay_one_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut java = String::from("Exception in thread \"main\" java.lang.IllegalStateException: no store\n");
    java.push_str("\tat com.example.Store.load(Store.java:9)\n");
    for i in 0..150 {
        java.push_str(&format!("\tat org.springframework.web.Filter{i}.doFilter(Filter{i}.java:{})\n", 100 + i));
    }
    java.push_str(
        "Caused by: java.io.IOException: disk gone\n\tat com.example.Disk.read(Disk.java:4)\n\t... 151 more\n",
    );
    java.push_str("2026-11-23 22:40:09.000 INFO next\n");
    let (groups, summary) = collect(tmp.path(), &java);
    assert_eq!(groups.len(), 1, "{groups:#?}");
    assert_eq!(summary["matches"], 1);
    assert_eq!(groups[0]["frame"], "com/example/Store.java:9 in Store.load");
    assert!(example(&groups[0]).iter().any(|l| l.starts_with("Caused by: java.io.IOException")), "{:#}", groups[0]);
}
