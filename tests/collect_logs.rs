//! collect-logs on files: records, selection, context, counted groups in first-seen order.

/// `--json` output: JSON Lines of groups, then the summary line.
fn jsonl(out: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["type"], "summary");
    assert!(lines.iter().all(|l| l["type"] == "group"));
    (lines, summary)
}
use crate::support::{Project, output};
use predicates::prelude::*;

/// Runs collect-logs with these arguments and `--json`; it must succeed.
fn hunt(p: &Project, args: &[&str]) -> (Vec<serde_json::Value>, serde_json::Value) {
    let a = p.cmd("collect-logs").args(args).arg("--json").assert().success();
    jsonl(&output(&a).0)
}

const LOG: &str = "\
2026-11-23T09:59:57.000Z [INFO] Starting gunicorn --error-logfile -
2026-11-23T09:59:58.000Z [INFO] GET /y 200
2026-11-23T09:59:59.000Z [INFO] GET /z 200
2026-11-23T10:00:00.000Z [INFO] GET /0 200
2026-11-23T10:00:01.000Z [INFO] GET /a 200
2026-11-23T10:00:02.000Z [2026-11-23 10:00:02,001] ERROR in app: Exception on /shorten [POST]
2026-11-23T10:00:02.000Z Traceback (most recent call last):
2026-11-23T10:00:02.000Z   File \"/srv/state/local/versions/v2/application.py\", line 67, in load_urls
2026-11-23T10:00:02.000Z     return json.loads(urls_file)
2026-11-23T10:00:02.000Z TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper
2026-11-23T10:00:03.000Z [INFO] GET /b 200
2026-11-23T10:00:04.000Z [INFO] GET /c 200
2026-11-23T10:00:05.000Z [INFO] GET /d 200
2026-11-23T10:00:06.000Z [INFO] GET /e 200
2026-11-23T10:00:07.000Z [INFO] GET /f 200
2026-11-23T10:00:08.000Z [INFO] GET /g 200
2026-11-23T10:00:09.000Z [WARNING] disk 91% full
2026-11-23T10:00:10.000Z [INFO] GET /h 200
2026-11-23T10:00:11.000Z [INFO] GET /i 200
2026-11-23T10:00:12.000Z [INFO] GET /j 200
2026-11-23T10:00:13.000Z [2026-11-23 10:00:13,002] ERROR in app: Exception on /shorten [POST]
2026-11-23T10:00:13.000Z Traceback (most recent call last):
2026-11-23T10:00:13.000Z   File \"/srv/state/local/versions/v2/application.py\", line 67, in load_urls
2026-11-23T10:00:13.000Z     return json.loads(urls_file)
2026-11-23T10:00:13.000Z TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper
2026-11-23T10:00:14.000Z [INFO] GET /k 200
2026-11-23T10:00:15.000Z [INFO] GET /l 200
2026-11-23T10:00:16.000Z [INFO] GET /m 200
2026-11-23T10:00:17.000Z [INFO] GET /n 200
2026-11-23T10:00:18.000Z [INFO] GET /o 200
2026-11-23T10:00:19.000Z [INFO] GET /p 200
2026-11-23T10:00:20.000Z [INFO] GET /q 200
2026-11-23T10:00:21.000Z [CRITICAL] WORKER TIMEOUT (pid:12)
";

#[test]
fn repeats_collapse_into_counted_groups_in_first_seen_order() {
    let p = Project::new();
    std::fs::write(p.app.join("app.log"), LOG).expect("write log");
    let a = p.cmd("collect-logs").args(["--input", "app.log", "--out", "hunt.txt", "--json"]).assert().success();
    let (out, _) = output(&a);
    let (groups, doc) = jsonl(&out);
    assert_eq!(groups.len(), 2, "{doc:#}");
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[0]["exception"], "TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper");
    assert_eq!(groups[0]["frame"], "application.py (v2):67 in load_urls");
    assert_eq!(groups[0]["first_seen"], "2026-11-23T10:00:02.000Z");
    assert_eq!(groups[0]["last_seen"], "2026-11-23T10:00:13.000Z");
    assert!(groups[1]["example"].to_string().contains("WORKER TIMEOUT"), "{doc:#}");
    // The traceback is whole: its frame line is in the example, with 3 records of context.
    let example = groups[0]["example"].as_array().expect("example");
    assert_eq!(example.len(), 3 + 5 + 3, "{example:#?}");
    let report = std::fs::read_to_string(p.app.join("hunt.txt")).expect("report");
    assert!(report.contains("=== group 1 — seen 2 time(s)"), "{report}");
    assert!(!report.contains("Starting gunicorn"), "the start-up line is neither match nor context: {report}");
}

/// A window that holds none of the matching records read says so, with how many fell outside
/// it and when: "no errors found" over logs full of errors is more likely a mistyped window. A
/// traceback and the line that logged it are one record, outside the window as inside it.
#[test]
fn a_window_that_misses_every_error_says_where_they_are() {
    let p = Project::new();
    std::fs::write(p.app.join("app.log"), LOG).expect("write log");
    let run = |window: &[&str]| {
        let a = p.cmd("collect-logs").args(["--input", "app.log", "--out", "hunt.txt", "--json"]).args(window).assert();
        let (out, err) = output(&a.success());
        let (groups, doc) = jsonl(&out);
        let report = std::fs::read_to_string(p.app.join("hunt.txt")).expect("report");
        (groups.len(), doc, err, report)
    };
    let (groups, doc, err, report) = run(&["--until", "2026-11-23T09:00:00Z"]);
    assert_eq!((groups, &doc["matches"], &doc["outside_window"]), (0, &0.into(), &3.into()), "{doc:#}");
    let said = "3 outside the window, dated 2026-11-23T10:00:02.000Z to 2026-11-23T10:00:21.000Z";
    assert!(
        err.contains(&format!(
            "warning: the window holds none of the matching records read ({said}): check --since and --until"
        )),
        "{err}"
    );
    assert!(report.contains(&format!("matching records left out: {said}\n")), "{report}");
    // A window holding some: the others are counted, and nothing is said.
    let (groups, doc, err, report) = run(&["--since", "2026-11-23T10:00:10Z"]);
    assert_eq!((groups, &doc["matches"], &doc["outside_window"]), (2, &2.into(), &1.into()), "{doc:#}");
    assert!(!err.contains("the window holds none"), "{err}");
    assert!(report.contains("matching records left out: 1 outside the window, dated 2026-11-23T10:00:02.000Z\n"));
    // No window: every one in it, none left out.
    let (groups, doc, err, report) = run(&[]);
    assert_eq!((groups, &doc["matches"], &doc["outside_window"]), (2, &3.into(), &0.into()), "{doc:#}");
    assert!(!err.contains("the window holds none") && !report.contains("left out"), "{err}{report}");
}

#[test]
fn since_limits_the_window_and_secrets_are_redacted() {
    let p = Project::new();
    let log = format!(
        "{LOG}2026-11-23T10:00:30.000Z [ERROR] upload failed for https://deploy:hunter22secret@repo.example/x key AKIAABCDEFGHIJKLMNOP\n"
    );
    std::fs::write(p.app.join("app.log"), log).expect("write log");
    let a = p
        .cmd("collect-logs")
        .args(["--input", "app.log", "--since", "2026-11-23T10:00:25Z", "--out", "hunt.txt", "--json"])
        .assert()
        .success();
    let (out, _) = output(&a);
    let (groups, doc) = jsonl(&out);
    assert_eq!(groups.len(), 1, "{doc:#}");
    assert_eq!(doc["groups"], 1);
    let report = std::fs::read_to_string(p.app.join("hunt.txt")).expect("report");
    for secret in ["hunter22secret", "AKIAABCDEFGHIJKLMNOP"] {
        assert!(!report.contains(secret) && !out.contains(secret), "{secret} leaked");
    }
    assert!(report.contains("https://deploy:****@repo.example/x"), "{report}");
}

#[test]
fn also_pattern_extends_the_default_selection() {
    let p = Project::new();
    std::fs::write(p.app.join("app.log"), LOG).expect("write log");
    let a = p
        .cmd("collect-logs")
        .args(["--input", "app.log", "--out", "h.txt", "--json", "--context", "0"])
        .assert()
        .success();
    let (plain, _) = jsonl(&output(&a).0);
    let a = p
        .cmd("collect-logs")
        .args(["--input", "app.log", "--out", "h.txt", "--json", "--context", "0", "--also-pattern", "disk \\d+% full"])
        .assert()
        .success();
    let (extended, _) = jsonl(&output(&a).0);
    assert_eq!(extended.len(), plain.len() + 1);
    assert!(extended.iter().any(|g| g["example"].to_string().contains("disk 91% full")));
    p.cmd("collect-logs")
        .args(["--input", "app.log", "--also-pattern", "("])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--also-pattern: invalid regex"));
}

#[test]
fn bad_window_and_pattern_are_usage_errors() {
    let p = Project::new();
    std::fs::write(p.app.join("app.log"), LOG).expect("write log");
    p.cmd("collect-logs").args(["--input", "app.log", "--since", "yesterday"]).assert().code(2);
    // A window that starts now or later is empty by construction: a mistake, not "no errors".
    for since in ["0s", "0m", "2999-01-01T00:00:00Z"] {
        let a = p.cmd("collect-logs").args(["--input", "app.log", "--out", "w.txt", "--since", since]).assert().code(2);
        let err = output(&a).1;
        assert!(err.contains(&format!("--since {since:?} is")) && err.contains("not before now"), "{since}: {err}");
        assert!(!p.app.join("w.txt").exists(), "{since}: a report was written");
    }
    p.cmd("collect-logs").args(["--input", "app.log", "--out", "w.txt", "--since", "1ms"]).assert().success();
    p.cmd("collect-logs").args(["--input", "app.log", "--pattern", "(unclosed"]).assert().code(2);
    p.cmd("collect-logs").args(["--input", "missing.log"]).assert().code(2);
    // A pattern that matches any text would make every line an error: refused, as a mistake,
    // and named in the shell's quoting, which a user can paste back (Rust's "$x" would expand).
    for (flag, any, shown) in [
        ("--pattern", "", "''"),
        ("--pattern", ".*", "'.*'"),
        ("--pattern", "x*", "'x*'"),
        ("--pattern", "^", "'^'"),
        ("--pattern", "|ERROR", "'|ERROR'"),
        ("--pattern", r"\s*", r#""\\s*""#),
        ("--pattern", "$x?", "'$x?'"),
        // A newline stays on the error's one line.
        ("--pattern", "\n*", r"$'\n*'"),
        ("--also-pattern", "", "''"),
        ("--also-pattern", "(?m)$", "'(?m)$'"),
    ] {
        let a = p.cmd("collect-logs").args(["--input", "app.log", flag, any]).assert().code(2);
        let err = output(&a).1;
        assert_eq!(err.lines().filter(|l| l.contains("error:")).count(), 1, "{flag} {any:?}: {err}");
        assert!(err.contains(&format!("{flag} {shown} matches any text")), "{flag} {any:?}: {err}");
    }
    assert!(!p.app.join("error_hunt.txt").exists());
    // Blank lines only: a pattern that some lines do not match.
    p.cmd("collect-logs").args(["--input", "app.log", "--pattern", "^$"]).assert().success();
}

/// Elastic Beanstalk-style lines of one instance: no year, padded days, no indentation.
fn eb_instance(host: &str, minute: u32) -> String {
    let p = |s: u32| format!("Nov  3 02:{minute:02}:{s:02} {host} web[2013]: ");
    [
        format!("{}[2026-11-03 02:{minute:02}:00 +0000] [2013] [INFO] Booting worker", p(0)),
        format!("{}[2026-11-03 02:{minute:02}:01,101] ERROR in app: Exception on /shorten [POST]", p(1)),
        format!("{}Traceback (most recent call last):", p(1)),
        format!("{}File \"/var/app/venv/lib/python3.11/site-packages/flask/app.py\", line 1511, in wsgi_app", p(1)),
        format!("{}response = self.full_dispatch_request()", p(1)),
        format!("{}File \"/var/app/current/application.py\", line 67, in load_urls", p(1)),
        format!("{}return json.loads(urls_file)", p(1)),
        format!("{}TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper", p(1)),
        format!("{}127.0.0.1 - - \"POST /shorten HTTP/1.1\" 500 265", p(2)),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn eb_instances_merge_by_time_from_globs_and_gzip() {
    use std::io::Write;
    let p = Project::new();
    let dir = p.app.join("eb-logs");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("i-1.log"), eb_instance("ip-172-31-35-64", 55)).expect("write");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("i-2.log.gz")).expect("gz"),
        flate2::Compression::fast(),
    );
    gz.write_all(eb_instance("ip-172-31-35-99", 54).as_bytes()).expect("gz");
    gz.finish().expect("gz");
    let a = p
        .cmd("collect-logs")
        .args(["--input", "eb-logs/*", "--out", "hunt.txt", "--json", "--context", "0"])
        .assert()
        .success();
    let (groups, doc) = jsonl(&output(&a).0);
    // The ERROR line and the traceback are one window; the 5xx line is another kind.
    assert_eq!(groups[0]["count"], 2, "{doc:#}");
    assert_eq!(groups[0]["frame"], "application.py:67 in load_urls");
    assert_eq!(groups[0]["sources"].as_array().map(Vec::len), Some(2), "both instances: {doc:#}");
    // Merged by time: the gzip'd instance (02:54) comes first.
    assert!(groups[0]["first_seen"].as_str().expect("t").ends_with("-11-03T02:54:01.000Z"), "{doc:#}");
    let first = groups[0]["example"][0].as_str().expect("line");
    assert!(
        first.ends_with("-11-03T02:54:01.000Z [2026-11-03 02:54:01,101] ERROR in app: Exception on /shorten [POST]"),
        "{first}"
    );
}

#[test]
fn odd_inputs_nul_bytes_invalid_utf8_a_huge_line_an_empty_log_a_truncated_gzip() {
    let p = Project::new();
    let mut bytes =
        b"2026-11-23T10:00:00.000Z [INFO] ok\n2026-11-23T10:00:01.000Z [ERROR] bad byte \xff and NUL \x00 here\n"
            .to_vec();
    bytes.extend(format!("2026-11-23T10:00:02.000Z {}\n", "x".repeat(10 * 1024 * 1024)).as_bytes());
    bytes.extend(b"2026-11-23T10:00:03.000Z TypeError: after the long line\n");
    std::fs::write(p.app.join("odd.log"), bytes).expect("write");
    let a = p
        .cmd("collect-logs")
        .args(["--input", "odd.log", "--out", "hunt.txt", "--json", "--context", "0"])
        .assert()
        .success();
    let (groups, doc) = jsonl(&output(&a).0);
    assert_eq!(groups.len(), 2, "never 'binary file matches': {}", doc["exceptions"]);
    assert_eq!(doc["exceptions"][0], "TypeError: after the long line");

    std::fs::write(p.app.join("empty.log"), "").expect("write");
    p.cmd("collect-logs")
        .args(["--input", "empty.log", "--out", "e.txt"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no errors found"));
    // A file that says it is empty and still holds text (/proc, /sys) is read, not skipped:
    // collect-logs' own command line names the file.
    let a = p
        .cmd("collect-logs")
        .args(["--input", "/proc/self/cmdline", "--pattern", "cmdline", "--out", "p.txt"])
        .assert();
    let out = output(&a.success()).0;
    assert!(out.contains("1 group(s) of errors in 1 matching record(s)"), "{out}");

    let mut gz = vec![];
    {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
        enc.write_all(LOG.as_bytes()).expect("gz");
        enc.finish().expect("gz");
    }
    gz.truncate(gz.len() / 2);
    std::fs::write(p.app.join("cut.log.gz"), gz).expect("write");
    p.cmd("collect-logs")
        .args(["--input", "cut.log.gz", "--out", "c.txt"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cut.log.gz"));
    assert!(!p.app.join("c.txt").exists());
}

/// Each hit record counts once in its own group, however close other errors are: two requests
/// failing back to back are two tracebacks and two 5xx lines, not one merged "block".
#[test]
fn errors_close_together_count_once_each_in_their_own_groups() {
    let p = Project::new();
    let mut log = String::new();
    for s in 0..2 {
        log += &eb_instance("ip-172-31-35-64", 50 + s);
    }
    // Twenty quiet lines, then an error: its context is the line right before it, not the
    // records seen before the quiet stretch (which the search passed over unread).
    for i in 0..20 {
        log += &format!("Nov  3 02:53:{i:02} ip-172-31-35-64 web[2013]: quiet line {i}\n");
    }
    log += "Nov  3 02:53:30 ip-172-31-35-64 web[2013]: [2026-11-03 02:53:30 +0000] [2013] [CRITICAL] WORKER TIMEOUT (pid:12)\n";
    log += "Nov  3 02:53:31 ip-172-31-35-64 web[2013]: after the timeout\n";
    std::fs::write(p.app.join("web.log"), log).expect("write");
    let (groups, doc) = hunt(&p, &["--input", "web.log", "--out", "hunt.txt", "--context", "1"]);
    assert_eq!(groups.len(), 3, "{doc:#}");
    assert_eq!(doc["matches"], 5, "two tracebacks (each with its message), two 5xx lines, one timeout: {doc:#}");
    assert_eq!(groups[0]["count"], 2, "{doc:#}");
    assert_eq!(groups[0]["frame"], "application.py:67 in load_urls");
    assert!(groups[1]["example"].to_string().contains("\\\"POST /shorten HTTP/1.1\\\" 500"), "{doc:#}");
    assert_eq!(groups[1]["message"], "127.0.0.1 - - \"POST /shorten HTTP/1.1\" 500 265", "the matching line: {doc:#}");
    assert!(groups[2]["message"].as_str().expect("message").ends_with("[CRITICAL] WORKER TIMEOUT (pid:12)"));
    assert_eq!(groups[1]["count"], 2, "{doc:#}");
    let timeout: Vec<&str> =
        groups[2]["example"].as_array().expect("example").iter().map(|l| l.as_str().expect("line")).collect();
    assert_eq!(timeout.len(), 3, "{timeout:#?}");
    assert!(timeout[0].ends_with("quiet line 19"), "{timeout:#?}");
    assert!(timeout[1].contains("WORKER TIMEOUT"), "{timeout:#?}");
    assert!(timeout[2].ends_with("after the timeout"), "{timeout:#?}");
}

/// The benchmark's generated log, small: every traceback counts once in one group and every 5xx
/// line in another, checked against counts taken from the file itself.
#[test]
fn a_generated_eb_log_gives_one_group_per_error_with_exact_counts() {
    let p = Project::new();
    let log = p.app.join("web.stdout.log");
    let generator = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-eb-log");
    let status = std::process::Command::new("python3").arg(generator).arg("4").arg(&log).status().expect("python3");
    assert!(status.success());
    let text = std::fs::read_to_string(&log).expect("log");
    let tracebacks = text.lines().filter(|l| l.ends_with("Traceback (most recent call last):")).count();
    let fives = text.lines().filter(|l| l.contains("\" 500 ")).count();
    assert!(tracebacks > 10 && fives > 10, "{tracebacks} tracebacks, {fives} 5xx lines");
    let (groups, doc) = hunt(&p, &["--input", "web.stdout.log", "--out", "hunt.txt"]);
    assert_eq!(groups.len(), 2, "{doc:#}");
    assert_eq!(groups[0]["count"], tracebacks, "{doc:#}");
    assert_eq!(groups[0]["frame"], "application.py:67 in load_urls");
    assert_eq!(groups[1]["count"], fives, "{doc:#}");
    assert_eq!(doc["matches"], tracebacks + fives);
}

/// A deep traceback reaches the report whole: its frames are found by the search itself, not by
/// hoping the context after its header is long enough.
#[test]
fn a_deep_traceback_is_one_record_with_all_its_frames() {
    let p = Project::new();
    let pre = "Nov  3 02:55:20 ip-172-31-35-64 web[2013]: ";
    let mut log = format!("{pre}quiet\n{pre}Traceback (most recent call last):\n");
    for i in 0..60 {
        log += &format!("{pre}File \"/var/app/venv/lib/python3.11/site-packages/lib/m{i}.py\", line {i}, in f{i}\n");
        log += &format!("{pre}return f{}()\n", i + 1);
    }
    log += &format!("{pre}File \"/var/app/current/application.py\", line 67, in load_urls\n");
    log += &format!("{pre}return json.loads(urls_file)\n");
    log += &format!("{pre}TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper\n");
    log += &format!("{pre}quiet again\n").repeat(50);
    std::fs::write(p.app.join("deep.log"), log).expect("write");
    let (groups, doc) = hunt(&p, &["--input", "deep.log", "--out", "hunt.txt", "--context", "0"]);
    assert_eq!(groups.len(), 1, "{doc:#}");
    assert_eq!(groups[0]["frame"], "application.py:67 in load_urls", "{doc:#}");
    let example = groups[0]["example"].as_array().expect("example");
    assert_eq!(example.len(), 1 + 61 * 2 + 1, "{doc:#}");
    assert!(example[0].as_str().expect("line").ends_with("Traceback (most recent call last):"));
}

/// A named pipe is read as it comes (not seekable, never split), and nothing it sends is lost.
#[test]
fn a_named_pipe_is_read_whole() {
    let p = Project::new();
    let fifo = p.app.join("live.log");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, LOG.repeat(50)).expect("write to the pipe"))
    };
    let (groups, doc) = hunt(&p, &["--input", "live.log", "--out", "hunt.txt", "--context", "0"]);
    writer.join().expect("writer");
    assert_eq!(groups.len(), 2, "{doc:#}");
    assert_eq!(groups[0]["count"], 100, "two tracebacks in each of 50 copies: {doc:#}");
    assert_eq!(doc["bytes"], LOG.len() * 50);
}

#[test]
fn plain_files_need_no_config_and_nginx_access_times_filter_and_date_groups() {
    // An empty directory: no safedeploy.toml here or above (a temp dir under /tmp).
    let dir = tempfile::tempdir().expect("tmp");
    let access = "\
127.0.0.1 - - [23/Nov/2026:22:51:50 +0000] \"GET / HTTP/1.1\" 200 612 \"-\" \"curl/8.5\"
127.0.0.1 - - [23/Nov/2026:22:51:58 +0000] \"POST /shorten HTTP/1.1\" 500 265 \"-\" \"curl/8.5\"
127.0.0.1 - - [23/Nov/2026:22:59:01 +0000] \"POST /shorten HTTP/1.1\" 500 265 \"-\" \"curl/8.5\"
";
    std::fs::write(dir.path().join("access.log"), access).expect("write");
    let run = |extra: &[&str]| {
        let mut c = assert_cmd::Command::cargo_bin("collect-logs").expect("bin");
        c.current_dir(dir.path()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        let a = c.args(["--input", "access.log", "--json"]).args(extra).assert().success();
        jsonl(&output(&a).0)
    };
    let (groups, doc) = run(&[]);
    let seen: usize = groups.iter().map(|g| g["count"].as_u64().unwrap_or(0) as usize).sum();
    assert_eq!(seen, 2, "both 500s, not the 200: {doc:#}");
    assert_eq!(groups[0]["first_seen"], "2026-11-23T22:51:58.000Z", "{doc:#}");
    assert!(dir.path().join("error_hunt.txt").is_file(), "the report is written where it runs");
    // --since filters access-log lines by their own times.
    let (groups, _) = run(&["--since", "2026-11-23T22:55:00Z"]);
    let seen: usize = groups.iter().map(|g| g["count"].as_u64().unwrap_or(0) as usize).sum();
    assert_eq!(seen, 1);
    // --env needs the config: still exit 2 without one.
    let mut c = assert_cmd::Command::cargo_bin("collect-logs").expect("bin");
    c.current_dir(dir.path()).env_clear().args(["--env", "production"]).assert().code(2);
}

#[test]
fn an_environments_logs_include_the_proxys_access_and_error_logs() {
    let p = Project::new();
    p.v2_failing_in_production();
    let (groups, doc) = hunt(&p, &["--env", "production", "--since", "1h", "--out", "hunt.txt"]);
    let sources = doc["sources"].to_string();
    assert!(sources.contains("nginx/access.log"), "{doc:#}");
    // The smoke check's POST /shorten answered 500 through nginx: the proxy's own line of it.
    let access_500 = groups.iter().find(|g| g["example"].to_string().contains("\\\"POST /shorten HTTP/1.1\\\" 500"));
    let g = access_500.unwrap_or_else(|| panic!("no access-log 500 group: {doc:#}"));
    assert_ne!(g["first_seen"], serde_json::Value::Null, "{g:#}");
}

/// v2 (the last commit) forced into production, a Python traceback through v2's
/// `application.py:67` ending in `error` (its lines) appended to production's log, and
/// collect-logs' report on production.
fn v2_forced_in_then_its_trace(p: &Project, error: &[&str]) -> String {
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("promote")
        .args(["--version", "v2", "--force", "--reason", "t", "--skip-pre-traffic", "t"])
        .assert()
        .success();
    let log = p.state.join("local/envs/production/app.log");
    let now = safedeploy::clock::rfc3339(safedeploy::clock::now_ms());
    let mut text = std::fs::read_to_string(&log).expect("log");
    text += &format!(
        "{now} Traceback (most recent call last):\n{now}   File \"{}/local/versions/v2/application.py\", line 67, in load_urls\n{now}     return json.load(urls_file)\n",
        p.state.display()
    );
    for line in error {
        text += &format!("{now} {line}\n");
    }
    std::fs::write(&log, text).expect("log");
    p.cmd("collect-logs").args(["--env", "production", "--out", "hunt.txt"]).assert().success();
    std::fs::read_to_string(p.app.join("hunt.txt")).expect("report")
}

/// The suspect is a commit of the range good..bad, or there is none: a frame three lines below
/// a change blames the change (and says how far it is), never the older commit that last
/// touched the frame's own line.
#[test]
fn the_suspect_is_a_commit_of_the_range_and_says_how_far_the_frame_is_from_it() {
    let p = Project::new();
    p.v1_everywhere();
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    let lines: Vec<&str> = app.lines().collect();
    assert_eq!(lines[63], "    if not os.path.exists(path):", "application.py changed; update this test");
    assert_eq!(lines[66], "        return json.load(urls_file)");
    p.write("application.py", &app.replace("    if not os.path.exists(path):", "    if not os.path.isfile(path):"));
    p.commit_all("Only files count as a store", "Near Change");
    // A NameError on line 67, which no commit of the range touched.
    let report = v2_forced_in_then_its_trace(&p, &["NameError: name 'urls_file' is not defined"]);
    let v2 = p.git(&["rev-parse", "HEAD"]).trim().to_string();
    assert!(
        report.contains("application.py:67 in load_urls, 3 lines below a change at line 64 — changed between"),
        "{report}"
    );
    assert!(report.contains(&format!("by commit {v2}")), "the range's commit, not the line's older one: {report}");
    assert!(report.contains("author: Near Change"), "{report}");
}

/// A database error that no changed line explains points at the migration changed in the
/// range, with its commit and hunk; a line of the error's message stays in its record.
#[test]
fn a_database_error_names_the_migration_changed_in_the_range() {
    let p = Project::new();
    p.v1_everywhere();
    p.write(
        "migrations/versions/0002_rename_body.py",
        "def upgrade():\n    op.alter_column(\"post\", \"body\", new_column_name=\"text\")\n",
    );
    p.commit_all("Rename post.body to post.text", "Schema Change");
    let report = v2_forced_in_then_its_trace(
        &p,
        &[
            "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such column: post.body",
            "[SQL: SELECT post.body FROM post]",
            "(Background on this error at: https://sqlalche.me/e/20/e3q8)",
        ],
    );
    assert!(
        report.contains(
            "=== suspect change\nmigrations/versions/0002_rename_body.py (a migration: the error is the database's"
        ),
        "{report}"
    );
    assert!(report.contains("author: Schema Change") && report.contains("new_column_name=\"text\""), "{report}");
    assert_eq!(report.matches("=== group").count(), 1, "the [SQL: …] line is no group of its own: {report}");
}
