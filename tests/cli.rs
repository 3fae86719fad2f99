//! The command-line surface every binary shares.

use crate::support::BINARIES;
use predicates::prelude::*;

#[test]
fn every_binary_has_help_with_the_common_flags_and_exit_codes() {
    for bin in BINARIES.iter().chain(&["safedeploy"]) {
        let a = assert_cmd::Command::cargo_bin(bin).expect("bin").arg("--help").assert().success();
        let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
        for flag in [
            "--config",
            "--state-dir",
            "--dry-run",
            "--json",
            "--verbose",
            "--quiet",
            "--color",
            "[env: SAFEDEPLOY_DRY_RUN=]",
        ] {
            assert!(out.contains(flag), "{bin} --help lacks {flag}:\n{out}");
        }
        // clap wraps long lines to the terminal's width: compared word by word.
        let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words(&out).ends_with(&words(&safedeploy::error::exit_codes_help(bin))),
            "{bin} --help's exit codes:\n{out}"
        );
    }
}

#[test]
fn the_readme_exit_code_table_is_the_one_the_binaries_use() {
    let readme = crate::support::repo_file("README.md");
    let (start, end) = ("<!-- exit-codes:begin -->\n", "<!-- exit-codes:end -->");
    let a = readme.find(start).expect("README's exit-codes markers") + start.len();
    let b = readme.find(end).expect("README's exit-codes end");
    assert_eq!(&readme[a..b], safedeploy::error::exit_codes_table(), "README's exit code table");
    for (tool, _, _) in safedeploy::error::OUTCOMES {
        assert!(BINARIES.contains(tool) || *tool == "safedeploy", "{tool}");
    }
    assert_eq!(safedeploy::error::OUTCOMES.len(), BINARIES.len() + 1, "every binary, and safedeploy");
}

#[test]
fn jenkins_style_booleans_are_accepted_from_the_environment() {
    let p = crate::support::Project::new();
    // An empty value (a Jenkins boolean parameter left unset) means false: this is a real run.
    p.cmd("deploy-staging").args(["--version", "v1"]).env("SAFEDEPLOY_DRY_RUN", "").assert().success();
    // "true" means a dry run: nothing more is recorded.
    p.cmd("rollback")
        .env("SAFEDEPLOY_DRY_RUN", "true")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no last known good"));
    p.cmd("smoke-check").args(["--env", "staging"]).env("SAFEDEPLOY_RECORD", "1").assert().success();
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM verifications WHERE passed = 1"), 1);
}

#[test]
fn a_boolean_flag_takes_its_value_only_after_an_equals_sign() {
    let p = crate::support::Project::new();
    // `-q check`: the subcommand is never taken for the flag's value.
    let a = p.cmd("safedeploy").args(["-q", "check"]).assert().success();
    assert!(
        crate::support::output(&a).0.contains("valid. The effective configuration"),
        "{}",
        crate::support::output(&a).0
    );
    // `-q` keeps the one result line of a deploy, and nothing else.
    let a = p.cmd("deploy-staging").args(["-q", "--version", "v1"]).assert().success();
    let (out, err) = crate::support::output(&a);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("v1"), "{out}");
    assert!(!err.contains("starting v1"), "-q printed progress: {err}");
    p.cmd("safedeploy")
        .args(["--json=true", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"ok\":true"));
    // `--dry-run false` is not a value of --dry-run: an unexpected argument, exit 2, nothing done.
    p.cmd("deploy-staging").args(["--dry-run", "false", "--version", "v1"]).assert().code(2);
    p.cmd("deploy-staging").args(["--dry-run=false", "--version", "v1"]).assert().success();
    p.cmd("deploy-staging").args(["--dry-run=true", "--version", "v1"]).assert().success();
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
}

/// Without `--state-dir` the ledger lives in a per-user dir named after the app, outside the
/// app's tree (`$XDG_STATE_HOME/safedeploy/APP`, else `~/.local/state/safedeploy/APP`); an
/// empty `SAFEDEPLOY_STATE_DIR` is unset; a state dir inside the app's tree is warned of.
#[test]
fn the_state_dir_defaults_to_a_per_user_dir_named_after_the_app() {
    let p = crate::support::Project::new();
    let root = p.app.parent().expect("tmp").to_path_buf();
    let (xdg, home) = (root.join("xdg"), root.join("home"));
    let default_run = |bin: &str, args: &[&str], vars: &[(&str, &std::path::Path)]| {
        let mut c = p.cmd(bin);
        c.env("SAFEDEPLOY_STATE_DIR", "").env_remove("HOME").args(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.assert()
    };
    let a = default_run("gate-tests", &[], &[("XDG_STATE_HOME", &xdg), ("HOME", &home)]).success();
    let (_, err) = crate::support::output(&a);
    assert!(!err.contains("warning: the state dir"), "{err}");
    let ledger = xdg.join("safedeploy/url-shortener/ledger.sqlite3");
    let db = rusqlite::Connection::open(&ledger).expect("the ledger at the XDG default");
    assert_eq!(db.query_row("SELECT COUNT(*) FROM gate_runs", [], |r| r.get::<_, i64>(0)).expect("gate_runs"), 1);
    assert!(!p.app.join(".safedeploy").exists() && !p.state.exists());

    // A relative XDG_STATE_HOME is ignored (the XDG rule): HOME's .local/state is used. A
    // command that only reads creates nothing there; one that writes makes the ledger.
    let rel = [("XDG_STATE_HOME", std::path::Path::new("rel")), ("HOME", &home)];
    default_run("safedeploy", &["history"], &rel).success().stdout(predicate::str::contains("nothing recorded yet"));
    assert!(!home.join(".local/state/safedeploy").exists(), "history created nothing");
    default_run("gate-tests", &[], &rel).success();
    assert!(home.join(".local/state/safedeploy/url-shortener/ledger.sqlite3").exists());
    assert!(!p.app.join("rel").exists());

    // Inside the app's tree: a warning naming the place and the default, and the tool still runs.
    let inside = p.app.join("state");
    let a = p
        .cmd("safedeploy")
        .arg("--state-dir")
        .arg(&inside)
        .env("XDG_STATE_HOME", &xdg)
        .arg("history")
        .assert()
        .success();
    let (_, err) = crate::support::output(&a);
    let want = format!(
        "warning: the state dir {} is inside the app's source dir (what a build bundles) {}",
        inside.display(),
        p.app.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains(&format!("the default, {}", xdg.join("safedeploy/url-shortener").display())), "{err}");

    // Blanks are exit 2; a relative state dir is resolved once (`..` lexically: above the app,
    // so no warning) and every message names its absolute path.
    p.cmd("safedeploy")
        .arg("history")
        .env("SAFEDEPLOY_STATE_DIR", " ")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--state-dir \" \": expected a directory's path, not blanks"));
    let a = p.cmd("gate-tests").env("SAFEDEPLOY_STATE_DIR", "..").assert().success();
    assert!(!crate::support::output(&a).1.contains("warning: the state dir"), "{:?}", crate::support::output(&a));
    assert!(root.join("ledger.sqlite3").exists(), "the ledger above the app");
    let a = p.cmd("safedeploy").arg("history").env("SAFEDEPLOY_STATE_DIR", "-x").assert().success();
    assert!(crate::support::output(&a).1.contains(&format!("the state dir {} is inside", p.app.join("-x").display())));

    // An app name that cannot name a directory is exit 2, naming the field, before anything.
    for bad in ["..", "a/b", "-x"] {
        p.edit_config(|t| {
            let start = t.find("name = ").expect("app.name");
            let end = start + t[start..].find('\n').expect("line");
            format!("{}name = {bad:?}{}", &t[..start], &t[end..])
        });
        let a = default_run("safedeploy", &["history"], &[("XDG_STATE_HOME", &xdg)]).code(2);
        let (_, err) = crate::support::output(&a);
        assert!(err.contains(&format!("app.name {bad:?} cannot name a directory")), "{bad}: {err}");
    }
    assert_eq!(std::fs::read_dir(xdg.join("safedeploy")).expect("dir").count(), 1, "only url-shortener's dir");
}

/// Jenkins passes a parameter left empty as an empty variable. Every option's `SAFEDEPLOY_*`
/// variable, set empty, is read as not given: each binary (and safedeploy's subcommands) ends
/// as it does without it, never exit 2 for an empty value.
#[test]
fn every_empty_safedeploy_variable_is_read_as_not_given() {
    let p = crate::support::Project::new();
    p.v1_everywhere();
    let vars = |args: &[&str], bin: &str| -> Vec<String> {
        let help = p.cmd(bin).args(args).arg("--help").assert().success();
        let text = String::from_utf8_lossy(&help.get_output().stdout).into_owned();
        let mut v: Vec<String> = regex::Regex::new(r"env: (SAFEDEPLOY_[A-Z0-9_]+)=")
            .expect("regex")
            .captures_iter(&text)
            .map(|c| c[1].to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut runs: Vec<(&str, Vec<&str>)> = vec![
        ("gate-tests", vec![]),
        ("deploy-staging", vec!["--version", "v1"]),
        ("smoke-check", vec!["--env", "staging"]),
        ("promote", vec![]),
        ("rollback", vec![]),
        ("collect-logs", vec!["--env", "staging"]),
    ];
    runs.extend([
        ("safedeploy", vec!["status"]),
        ("safedeploy", vec!["history"]),
        ("safedeploy", vec!["report", "--json"]),
    ]);
    let mut checked = 0;
    for (bin, args) in &runs {
        let code_with = |var: Option<&str>| {
            let mut c = p.cmd(bin);
            c.args(args).arg("--dry-run");
            if let Some(v) = var {
                c.env(v, "");
            }
            let a = c.assert();
            (a.get_output().status.code(), String::from_utf8_lossy(&a.get_output().stderr).into_owned())
        };
        let (base, _) = code_with(None);
        let sub: Vec<&str> = args.iter().take_while(|a| !a.starts_with('-')).copied().collect();
        for var in vars(if *bin == "safedeploy" { &sub } else { &[] }, bin) {
            let (code, err) = code_with(Some(&var));
            assert_eq!(code, base, "{bin} {args:?} with {var}=\"\": {err}");
            checked += 1;
        }
    }
    assert!(checked > 40, "the variables were found in --help ({checked})");
}
