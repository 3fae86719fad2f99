//! Bad input gets exit 2 and one clear line naming the file and field, and changes nothing.

use crate::support::{BINARIES, Project, output};
use predicates::prelude::*;

/// Arguments each binary needs to get as far as reading the config.
fn args_for(bin: &str) -> Vec<&'static str> {
    match bin {
        "deploy-staging" => vec!["--version", "v1"],
        "smoke-check" | "collect-logs" => vec!["--env", "staging"],
        _ => vec![],
    }
}

/// The 1-based line of `needle` in the project's config.
fn line_of(p: &Project, needle: &str) -> usize {
    let text = std::fs::read_to_string(p.config_path()).expect("config");
    text.lines().position(|l| l == needle).expect("line present") + 1
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("error:")).collect()
}

#[test]
fn malformed_toml_is_exit_2_with_file_and_line_for_every_binary() {
    let p = Project::new();
    let line = line_of(&p, "[deploy]");
    p.edit_config(|c| c.replace("[deploy]", "[deploy\nbroken = "));
    for bin in BINARIES {
        let a = p.cmd(bin).args(args_for(bin)).assert().code(2);
        let (out, err) = output(&a);
        let lines = error_lines(&err);
        assert_eq!(lines.len(), 1, "{bin}: one error line: {err}");
        assert!(lines[0].starts_with(&format!("{bin}: error: ")), "{bin}: {err}");
        assert!(lines[0].contains(&format!("safedeploy.toml:{line}: ")), "{bin}: names file and line: {err}");
        assert!(out.is_empty(), "{bin}: nothing on stdout: {out}");
    }
    assert!(!p.state.exists(), "nothing was created");
}

#[test]
fn unknown_and_missing_fields_are_named() {
    let p = Project::new();
    let line = line_of(&p, "[deploy]") + 1;
    p.edit_config(|c| c.replace("[deploy]\n", "[deploy]\nhealth_pth = \"/x\"\n"));
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().code(2).stderr(predicate::str::contains(format!(
        "safedeploy.toml:{line}: unknown field `health_pth`, expected one of `health_path`"
    )));

    let p = Project::new();
    p.edit_config(|c| {
        let port = p.staging_port;
        c.replace(&format!("url = \"http://127.0.0.1:{port}\""), "")
    });
    p.cmd("smoke-check")
        .args(["--env", "staging"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing field `url`"));

    let p = Project::new();
    p.edit_config(|c| c.replace("health_path = \"/health\"", "health_path = \"health\""));
    p.cmd("promote")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("deploy.health_path: expected a path starting with /"));
    assert!(!p.state.exists());
}

#[test]
fn a_missing_config_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = assert_cmd::Command::cargo_bin("rollback").expect("bin");
    c.current_dir(dir.path()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    c.assert()
        .code(2)
        .stderr(predicate::str::contains("rollback: error: no safedeploy.toml in"))
        .stderr(predicate::str::contains("hint: pass --config PATH or set SAFEDEPLOY_CONFIG"));
}

#[test]
fn unknown_environment_and_invalid_label() {
    let p = Project::new();
    p.cmd("deploy-staging")
        .args(["--version", "v1", "--env", "qa"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown environment \"qa\"; known: production, staging"));
    p.cmd("deploy-staging")
        .args(["--version", "v1 final!"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid version label \"v1 final!\": expected 1 to 100 characters"));
    p.cmd("smoke-check")
        .args(["--env", "qa"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown environment \"qa\""));
    p.cmd("deploy-staging")
        .args(["--version", "v1", "--commit", "no-such-rev"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--commit \"no-such-rev\": no such commit"));
    for (bin, flag) in [("promote", "--version"), ("rollback", "--to")] {
        p.cmd(bin)
            .args([flag, "v 2"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("invalid version label \"v 2\""));
    }
    assert!(!p.state.exists(), "nothing was created");
}

#[test]
fn unknown_versions_for_promote_and_rollback() {
    let p = Project::new();
    let none = "hint: no version is registered yet: deploy-staging --version LABEL registers one";
    p.cmd("promote")
        .args(["--version", "v9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown version v9").and(predicate::str::contains(none)));
    p.cmd("rollback")
        .args(["--to", "v9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--to v9: unknown version").and(predicate::str::contains(none)));
    // The hint names the newest labels the ledger knows, five at most.
    let ledger = p.ledger();
    for n in 1..=7 {
        ledger
            .execute(
                "INSERT INTO versions (label, commit_id, checksum, bundle, created_at) VALUES (?1, 'c', 's', 'b', ?2)",
                rusqlite::params![format!("v{n}"), 1_000 * n],
            )
            .expect("insert");
    }
    drop(ledger);
    let known =
        "hint: the newest versions deploy-staging registered: v7, v6, v5, v4, v3, … (safedeploy history lists them)";
    for (bin, flag) in [("promote", "--version"), ("rollback", "--to")] {
        p.cmd(bin).args([flag, "v9"]).assert().code(2).stderr(predicate::str::contains(known));
    }
    p.cmd("promote")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no version has passed the smoke checks in staging"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments"), 0);
}

#[test]
fn a_version_without_procfile_is_rejected_before_anything_is_recorded() {
    let p = Project::new();
    std::fs::remove_file(p.app.join("Procfile")).expect("rm");
    p.commit_all("Drop the Procfile", "Team");
    p.cmd("deploy-staging")
        .args(["--version", "v1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("version v1 has no Procfile: expected a `web: COMMAND` line"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions"), 0);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments"), 0);
    assert!(!p.state.join("local/versions/v1").exists(), "the unpacked version was removed");
    assert!(!p.state.join("bundles/v1.tar").exists(), "the bundle was removed");
}

#[test]
fn a_bad_flag_value_from_jenkins_env_is_a_usage_error() {
    let p = Project::new();
    p.cmd("rollback").env("SAFEDEPLOY_DRY_RUN", "maybe").assert().code(2).stderr(predicate::str::contains("maybe"));
}

/// `--context` is held to the bound `logs.context` has (its records are kept for every open
/// window): past it, or not a count, is exit 2 naming the flag, before any log is read.
#[test]
fn collect_logs_context_past_its_bound_is_a_usage_error() {
    let p = Project::new();
    p.write("app.log", "2026-11-23T22:40:01.000Z ERROR boom\n");
    for bad in ["51", "1000000000", "-1", "", "x"] {
        let out = p
            .cmd("collect-logs")
            .args(["--input", "app.log", "--out", "h.txt", &format!("--context={bad}")])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--context {bad:?}: {stderr}");
        assert!(stderr.contains("--context"), "--context {bad:?}: {stderr}");
        assert!(!p.app.join("h.txt").exists(), "--context {bad:?}: a report was written");
    }
    p.cmd("collect-logs").args(["--input", "app.log", "--out", "h.txt", "--context", "50"]).assert().success();
    assert!(p.app.join("h.txt").exists());
}

/// A report path that would overwrite what a run reads or keeps is exit 2 before anything
/// runs, naming the flag, and every file is as it was: the log collect-logs reads (by its
/// name, a symlink, a hard link or a `..` path), the config file, a directory, the state dir
/// (the ledger, a lock, a platform's records). The gate's tests do not run.
#[test]
fn a_report_path_over_a_log_the_config_or_the_ledger_is_refused_before_anything_runs() {
    let p = Project::new();
    p.cmd("gate-tests").assert().success(); // the ledger, and the tests' own reports
    p.write("app.log", "2026-11-23T22:40:01.000Z ERROR boom\n");
    p.write("logs/keep", "");
    std::os::unix::fs::symlink("app.log", p.app.join("link.log")).expect("symlink");
    std::fs::hard_link(p.app.join("app.log"), p.app.join("hard.log")).expect("hard link");
    let ledger = p.state.join("ledger.sqlite3");
    let watched = [p.app.join("app.log"), p.config_path(), ledger.clone(), p.app.join("reports/junit.xml")];
    let snapshot = || watched.iter().map(|f| std::fs::read(f).expect("watched file")).collect::<Vec<_>>();
    let before = snapshot();
    let junit_time = std::fs::metadata(p.app.join("reports/junit.xml")).and_then(|m| m.modified()).expect("mtime");
    let state = |rel: &str| p.state.join(rel).display().to_string();
    let read_log = ["--input", "app.log", "--out"];
    let cases: Vec<(&str, Vec<String>, &str, &str)> = vec![
        ("collect-logs", vec!["app.log".into()], "--out", "which this run reads"),
        ("collect-logs", vec!["link.log".into()], "--out", "which this run reads"),
        ("collect-logs", vec!["hard.log".into()], "--out", "which this run reads"),
        ("collect-logs", vec!["logs/../app.log".into()], "--out", "which this run reads"),
        ("collect-logs", vec!["safedeploy.toml".into()], "--out", "is the config file"),
        ("collect-logs", vec![".".into()], "--out", "is a directory"),
        ("collect-logs", vec!["logs/".into()], "--out", "is a directory"),
        ("collect-logs", vec![" ".into()], "--out", "expected a file's name, not blanks"),
        ("collect-logs", vec!["app.log/error_hunt.txt".into()], "--out", "app.log is not a directory"),
        ("collect-logs", vec![state("ledger.sqlite3")], "--out", "which safedeploy keeps in the state dir"),
        ("collect-logs", vec![state("locks/new/error_hunt.txt")], "--out", "which safedeploy keeps in the state dir"),
        ("gate-tests", vec!["safedeploy.toml".into()], "--junit-out", "is the config file"),
        ("gate-tests", vec!["reports".into()], "--junit-out", "is a directory"),
        ("gate-tests", vec![state("local/gate.xml")], "--junit-out", "which safedeploy keeps in the state dir"),
        ("smoke-check", vec!["safedeploy.toml".into()], "--junit-out", "is the config file"),
        ("smoke-check", vec![state("ledger.sqlite3")], "--junit-out", "which safedeploy keeps in the state dir"),
        ("safedeploy", vec!["safedeploy.toml".into()], "--html", "is the config file"),
    ];
    for (bin, path, flag, said) in &cases {
        let mut args: Vec<String> = match *bin {
            "collect-logs" => read_log.iter().map(|s| s.to_string()).collect(),
            "smoke-check" => vec!["--env".into(), "staging".into(), (*flag).into()],
            "safedeploy" => vec!["report".into(), (*flag).into()],
            _ => vec![(*flag).into()],
        };
        args.extend(path.iter().cloned());
        let out = p.cmd(bin).args(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{bin} {args:?}: one error line: {stderr}");
        // A blank path is named in quotes, to be seen.
        let named =
            if path[0].trim().is_empty() { format!("{flag} {:?}", path[0]) } else { format!("{flag} {}", path[0]) };
        assert!(errors[0].contains(&named) && errors[0].contains(said), "{bin} {args:?}: {stderr}");
        assert!(snapshot() == before, "{bin} {args:?}: a watched file changed");
        assert!(!p.state.join("locks/new").exists() && !p.state.join("local/gate.xml").exists(), "{bin} {args:?}");
    }
    // A name past the file system's limit: exit 2 naming the flag, not a write fault.
    let long = "x".repeat(256);
    let a = p.cmd("collect-logs").args(["--input", "app.log", "--out", &long]).assert().code(2);
    assert!(output(&a).1.contains("--out: a name in the path is longer than 255 bytes"), "{}", output(&a).1);
    let now = std::fs::metadata(p.app.join("reports/junit.xml")).and_then(|m| m.modified()).expect("mtime");
    assert_eq!(now, junit_time, "the gate's tests ran though its report path was refused");
    // A path of its own is written, as before, in the state dir too (a pipeline's workspace
    // may be its state dir).
    for out in [p.app.join("logs/error_hunt.txt"), p.state.join("error_hunt.txt")] {
        p.cmd("collect-logs").args(["--input", "app.log", "--out"]).arg(&out).assert().success();
        assert!(std::fs::read_to_string(&out).expect("report").contains("boom"), "{}", out.display());
    }
    assert!(snapshot() == before, "a report of its own changed a watched file");
}

/// A report path that is a FIFO: with no process reading it, exit 2 at once (the open used to
/// wait for a reader for ever, and SIGTERM did not end it); with one, the report is written to
/// it as to a file (`--out /dev/stdout | less`).
#[test]
fn a_report_fifo_is_written_when_read_and_refused_when_not() {
    let p = Project::new();
    p.write("app.log", "2026-11-23T22:40:01.000Z ERROR boom\n");
    let fifo = p.app.join("report.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let a = p
        .cmd("collect-logs")
        .args(["--input", "app.log", "--out", "report.fifo"])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(2);
    let err = output(&a).1;
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert!(err.contains("the report report.fifo: is a FIFO that no process reads"), "{err}");
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read_to_string(fifo).expect("read the fifo")
    });
    // The reader's open waits for a writer; the writer looks for a reader without waiting, so it
    // tries again until the reader's open has come.
    let mut written = false;
    for _ in 0..200 {
        let out = p.cmd("collect-logs").args(["--input", "app.log", "--out", "report.fifo"]).output().expect("run");
        if out.status.success() {
            written = true;
            break;
        }
        assert!(String::from_utf8_lossy(&out.stderr).contains("no process reads"), "{out:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(written, "the report was never written to a FIFO being read");
    let report = reader.join().expect("reader");
    assert!(report.starts_with("safedeploy collect-logs report") && report.contains("ERROR boom"), "{report}");
}
