//! Every configuration value that cannot work is exit 2 at load, naming the field and what is
//! accepted, and nothing is created. The cases are generated from the effective configuration
//! itself (`safedeploy check`): every duration field, at 0, past its bound, at u64::MAX seconds
//! and exactly at both bounds; every URL, path and header with odd values; and the rules that
//! span fields. A new field of one of these kinds is swept without this file changing.

use crate::support::Project;
use std::path::Path;
use toml::Value;

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Idx(usize),
}

fn dotted(path: &[Seg]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => s += &format!(".{k}"),
            Seg::Idx(i) => s += &format!("[{i}]"),
        }
    }
    s
}

fn last_key(path: &[Seg]) -> &str {
    path.iter().rev().find_map(|s| if let Seg::Key(k) = s { Some(k.as_str()) } else { None }).unwrap_or("")
}

/// Every string leaf with its path.
fn leaves(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, String)>) {
    match v {
        Value::Table(t) => {
            for (k, v) in t {
                path.push(Seg::Key(k.clone()));
                leaves(v, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Seg::Idx(i));
                leaves(v, path, out);
                path.pop();
            }
        }
        Value::String(s) => out.push((path.clone(), s.clone())),
        _ => {}
    }
}

fn set(v: &mut Value, path: &[Seg], new: Value) {
    let Some((first, rest)) = path.split_first() else {
        *v = new;
        return;
    };
    let next = match (first, v) {
        (Seg::Key(k), Value::Table(t)) => t.entry(k.clone()).or_insert(Value::String(String::new())),
        (Seg::Idx(i), Value::Array(a)) => &mut a[*i],
        _ => panic!("no {path:?}"),
    };
    set(next, rest, new);
}

/// The project's effective configuration, as `safedeploy check` prints it.
fn effective(p: &Project) -> Value {
    let a = p.cmd("safedeploy").arg("check").assert().success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    toml::from_str(&out).expect("the effective configuration is TOML")
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn run(p: &Project, doc: &Value, bin: &str, state: &Path) -> Outcome {
    std::fs::write(p.config_path(), toml::to_string(doc).expect("toml")).expect("write config");
    let mut c = p.cmd(bin);
    c.env("SAFEDEPLOY_STATE_DIR", state);
    match bin {
        "safedeploy" => c.arg("check"),
        _ => c.args(["--version", "v1"]),
    };
    let a = c.assert();
    let o = a.get_output();
    Outcome { code: o.status.code(), stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

/// A value that must be refused: exit 2, one error line naming the field, nothing created.
/// A password some odd values carry: no message may print it.
const PASSWORD: &str = "hunter2";
const URL_WITH_PASSWORD: &str = "http://deploy:hunter2@127.0.0.1:8101";

fn refused(p: &Project, doc: &Value, field: &str, also: &str) -> Result<(), String> {
    // A state dir of its own, so "nothing created" is this case's alone.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let state =
        p.app.parent().expect("tmp").join(format!("state-{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
    let o = run(p, doc, "deploy-staging", &state);
    let errors: Vec<&str> = o.stderr.lines().filter(|l| l.contains("error:")).collect();
    if o.code != Some(2) || errors.len() != 1 || !errors[0].contains(field) || !errors[0].contains(also) {
        return Err(format!("exit {:?}, stderr {:?}", o.code, o.stderr));
    }
    if state.exists() {
        return Err("the state dir was created".into());
    }
    if o.stderr.contains(PASSWORD) {
        return Err(format!("the password was printed: {:?}", o.stderr));
    }
    Ok(())
}

fn accepted(p: &Project, doc: &Value) -> Result<(), String> {
    let o = run(p, doc, "safedeploy", &p.state);
    if o.code != Some(0) {
        return Err(format!("exit {:?}, stderr {:?}", o.code, o.stderr));
    }
    Ok(())
}

/// Sweeps every duration field of `base`; returns the table rows and the failures.
fn sweep_durations(p: &Project, base: &Value, rows: &mut Vec<String>, wrong: &mut Vec<String>) {
    let mut all = vec![];
    leaves(base, &mut vec![], &mut all);
    for (path, value) in all.iter().filter(|(_, v)| humantime::parse_duration(v).is_ok() && v.parse::<f64>().is_err()) {
        let (field, key) = (dotted(path), last_key(path));
        let with = |v: &str| {
            let mut d = base.clone();
            set(&mut d, path, Value::String(v.into()));
            d
        };
        // The range, as the error for an absurd value says it.
        let o = run(p, &with("18446744073709551615s"), "safedeploy", &p.state);
        let Some(range) = o.stderr.split("expected a duration from ").nth(1).and_then(|r| r.split(", got").next())
        else {
            wrong.push(format!("{field} = 18446744073709551615s: {:?}", o.stderr));
            continue;
        };
        let (min, max) = range.split_once(" to ").expect("a range");
        let mut cases = 0;
        let mut check = |what: &str, r: Result<(), String>| {
            cases += 1;
            if let Err(e) = r {
                wrong.push(format!("{field} = {what} (was {value}): {e}"));
            }
        };
        for absurd in ["18446744073709551615s", "10000000000000000000s", &format!("{max} 1s"), "forever", ""] {
            check(absurd, refused(p, &with(absurd), key, "expected a duration from"));
        }
        if min == "0s" {
            check("0s", accepted(p, &with("0s")));
        } else {
            check("0s", refused(p, &with("0s"), key, "expected a duration from"));
        }
        // poll_max must not be below poll: a rule between the two, so at a bound both move.
        let at = |v: &str| {
            let mut d = with(v);
            let partner = match key {
                "poll" if v == max => Some("poll_max"),
                "poll_max" if v == min => Some("poll"),
                _ => None,
            };
            if let Some(other) = partner {
                set(&mut d, &keys(&format!("platform.elasticbeanstalk.{other}")), Value::String(v.into()));
            }
            d
        };
        check(min, accepted(p, &at(min)));
        check(max, accepted(p, &at(max)));
        rows.push(format!("| `{field}` | duration, {min} to {max} | {cases} |"));
    }
}

/// Odd values for every URL, path and header field of `base`.
fn sweep_texts(p: &Project, base: &Value, rows: &mut Vec<String>, wrong: &mut Vec<String>) {
    let mut all = vec![];
    leaves(base, &mut vec![], &mut all);
    let local = base["platform"]["kind"].as_str() == Some("local");
    for (path, _) in &all {
        let (field, key) = (dotted(path), last_key(path));
        let env_url = field.starts_with("environments.") && key == "url";
        let values: Vec<&str> = if env_url || key.ends_with("_url") {
            let mut v = vec![
                "",
                "ftp://example.com/",
                "http://",
                "not a url",
                "http:///x",
                "http://127.0.0.1:",
                "http://127.0.0.1: ",
                "http://127.0.0.1:0",
                "http://127.0.0.1:8101/?x=1",
                "http://127.0.0.1:8101/#x",
                URL_WITH_PASSWORD,
            ];
            if env_url && local {
                v.extend(["https://127.0.0.1:9", "http://example.com:8101"]);
            }
            v
        } else if key == "system_path" {
            // Directories on the app's PATH: absolute, and no ':' to split it.
            vec!["", "usr/bin", "/usr/bin:/bin", "/x\ny", "-"]
        } else if key.ends_with("_path") || (key == "path" && field.starts_with("smoke.")) {
            vec!["", "health", "/a b", "/x\ny", " /x"]
        } else {
            continue;
        };
        let mut cases = 0;
        for v in &values {
            let mut d = base.clone();
            set(&mut d, path, Value::String(v.to_string()));
            cases += 1;
            if let Err(e) = refused(p, &d, key, "") {
                wrong.push(format!("{field} = {v:?}: {e}"));
            }
        }
        let class = match key {
            k if k.contains("url") => "URL",
            "system_path" => "directory",
            _ => "URL path",
        };
        rows.push(format!("| `{field}` | {class} | {cases} |"));
    }
}

/// Patterns that match any text, for every regex field of `base` (and `logs.pattern`): a check
/// that can never fail, or a log pattern that makes every line an error. A pattern that
/// matches only the empty text still tells an empty body apart, and is accepted.
fn sweep_patterns(p: &Project, base: &Value, rows: &mut Vec<String>, wrong: &mut Vec<String>) {
    let mut all = vec![];
    leaves(base, &mut vec![], &mut all);
    let mut fields: Vec<Vec<Seg>> = all
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| {
            let parent = path.len().checked_sub(2).and_then(|i| match &path[i] {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Idx(_) => None,
            });
            matches!(last_key(path), "body_matches" | "regex") || parent == Some("header_matches")
        })
        .collect();
    fields.push(keys("logs.pattern"));
    for path in &fields {
        let (field, key) = (dotted(path), last_key(path));
        let with = |v: &str| {
            let mut d = base.clone();
            set(&mut d, path, Value::String(v.into()));
            d
        };
        let mut cases = 0;
        for any in ["", ".*", "x*", "^", "$", "(?:)", "|ERROR", "a?", "(?m)^", "(?s).*"] {
            cases += 1;
            if let Err(e) = refused(p, &with(any), key, "matches any text") {
                wrong.push(format!("{field} = {any:?}: {e}"));
            }
        }
        for fine in ["^$", "ERROR"] {
            cases += 1;
            if let Err(e) = accepted(p, &with(fine)) {
                wrong.push(format!("{field} = {fine:?}: {e}"));
            }
        }
        rows.push(format!("| `{field}` | regex | {cases} |"));
    }
}

#[test]
fn every_value_that_cannot_work_is_exit_2_at_load_naming_its_field() {
    let p = Project::new();
    let mut rows = vec![];
    let mut wrong = vec![];
    let local = effective(&p);
    assert!(accepted(&p, &local).is_ok(), "the effective configuration is itself a valid one");
    sweep_durations(&p, &local, &mut rows, &mut wrong);
    sweep_texts(&p, &local, &mut rows, &mut wrong);
    sweep_patterns(&p, &local, &mut rows, &mut wrong);

    // The Elastic Beanstalk platform's own fields.
    let eb_text = crate::support::repo_file("examples/url-shortener/safedeploy.elasticbeanstalk.toml");
    std::fs::write(p.config_path(), &eb_text).expect("eb config");
    let eb = effective(&p);
    let mut eb_rows = vec![];
    sweep_durations(&p, &eb, &mut eb_rows, &mut wrong);
    rows.extend(eb_rows.into_iter().filter(|r| r.contains("`platform.")));

    // Values and rules of their own.
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        ("smoke.consecutive = 0", Box::new(|d| set(d, &keys("smoke.consecutive"), Value::Integer(0))), "consecutive"),
        // A gate that passes a version with no test run: the report's first countermeasure.
        ("gate.min_tests = 0", Box::new(|d| set(d, &keys("gate.min_tests"), Value::Integer(0))), "min_tests"),
        ("deploy.proxy = \"\"", Box::new(|d| set(d, &keys("deploy.proxy"), Value::String(String::new()))), "proxy"),
        (
            "gate.command = [\"\"]",
            Box::new(|d| set(d, &keys("gate.command"), Value::Array(vec![Value::String(String::new())]))),
            "command",
        ),
        ("gate.command = []", Box::new(|d| set(d, &keys("gate.command"), Value::Array(vec![]))), "command"),
        ("gate.junit = \"\"", Box::new(|d| set(d, &keys("gate.junit"), Value::String(String::new()))), "junit"),
        (
            "sla.environments = [\"nope\"]",
            Box::new(|d| set(d, &keys("sla.environments"), Value::Array(vec![Value::String("nope".into())]))),
            "sla.environments",
        ),
        (
            "two environments on one port",
            Box::new(|d| {
                let url = d["environments"]["production"]["url"].clone();
                set(d, &keys("environments.staging.url"), url);
            }),
            "url",
        ),
        (
            "logs.pattern = \"(\"",
            Box::new(|d| set(d, &keys("logs.pattern"), Value::String("(".into()))),
            "logs.pattern",
        ),
        ("logs.context = -1", Box::new(|d| set(d, &keys("logs.context"), Value::Integer(-1))), "context"),
        (
            "deploy.canary_error_margin = 100",
            Box::new(|d| set(d, &keys("deploy.canary_error_margin"), Value::Float(100.0))),
            "canary_error_margin",
        ),
        (
            "gate.min_diff_coverage = 0",
            Box::new(|d| set(d, &keys("gate.min_diff_coverage"), Value::Float(0.0))),
            "min_diff_coverage",
        ),
        (
            "gate.min_diff_coverage = 101",
            Box::new(|d| set(d, &keys("gate.min_diff_coverage"), Value::Float(101.0))),
            "min_diff_coverage",
        ),
        (
            "a header name with a space",
            Box::new(|d| set(d, &keys("smoke.chains[0].checks[0].headers"), toml::toml! { "X Api" = "v" }.into())),
            "headers.X Api",
        ),
        (
            "a header value with a newline",
            Box::new(|d| set(d, &keys("smoke.chains[0].checks[0].headers"), toml::toml! { "X-Api" = "a\nb" }.into())),
            "headers.X-Api",
        ),
        ("no smoke check at all", Box::new(|d| set(d, &keys("smoke.chains"), Value::Array(vec![]))), "smoke"),
        // What an environment hands its app: only the platform's own placeholders, and a
        // secret's reference must name a variable.
        (
            "an app variable naming ${HOME}",
            Box::new(|d| {
                set(
                    d,
                    &keys("environments.staging.env"),
                    toml::toml! { DATABASE_URL = "sqlite:///${HOME}/a.db" }.into(),
                )
            }),
            "environments.staging.env.DATABASE_URL",
        ),
        (
            "an app variable with an unclosed ${",
            Box::new(|d| set(d, &keys("environments.staging.env"), toml::toml! { X = "${PORT" }.into())),
            "environments.staging.env.X",
        ),
        (
            "from_env = \"\"",
            Box::new(|d| {
                set(d, &keys("environments.staging.env"), toml::toml! { SECRET_KEY = { from_env = "" } }.into())
            }),
            "environments.staging.env.SECRET_KEY",
        ),
        (
            "from_env = \"-x\"",
            Box::new(|d| {
                set(d, &keys("environments.staging.env"), toml::toml! { SECRET_KEY = { from_env = "-x" } }.into())
            }),
            "environments.staging.env.SECRET_KEY",
        ),
        (
            "a capture from json and a header",
            Box::new(|d| {
                set(
                    d,
                    &keys("smoke.chains[0].checks[0].capture"),
                    toml::toml! { c = { json = "$.a", header = "location" } }.into(),
                )
            }),
            "capture.c",
        ),
        (
            "a cleanup using a capture no check makes",
            Box::new(|d| {
                let cleanup = toml::toml! { name = "x"
                path = "/x/{{nothing}}" };
                set(d, &keys("smoke.chains[0].cleanup"), Value::Array(vec![cleanup.into()]))
            }),
            "unknown variable {{nothing}}",
        ),
        // Alert settings that would switch the alert path off, or mean nothing.
        (
            "logs.alert_transitions = []",
            Box::new(|d| set(d, &keys("logs.alert_transitions"), Value::Array(vec![]))),
            "logs.alert_transitions",
        ),
        (
            "logs.alert_transitions = [\"Triggerd\"]",
            Box::new(|d| set(d, &keys("logs.alert_transitions"), Value::Array(vec![Value::String("Triggerd".into())]))),
            "logs.alert_transitions",
        ),
        (
            "logs.alert_transitions = [\"Recovered\"]",
            Box::new(|d| {
                set(d, &keys("logs.alert_transitions"), Value::Array(vec![Value::String("Recovered".into())]))
            }),
            "logs.alert_transitions",
        ),
        (
            "logs.datadog_environments = { prod = \"nowhere\" }",
            Box::new(|d| set(d, &keys("logs.datadog_environments"), toml::toml! { prod = "nowhere" }.into())),
            "logs.datadog_environments",
        ),
        (
            "logs.datadog_environments = { \"\" = \"production\" }",
            Box::new(|d| set(d, &keys("logs.datadog_environments"), toml::toml! { "" = "production" }.into())),
            "logs.datadog_environments",
        ),
        (
            "environments.-x",
            Box::new(|d| {
                let staging = d["environments"]["staging"].clone();
                set(d, &keys("environments.-x"), staging);
                set(d, &keys("environments.-x.url"), Value::String("http://127.0.0.1:9".into()));
            }),
            "environments.-x",
        ),
    ];
    for (what, change, field) in &cases {
        let mut d = local.clone();
        change(&mut d);
        if let Err(e) = refused(&p, &d, field, "") {
            wrong.push(format!("{what}: {e}"));
        }
    }
    rows.push(format!(
        "| rules and values of their own: {} | each | {} |",
        cases.iter().map(|c| format!("`{}`", c.0)).collect::<Vec<_>>().join(", "),
        cases.len()
    ));

    // A FIFO named by smoke.include: refused at once, never waited on.
    let fifo = p.app.join("checks.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let mut d = local.clone();
    set(&mut d, &keys("smoke.include"), Value::String("checks.fifo".into()));
    let started = std::time::Instant::now();
    if let Err(e) = refused(&p, &d, "smoke.include", "not a regular file") {
        wrong.push(format!("smoke.include = a FIFO: {e}"));
    }
    assert!(started.elapsed().as_secs() < 60, "a FIFO must not be waited on");
    rows.push("| `smoke.include` naming a FIFO | refused, not opened | 1 |".into());

    assert!(wrong.is_empty(), "{} case(s) went wrong:\n{}", wrong.len(), wrong.join("\n"));
    let total: usize =
        rows.iter().filter_map(|r| r.rsplit('|').nth(1).and_then(|n| n.trim().parse::<usize>().ok())).sum();
    let table = format!(
        "| field | kind | cases |\n|---|---|---|\n{}\n\n{total} case(s), each exit 2 naming its field with nothing created, or accepted at its bounds.\n",
        rows.join("\n")
    );
    crate::support::check_doc_section("hostile-config", &table);
}

/// `a.b[0].c` as a path.
fn keys(dotted: &str) -> Vec<Seg> {
    let mut out = vec![];
    for part in dotted.split('.') {
        match part.split_once('[') {
            Some((k, rest)) => {
                out.push(Seg::Key(k.into()));
                for idx in rest.split('[') {
                    out.push(Seg::Idx(idx.trim_end_matches(']').parse().expect("index")));
                }
            }
            None => out.push(Seg::Key(part.into())),
        }
    }
    out
}
