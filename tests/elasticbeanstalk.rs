//! The Elastic Beanstalk platform end to end: the real binaries drive the real aws CLI (from
//! PyPI, in the test venv), which talks to a simulated EB + S3 + STS on loopback. Every aws
//! command the platform builds is parsed by the CLI, and every answer the platform reads is the
//! CLI's own JSON. One test per scenario: normal deploy, Red health, Ready on the old label, an
//! ERROR event, not Ready before the deploy, throttling, a label EB does not see yet, a deadline,
//! blue/green promote and a rollback that is a CNAME swap, logs from two instances; rolling
//! deployments (versions mixed across instances, an instance EB skipped, a Red batch aborted,
//! a short Red blip tolerated, basic health said).

use crate::aws_cli::AwsCli;
use crate::eb_sim::{Outcome, Policy, Sim};
use crate::support::{Project, output};

struct Eb {
    p: Project,
    sim: Sim,
    /// What the config names as `aws`.
    aws: String,
    /// The fork server behind `aws`, if it is the warm CLI (ends with the test).
    cli: Option<AwsCli>,
}

const SECRET: &str = "simulatedSecretAccessKey0123456789abcdefgh";
const KEY_ID: &str = "AKIASIMULATED0KEY0ID";

impl Eb {
    /// The example app at v1 with an Elastic Beanstalk config: staging is one EB environment,
    /// production a blue/green pair (`blue` owns the production CNAME and runs `v0`).
    fn new() -> Eb {
        Self::with(|c| c)
    }

    /// [`Eb::new`] with the config edited, and the aws CLI forked from a warm server.
    fn with(edit: impl FnOnce(String) -> String) -> Eb {
        Self::build(edit, true)
    }

    /// [`Eb::new`] with the aws CLI's plain entry point (`bin/aws`), as a user installs it.
    fn with_plain_cli() -> Eb {
        Self::build(|c| c, false)
    }

    fn build(edit: impl FnOnce(String) -> String, warm: bool) -> Eb {
        let plain = crate::support::venv().join("bin/aws");
        assert!(plain.is_file(), "{} is missing: run scripts/setup (scripts/test does)", plain.display());
        let sim = Sim::start();
        let cli = warm.then(|| AwsCli::start(&sim.aws_env()));
        let aws = cli.as_ref().map_or(plain, |c| c.path.clone()).display().to_string();
        {
            let mut st = sim.state();
            st.add_version("v0", "url-shortener/v0-000000000000.zip");
            st.add_env("urlshort-staging", "urlshort-staging", Some("v0"), &["i-0staging"]);
            st.add_env("urlshort-blue", "urlshort-prod", Some("v0"), &["i-0blue1", "i-0blue2"]);
            st.add_env("urlshort-green", "urlshort-prod-standby", Some("v0"), &["i-0green1"]);
        }
        let p = Project::new();
        let config = format!(
            r#"[app]
name = "url-shortener"

[platform]
kind = "elasticbeanstalk"

[platform.elasticbeanstalk]
application = "url-shortener"
aws = [{aws:?}]
poll = "100ms"
poll_max = "300ms"
retry_backoff = "100ms"
health_grace = "1s"
deploy_timeout = "300s"
logs_timeout = "120s"

[environments.staging]
url = "{site}/urlshort-staging"

[environments.staging.elasticbeanstalk]
environment = "urlshort-staging"

[environments.production]
url = "{site}/urlshort-prod"

[environments.production.elasticbeanstalk]
environment = "urlshort-blue"
standby = "urlshort-green"
cname = "urlshort-prod"
preview_url = "{site}/{{cname}}"

[smoke]
deadline = "5s"
interval = "100ms"
version_path = "/version"

[[smoke.checks]]
name = "home page"
path = "/"
expect_status = [200]

[sla]
allowed_downtime = "15m"
environments = ["production"]
"#,
            site = format!("{}/site", sim.url()),
        );
        std::fs::write(p.config_path(), edit(config)).expect("config");
        p.commit_all("Deploy to Elastic Beanstalk", "Team");
        Eb { p, sim, aws, cli }
    }

    fn cmd(&self, bin: &str) -> assert_cmd::Command {
        let mut c = self.p.cmd(bin);
        for (k, v) in self.sim.aws_env() {
            c.env(k, v);
        }
        c
    }

    /// Runs a binary; asserts its exit code and that no credential reached its output.
    fn run(&self, bin: &str, args: &[&str], code: i32) -> (String, String) {
        let a = self.cmd(bin).args(args).assert();
        let (out, err) = output(&a);
        assert_eq!(a.get_output().status.code(), Some(code), "{bin} {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        for secret in [SECRET, KEY_ID, crate::eb_sim::URL_SIGNATURE] {
            assert!(!out.contains(secret) && !err.contains(secret), "{secret} leaked by {bin}:\n{out}\n{err}");
        }
        (out, err)
    }

    fn label(&self, env: &str) -> Option<String> {
        self.sim.state().env(env).label.clone()
    }

    fn owner_of_production(&self) -> String {
        let st = self.sim.state();
        st.envs.values().find(|e| e.cname.starts_with("urlshort-prod.")).expect("owner").name.clone()
    }

    fn commit_v2(&self) {
        self.p.commit_incident();
    }

    /// v1 through staging and production, verified in both; then the incident's v2 committed.
    fn v1_everywhere_then_v2_committed(&self) {
        self.run("deploy-staging", &["--version", "v1"], 0);
        self.run("smoke-check", &["--env", "staging", "--expect-version", "v1", "--record"], 0);
        self.run("promote", &["--version", "v1"], 0);
        self.run("smoke-check", &["--env", "production", "--expect-version", "v1", "--record"], 0);
        self.commit_v2();
    }
}

#[test]
fn deploy_uploads_registers_and_waits_until_ready_on_the_new_label() {
    let eb = Eb::with_plain_cli();
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 0);
    let commit = eb.p.git(&["rev-parse", "HEAD"]);
    {
        let st = eb.sim.state();
        let v = &st.versions["v1"];
        assert!(v.status.eq_ignore_ascii_case("processed"), "{v:?}");
        assert_eq!(v.bucket, "elasticbeanstalk-us-east-1-123456789012", "default bucket from sts");
        assert!(v.key.starts_with("url-shortener/v1-") && v.key.ends_with(".zip"), "{}", v.key);
        // The bundle is a zip with the app at its root, as EB requires.
        let bytes = &st.objects[&format!("{}/{}", v.bucket, v.key)];
        let names: Vec<String> = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .expect("zip")
            .file_names()
            .flatten()
            .map(|n| n.into_owned())
            .collect();
        assert!(names.contains(&"Procfile".to_string()) && names.contains(&"application.py".to_string()), "{names:?}");
        assert_eq!(st.env("urlshort-staging").label.as_deref(), Some("v1"));
        assert_eq!(st.count("UpdateEnvironment"), 1);
        assert_eq!(st.count("GetCallerIdentity"), 1);
    }
    assert!(err.contains("Environment update completed successfully."), "events are streamed:\n{err}");
    assert!(err.contains("Ready on v1, health Green"), "{err}");
    assert!(!err.contains("an old failure"), "events before the deploy are not read as its own:\n{err}");
    assert_eq!(
        eb.p.query_strings("SELECT label || ' ' || outcome FROM deployments"),
        vec!["v1 healthy".to_string()],
        "the ledger records the deploy"
    );
    assert_eq!(eb.p.query_strings("SELECT commit_id FROM versions WHERE label = 'v1'"), vec![commit]);

    // The same label again: reused, not uploaded twice, not redeployed.
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 0);
    assert!(err.contains("already registered in EB application url-shortener; reusing it"), "{err}");
    assert!(err.contains("already runs v1"), "{err}");
    let st = eb.sim.state();
    assert_eq!(st.calls.iter().filter(|c| c.starts_with("S3 PUT")).count(), 1);
    assert_eq!(st.count("UpdateEnvironment"), 1);
}

#[test]
fn red_health_after_the_deploy_is_a_failing_verdict() {
    let eb = Eb::new();
    eb.sim.state().outcomes.insert("v1".into(), Outcome::Red);
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 1);
    assert!(err.contains("urlshort-staging runs v1 but its health is Red (accepted: Green)"), "{err}");
    assert!(err.contains("WARN Environment health has transitioned from Ok to Severe"), "{err}");
    assert_eq!(eb.p.query_strings("SELECT outcome FROM deployments"), vec!["failed".to_string()]);
}

#[test]
fn ready_again_on_the_old_label_is_a_failure_not_a_hang() {
    let eb = Eb::new();
    eb.sim.state().outcomes.insert("v1".into(), Outcome::OldLabel);
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 1);
    assert!(
        err.contains("urlshort-staging went back to Ready on v0, not v1: Elastic Beanstalk did not deploy it"),
        "{err}"
    );
    assert_eq!(eb.label("urlshort-staging").as_deref(), Some("v0"));
}

#[test]
fn an_error_event_during_the_deploy_fails_it_even_when_green() {
    let eb = Eb::new();
    eb.sim.state().outcomes.insert("v1".into(), Outcome::ErrorEvent);
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 1);
    assert!(err.contains("runs v1 but Elastic Beanstalk reported 1 error event(s) during the deploy"), "{err}");
    assert!(err.contains("During an aborted deployment"), "{err}");
}

#[test]
fn an_environment_that_is_not_ready_is_never_touched() {
    let eb = Eb::new();
    eb.sim.state().envs.get_mut("urlshort-staging").expect("env").status = "Updating".into();
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 3);
    assert!(err.contains("urlshort-staging is Updating (Green), not Ready: another update is in progress"), "{err}");
    assert_eq!(eb.sim.state().count("UpdateEnvironment"), 0);
}

#[test]
fn throttling_transient_failures_and_a_label_not_yet_visible_are_retried() {
    let eb = Eb::new();
    {
        let mut st = eb.sim.state();
        st.throttle = 2;
        st.unavailable = 1;
        st.lagging_labels = true;
    }
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 0);
    assert!(err.contains("ServiceUnavailable — retry 3/5"), "a transient failure of a read is retried:\n{err}");
    assert!(err.contains("Throttling — retry 1/5"), "{err}");
    assert!(err.contains("Throttling — retry 2/5"), "{err}");
    assert!(err.contains("EB does not see v1 yet; asking again"), "{err}");
    let st = eb.sim.state();
    assert_eq!(st.count("UpdateEnvironment"), 2, "one refused for the lagging label, one accepted");
    assert_eq!(st.env("urlshort-staging").label.as_deref(), Some("v1"));
}

#[test]
fn a_deploy_past_its_deadline_exits_3_and_says_it_was_not_aborted() {
    let eb = Eb::with(|c| c.replace(r#"deploy_timeout = "300s""#, r#"deploy_timeout = "2s""#));
    // Registered and processed already, so the whole deadline is the update's (a loaded machine
    // can spend 2 s on processing alone).
    let commit = eb.p.git(&["rev-parse", "HEAD"]);
    eb.sim.state().add_version("v1", &format!("url-shortener/v1-{}.zip", &commit[..12]));
    eb.sim.state().outcomes.insert("v1".into(), Outcome::Stuck);
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 3);
    assert!(err.contains("urlshort-staging is still Updating (Grey) after 2s: gave up waiting for v1"), "{err}");
    assert!(err.contains("was not aborted"), "{err}");
    assert_eq!(eb.p.query_strings("SELECT outcome FROM deployments"), vec!["failed".to_string()]);
}

#[test]
fn a_label_eb_holds_for_another_bundle_is_refused() {
    let eb = Eb::new();
    eb.sim.state().add_version("v1", "url-shortener/v1-somethingelse.zip");
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 2);
    assert!(err.contains("already has a version v1 from s3://elasticbeanstalk-us-east-1-123456789012/url-shortener/v1-somethingelse.zip"), "{err}");
    let st = eb.sim.state();
    assert_eq!(st.calls.iter().filter(|c| c.starts_with("S3")).count(), 0);
    assert_eq!(st.count("UpdateEnvironment"), 0);
}

#[test]
fn a_bundle_eb_cannot_process_is_a_verdict() {
    let eb = Eb::new();
    eb.p.git(&["rm", "-q", "Procfile"]);
    eb.p.commit_all("Drop the Procfile", "Team");
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 1);
    assert!(err.contains("Elastic Beanstalk could not process version v1 (status FAILED)"), "{err}");
    assert_eq!(eb.sim.state().count("UpdateEnvironment"), 0);
}

#[test]
fn dry_run_prints_the_exact_aws_commands_and_changes_nothing() {
    let eb = Eb::new();
    let (out, err) = eb.run("deploy-staging", &["--version", "v1", "--dry-run"], 0);
    let all = format!("{out}{err}");
    assert!(all.contains(&format!("+ {} --output json s3 cp ", eb.aws)), "{all}");
    assert!(all.contains("s3://elasticbeanstalk-us-east-1-123456789012/url-shortener/v1-"), "{all}");
    assert!(all.contains("elasticbeanstalk create-application-version --application-name url-shortener --version-label v1 --source-bundle"), "{all}");
    assert!(all.contains("elasticbeanstalk update-environment --application-name url-shortener --environment-name urlshort-staging --version-label v1"), "{all}");
    let st = eb.sim.state();
    let changes: Vec<&String> = st
        .calls
        .iter()
        .filter(|c| !c.starts_with("Describe") && *c != "GetCallerIdentity" && !c.starts_with("Retrieve"))
        .collect();
    assert!(changes.is_empty(), "a dry run sent {changes:?}");
    assert!(!eb.p.state.join("ledger.sqlite3").exists());
}

#[test]
fn blue_green_promote_swaps_cnames_and_rollback_swaps_back_without_a_redeploy() {
    let eb = Eb::new();
    eb.run("deploy-staging", &["--version", "v1"], 0);
    eb.run("smoke-check", &["--env", "staging", "--expect-version", "v1", "--record"], 0);
    let (_, err) = eb.run("promote", &["--version", "v1"], 0);
    assert!(err.contains("deploying v1 to the standby urlshort-green"), "{err}");
    assert!(err.contains("urlshort-green owns urlshort-prod; v1 serves users"), "{err}");
    assert_eq!(eb.owner_of_production(), "urlshort-green");
    eb.run("smoke-check", &["--env", "production", "--expect-version", "v1", "--record"], 0);

    eb.commit_v2();
    eb.run("deploy-staging", &["--version", "v2"], 0);
    eb.run("smoke-check", &["--env", "staging", "--expect-version", "v2", "--record"], 0);
    eb.run("promote", &["--version", "v2"], 0);
    assert_eq!(eb.owner_of_production(), "urlshort-blue");
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v2"));
    let updates = eb.sim.state().count("UpdateEnvironment");

    // v2 turns out bad in production: the rollback is a swap back to green, still on v1.
    let (out, err) = eb.run("rollback", &["--reason", "5xx after v2", "--json"], 0);
    assert!(err.contains("urlshort-green already runs v1 and is Green; swapping only"), "{err}");
    assert_eq!(eb.owner_of_production(), "urlshort-green");
    assert_eq!(eb.sim.state().count("UpdateEnvironment"), updates, "a swap, no redeploy");
    assert_eq!(eb.sim.state().count("SwapEnvironmentCNAMEs"), 3);
    let summary: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(summary["restored_version"], "v1");
    assert_eq!(summary["bad_version"], "v2");
    // What users reach serves v1 again.
    let served = reqwest::blocking::get(format!("{}/site/urlshort-prod/version", eb.sim.url()))
        .expect("get")
        .text()
        .expect("text");
    assert_eq!(served, "v1");
    assert_eq!(
        eb.p.query_strings("SELECT bad_reason FROM versions WHERE label = 'v2'"),
        vec!["5xx after v2".to_string()]
    );
}

#[test]
fn a_promote_that_fails_on_the_standby_never_reaches_users() {
    let eb = Eb::new();
    eb.run("deploy-staging", &["--version", "v1"], 0);
    eb.run("smoke-check", &["--env", "staging", "--expect-version", "v1", "--record"], 0);
    eb.sim.state().outcomes.insert("v1".into(), Outcome::Red);
    // Only production's standby turns Red: staging already runs v1 Green.
    let (_, err) = eb.run("promote", &["--version", "v1"], 1);
    assert!(err.contains("v1 did not become healthy in production and never served its users: v0 still does"), "{err}");
    assert_eq!(eb.owner_of_production(), "urlshort-blue");
    assert_eq!(eb.sim.state().count("SwapEnvironmentCNAMEs"), 0);
    assert_eq!(eb.p.query_i64("SELECT COUNT(*) FROM incidents"), 0, "no downtime was spent");
}

#[test]
fn redeploy_promote_puts_the_previous_label_back_when_the_new_one_is_red() {
    let eb = Eb::with(in_place);
    eb.run("deploy-staging", &["--version", "v1"], 0);
    eb.run("smoke-check", &["--env", "staging", "--expect-version", "v1", "--record"], 0);
    eb.sim.state().outcomes.insert("v1".into(), Outcome::Red);
    let (_, err) = eb.run("promote", &["--version", "v1"], 1);
    assert!(err.contains("urlshort-blue: runs v1 (Red); deploying v0"), "{err}");
    assert!(err.contains("v1 did not become healthy in production; v0 is back"), "{err}");
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v0"));
    assert_eq!(eb.p.query_i64("SELECT COUNT(*) FROM incidents"), 1);
}

fn eb_line(host: &str, text: &str) -> String {
    // `Nov 24 01:02:03`: EB's syslog prefix, no year, day padded to two columns.
    let now = safedeploy::clock::rfc3339(safedeploy::clock::now_ms() - 1000);
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months[now[5..7].parse::<usize>().expect("month") - 1];
    let day: u32 = now[8..10].parse().expect("day");
    format!("{month} {day:>2} {} {host} web[2013]: {text}", &now[11..19])
}

#[test]
fn collect_logs_fetches_each_instances_bundle_and_finds_the_guilty_line() {
    let eb = Eb::new();
    eb.v1_everywhere_then_v2_committed();
    eb.run("deploy-staging", &["--version", "v2"], 0);
    eb.run("promote", &["--version", "v2", "--force", "--reason", "hotfix"], 0);
    let traceback = |host: &str| {
        [
            "ERROR in app: Exception on /shorten [POST]",
            "Traceback (most recent call last):",
            "File \"/var/app/current/application.py\", line 67, in load_urls",
            "return json.loads(urls_file)",
            "TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper",
            "user=admin password=hunter2 token=xoxb-1234567890-abcdefghij",
        ]
        .iter()
        .map(|t| eb_line(host, t))
        .collect::<Vec<_>>()
        .join("\n")
            + "\n"
    };
    {
        let mut st = eb.sim.state();
        st.logs.insert("i-0blue1".into(), vec![("var/log/web.stdout.log".into(), traceback("ip-10-0-0-1"))]);
        st.logs.insert(
            "i-0blue2".into(),
            vec![
                ("var/log/web.stdout.log".into(), traceback("ip-10-0-0-2")),
                ("var/log/nginx/access.log".into(), "10.0.0.9 - - \"GET / HTTP/1.1\" 200 12\n".into()),
            ],
        );
    }
    let (_, err) = eb.run("collect-logs", &["--env", "production", "--out", "hunt.txt"], 0);
    assert!(err.contains("asked 2 instance(s) for their bundle logs"), "{err}");
    let report = std::fs::read_to_string(eb.p.app.join("hunt.txt")).expect("report");
    assert!(
        report.contains("i-0blue1/var/log/web.stdout.log") && report.contains("i-0blue2/var/log/web.stdout.log"),
        "{report}"
    );
    assert!(report.contains("TypeError"), "{report}");
    assert!(report.contains("application.py:67"), "{report}");
    assert!(report.contains("return json.loads(urls_file)"), "{report}");
    assert!(!report.contains("xoxb-1234567890-abcdefghij"), "tokens are redacted:\n{report}");
    assert!(!report.contains(crate::eb_sim::URL_SIGNATURE));
    let st = eb.sim.state();
    assert_eq!(st.count("RequestEnvironmentInfo"), 1);
    assert!(st.count("RetrieveEnvironmentInfo") >= 2, "polled until both instances answered");
}

/// The warm aws CLI the other tests fork ([`AwsCli`]) answers as the plain entry point does:
/// the same exit code, stdout and stderr for a call, a usage error, a region taken from the
/// environment (the server's own has one), a file named relative to the working directory,
/// input from stdin, and an argument that is not UTF-8.
#[test]
fn the_warm_aws_cli_answers_as_the_plain_entry_point() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let eb = Eb::new();
    let plain = crate::support::venv().join("bin/aws");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("input.json"), r#"{"EnvironmentNames": ["urlshort-staging"]}"#).expect("input");
    // A user's own model of a service (~/.aws/models), under a HOME the server was not started
    // with: the STS model as a service named `stsx`.
    let home = dir.path().join("home");
    let sts = crate::support::venv().join("lib/python3.11/site-packages/awscli/botocore/data/sts");
    for version in std::fs::read_dir(&sts).expect("sts models").flatten().filter(|e| e.path().is_dir()) {
        let to = home.join(".aws/models/stsx").join(version.file_name());
        std::fs::create_dir_all(&to).expect("models dir");
        std::fs::copy(version.path().join("service-2.json"), to.join("service-2.json")).expect("copy model");
    }
    let home = home.display().to_string();
    let run = |exe: &str, args: &[OsString], var: Option<(&str, Option<&str>)>, stdin: &str| {
        let mut c = std::process::Command::new(exe);
        c.args(["--output", "json"]).args(args).current_dir(dir.path());
        c.envs(eb.sim.aws_env());
        match var {
            Some((k, Some(v))) => c.env(k, v),
            Some((k, None)) => c.env_remove(k),
            None => &mut c,
        };
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("aws");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), stdin.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("wait");
        // The simulator dates each answer when it is sent.
        let stdout: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains("\"DateUpdated\""))
            .map(String::from)
            .collect();
        (out.status.code(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let bucket = format!("elasticbeanstalk-{}-{}", crate::eb_sim::REGION, crate::eb_sim::ACCOUNT);
    let os = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
    let mut not_utf8 = os(&["elasticbeanstalk", "describe-environments", "--environment-names"]);
    not_utf8.push(OsString::from_vec(b"urlshort-\xff".to_vec()));
    /// A command run by both CLIs: its arguments, a variable set or taken out, its stdin, its
    /// exit code.
    struct Case<'a>(&'a str, Vec<OsString>, Option<(&'a str, Option<&'a str>)>, &'a str, i32);
    let describe = ["elasticbeanstalk", "describe-environments"];
    let cases = [
        Case("a call", os(&describe), None, "", 0),
        Case("a usage error", os(&[&describe[..], &["--no-such-flag"]].concat()), None, "", 255),
        Case("no region", os(&describe), Some(("AWS_DEFAULT_REGION", None)), "", 255),
        Case(
            "a user's model",
            os(&["stsx", "get-caller-identity", "--endpoint-url", &eb.sim.url()]),
            Some(("HOME", Some(&home))),
            "",
            0,
        ),
        Case("a relative file", os(&[&describe[..], &["--cli-input-json", "file://input.json"]].concat()), None, "", 0),
        Case("stdin", os(&["s3", "cp", "-", &format!("s3://{bucket}/from-stdin")]), None, "what stdin held", 0),
        Case("not UTF-8", not_utf8, None, "", 255),
    ];
    for Case(what, args, var, stdin, code) in cases {
        let mut answers = Vec::new();
        for exe in [plain.display().to_string(), eb.aws.clone()] {
            answers.push(run(&exe, &args, var, stdin));
            let uploaded = eb.sim.state().objects.remove(&format!("{bucket}/from-stdin"));
            assert_eq!(uploaded.is_some(), what == "stdin", "{what}: {exe}");
            assert!(uploaded.is_none_or(|o| o == stdin.as_bytes()), "{what}: {exe} uploaded what stdin held");
        }
        assert_eq!(answers[0].0, Some(code), "{what}: the plain CLI: {:?}", answers[0]);
        assert_eq!(answers[1], answers[0], "{what}: the warm CLI (left) and the plain one (right)");
    }
    // A client killed mid-command (a timeout, an interrupt) takes its command with it: `s3 cp -`
    // waits on stdin, which is never closed.
    let cli = eb.cli.as_ref().expect("warm");
    let until = |n: usize, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while cli.processes() != n {
            assert!(std::time::Instant::now() < deadline, "{what}: {} processes, not {n}", cli.processes());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let mut client = std::process::Command::new(&eb.aws)
        .args(["s3", "cp", "-", &format!("s3://{bucket}/never")])
        .envs(eb.sim.aws_env())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("aws");
    until(3, "the server, its process for the client and the command");
    // Held open until the command is gone: an EOF would end the upload by itself.
    let stdin = client.stdin.take();
    client.kill().expect("kill");
    client.wait().expect("wait");
    until(1, "the server alone once the client is killed");
    drop(stdin);
    let st = eb.sim.state();
    // Two calls each for the call and the relative file, the user's model and the uploads; the
    // others end in the CLI.
    assert_eq!(st.count("DescribeEnvironments"), 4, "{:?}", st.calls);
    assert_eq!(st.count("GetCallerIdentity"), 2, "{:?}", st.calls);
    assert_eq!(st.calls.len(), 8, "{:?}", st.calls);
}

#[test]
fn the_aws_clis_own_error_is_shown_when_a_call_fails() {
    let eb = Eb::with(|c| c.replace("retry_backoff", "bucket = \"no-such-bucket\"\nretry_backoff"));
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 3);
    assert!(err.contains("aws s3 cp failed (exit status 1)"), "{err}");
    assert!(err.contains("An error occurred (NoSuchBucket)"), "the CLI's stderr is shown:\n{err}");
    assert_eq!(eb.sim.state().count("CreateApplicationVersion"), 0);
    assert!(eb.p.query_strings("SELECT label FROM versions").is_empty(), "nothing recorded for a failed upload");
}

#[test]
fn sigterm_while_waiting_on_eb_exits_130_and_says_eb_carries_on() {
    let eb = Eb::new();
    eb.sim.state().outcomes.insert("v1".into(), Outcome::Stuck);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("deploy-staging"));
    cmd.args(["--version", "v1"]).current_dir(&eb.p.app).env("SAFEDEPLOY_STATE_DIR", &eb.p.state);
    for (k, v) in eb.sim.aws_env() {
        cmd.env(k, v);
    }
    // Abort once it is polling (DescribeEvents comes only after the update was accepted).
    let (code, err) = crate::support::abort_when(cmd, || eb.sim.state().count("DescribeEvents") > 0);
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("interrupted; urlshort-staging is left updating from v0 to v1; EB carries on without us"),
        "{err}"
    );
    assert_eq!(eb.p.query_strings("SELECT outcome FROM deployments"), vec!["failed"]);
    eb.p.assert_ledger_intact();
}

#[test]
fn tail_logs_of_a_single_environment() {
    let eb = Eb::with(|c| c.replace("logs_timeout", "logs = \"tail\"\nlogs_timeout"));
    eb.sim.state().logs.insert(
        "i-0staging".into(),
        vec![("/var/log/web.stdout.log".into(), eb_line("ip-10-0-1-1", "[ERROR] database is locked"))],
    );
    let (out, _) = eb.run("collect-logs", &["--env", "staging", "--json"], 0);
    let summary = out.lines().find(|l| l.contains("\"type\":\"summary\"")).expect("summary line");
    let v: serde_json::Value = serde_json::from_str(summary).expect("json");
    let sources = v["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 1, "{v}");
    assert!(sources[0].as_str().expect("path").ends_with("i-0staging/tail.log"), "{v}");
    assert!(out.contains("database is locked"), "{out}");
    assert_eq!(eb.sim.state().count("RequestEnvironmentInfo"), 1);
}

#[test]
fn an_incomplete_elasticbeanstalk_config_is_exit_2_naming_the_field() {
    let cases: [(&str, &str, &str); 7] = [
        ("[platform.elasticbeanstalk]\n", "[platform.elasticbeanstalk]\n", "[platform.elasticbeanstalk] table"),
        (
            "environment = \"urlshort-staging\"\n",
            "environment = \"x\"\n",
            "environments.staging.elasticbeanstalk.environment: expected an EB environment name",
        ),
        (
            "cname = \"urlshort-prod\"\n",
            "",
            "environments.production.elasticbeanstalk.cname: blue/green (standby) needs the CNAME",
        ),
        (
            "accepted_health = [\"Green\"]\n",
            "accepted_health = [\"Blue\"]\n",
            "accepted_health: expected values among Green",
        ),
        // A preview URL that cannot work is refused at load, not in the middle of a promote.
        (
            "preview_url = \"",
            "preview_url = \"not a url {cname}\" # ",
            "environments.production.elasticbeanstalk.preview_url: expected an http(s) URL",
        ),
        ("preview_url = \"", "preview_url = \"ftp://{cname}/\" # ", "preview_url: expected an http(s) URL"),
        (
            "environment = \"urlshort-staging\"\n",
            "environment = \"urlshort-staging\"\npreview_url = \"http://{cname}\"\n",
            "environments.staging.elasticbeanstalk.preview_url: a preview URL only means something with a standby",
        ),
    ];
    for (from, to, message) in cases {
        let eb = Eb::with(|c| {
            let c = c.replace("health_grace", "accepted_health = [\"Green\"]\nhealth_grace");
            assert!(c.contains(from), "{from}");
            if from == "[platform.elasticbeanstalk]\n" {
                // The whole table gone.
                let (start, end) = (c.find(from).expect("table"), c.find("[environments.staging]").expect("envs"));
                return format!("{}{}", &c[..start], &c[end..]);
            }
            c.replacen(from, to, 1)
        });
        for bin in ["deploy-staging", "promote", "rollback", "collect-logs"] {
            let args: &[&str] = match bin {
                "deploy-staging" => &["--version", "v1"],
                "collect-logs" => &["--env", "staging"],
                _ => &[],
            };
            let (_, err) = eb.run(bin, args, 2);
            assert!(err.contains(message), "{bin}: {err}");
            assert!(err.contains("safedeploy.toml"), "names the file: {err}");
        }
        assert!(eb.sim.state().calls.is_empty(), "nothing reached EB");
    }
}

/// The config without blue/green: no standby, and nothing that only means something with one.
fn in_place(c: String) -> String {
    let cut: String = c
        .lines()
        .filter(|l| !["standby = ", "cname = ", "preview_url = "].iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(cut, c, "the example's blue/green lines moved");
    cut
}

#[test]
fn in_place_promote_and_rollback_redeploy_the_label() {
    let eb = Eb::with(in_place);
    eb.v1_everywhere_then_v2_committed();
    eb.run("deploy-staging", &["--version", "v2"], 0);
    eb.run("promote", &["--version", "v2", "--force", "--reason", "hotfix"], 0);
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v2"));
    let (out, err) = eb.run("rollback", &["--json"], 0);
    assert!(err.contains("urlshort-blue: runs v2 (Green); deploying v1"), "{err}");
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v1"));
    let summary: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(summary["restored_version"], "v1");
    assert_eq!(eb.sim.state().count("SwapEnvironmentCNAMEs"), 0);
    // Nothing left to do: a second rollback is a no-op, as post { failure } needs.
    let (out, _) = eb.run("rollback", &[], 0);
    assert!(out.contains("production: already runs its last known good version v1; nothing to roll back"), "{out}");
    assert_eq!(eb.sim.state().count("UpdateEnvironment"), 5, "v1 and v2 to staging and production, v1 back");
    eb.p.assert_ledger_intact();
}

#[test]
fn without_a_version_route_smoke_check_reads_the_label_and_health_eb_reports() {
    let eb = Eb::with(|c| c.replace("version_path = \"/version\"\n", ""));
    eb.run("deploy-staging", &["--version", "v1"], 0);
    let (_, err) = eb.run("smoke-check", &["--env", "staging", "--expect-version", "v1", "--record", "-v"], 0);
    assert!(err.contains("read from the platform's live label and health"), "{err}");
    // No /version was asked for: the label came from DescribeEnvironments.
    assert!(eb.sim.state().count("DescribeEnvironments") > 0);
    // A label EB does not run: the deploy did not land (exit 3), nothing recorded against v2.
    let (_, err) = eb.run("smoke-check", &["--env", "staging", "--expect-version", "v2", "--record"], 3);
    assert!(err.contains("staging still serves v1, not v2"), "{err}");
    assert_eq!(eb.p.query_strings("SELECT label || ':' || passed FROM verifications"), vec!["v1:1".to_string()]);
}

/// v1 in staging and production (in place), v2 in staging and verified there.
fn eb_v2_ready_for_a_canary() -> Eb {
    let eb = Eb::with(|c| {
        in_place(c)
            .replace("[environments.staging]\n", "[deploy]\ncanary_interval = \"100ms\"\n\n[environments.staging]\n")
    });
    eb.v1_everywhere_then_v2_committed();
    eb.run("deploy-staging", &["--version", "v2"], 0);
    eb.run("smoke-check", &["--env", "staging", "--expect-version", "v2", "--record"], 0);
    eb
}

#[test]
fn an_eb_canary_is_a_traffic_split_that_ends_on_the_new_version_when_checks_pass() {
    let eb = eb_v2_ready_for_a_canary();
    let (_, err) = eb.run("promote", &["--version", "v2", "--canary", "25", "--bake", "3m"], 0);
    assert!(err.contains("traffic splitting: v2 gets 25% of the requests for 3 min"), "{err}");
    assert!(err.contains("canary round 1 passed (EB: Updating"), "{err}");
    assert!(err.contains("EB ended the evaluation: v2 takes every request"), "{err}");
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v2"));
    assert_eq!(eb.sim.state().count("AbortEnvironmentUpdate"), 0);
    let switched = eb.p.query_i64("SELECT switched_at FROM deployments WHERE env = 'production' AND label = 'v2'");
    let finished = eb.p.query_i64("SELECT finished_at FROM deployments WHERE env = 'production' AND label = 'v2'");
    assert!(switched < finished, "took traffic when the split began: {switched} {finished}");
    // Whole minutes only, within EB's 3-600; nothing was sent.
    let calls = eb.sim.state().count("UpdateEnvironment");
    for bake in ["30s", "2m", "601m"] {
        let (_, err) =
            eb.run("promote", &["--version", "v2", "--canary", "25", "--bake", bake, "--force", "--reason", "t"], 2);
        assert!(err.contains("EB's traffic splitting evaluates for whole minutes"), "{bake}: {err}");
    }
    assert_eq!(eb.sim.state().count("UpdateEnvironment"), calls);
}

#[test]
fn an_eb_canary_failing_safedeploys_checks_is_aborted_though_eb_calls_it_healthy() {
    let eb = eb_v2_ready_for_a_canary();
    // EB's health stays Green; only what users get shows v2 failing.
    eb.sim.state().site_fails.insert("v2".into());
    eb.sim.state().split_polls = 1000;
    let (out, err) = eb.run("promote", &["--version", "v2", "--canary", "50", "--bake", "5m"], 1);
    assert!(err.contains("v2 failed a canary round in production: checks / home page"), "{err}");
    assert!(err.contains("canary aborted "), "{err}");
    assert!(err.contains("Ready on v1 again"), "{err}");
    assert!(out.contains("50% of the users met v2 for "), "{out}");
    assert_eq!(eb.sim.state().count("AbortEnvironmentUpdate"), 1);
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v1"));
    assert_eq!(eb.p.query_i64("SELECT share_percent FROM incidents"), 50);
    let (took, restored, charged) = (
        eb.p.query_i64("SELECT took_traffic_at FROM incidents"),
        eb.p.query_i64("SELECT restored_at FROM incidents"),
        eb.p.query_i64("SELECT downtime_ms FROM incidents"),
    );
    assert_eq!(charged, (restored - took) * 50 / 100);
    assert_eq!(eb.p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
}

/// A candidate failing its users on a route no check visits, while EB calls it healthy and
/// every check passes: EB's own per-instance application metrics (enhanced health) show each
/// version's 5xx, and the judge aborts the split on them.
#[test]
fn an_eb_canary_failing_users_on_an_unvisited_route_is_aborted_on_ebs_application_metrics() {
    let eb = eb_v2_ready_for_a_canary();
    eb.sim.state().path_fails.insert(("v2".into(), "/report".into()));
    eb.sim.state().split_polls = 1000;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let site = format!("{}/site/urlshort-prod", eb.sim.url());
    let users = crate::support::users_on(site, &["/report", "/"], std::time::Duration::from_millis(3), stop.clone());
    let (_, err) = eb.run("promote", &["--version", "v2", "--canary", "10", "--bake", "5m"], 1);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    users.join().expect("users");
    assert!(err.contains("v2 answers users with server errors more often than v1 by over 1 point(s), by EB's application metrics: candidate "), "{err}");
    assert!(err.contains("canary round 1 passed"), "the checks passed: {err}");
    assert_eq!(eb.sim.state().count("AbortEnvironmentUpdate"), 1);
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v1"));
    assert_eq!(eb.p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
}

/// A candidate that answers every user 300 ms more slowly, while its checks pass and it
/// answers no 5xx: EB's per-instance latency percentiles show it, and two reports running
/// over the margin abort the split.
#[test]
fn an_eb_canary_much_slower_than_the_stable_version_is_aborted_on_ebs_latency_percentiles() {
    let eb = eb_v2_ready_for_a_canary();
    eb.sim.state().slow.insert("v2".into(), 0.3);
    eb.sim.state().split_polls = 1000;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let site = format!("{}/site/urlshort-prod", eb.sim.url());
    let users = crate::support::users_on(site, &["/"], std::time::Duration::from_millis(3), stop.clone());
    let (_, err) = eb.run("promote", &["--version", "v2", "--canary", "10", "--bake", "5m"], 1);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    users.join().expect("users");
    assert!(
        err.contains("v2 answers users more slowly than v1 by over 100 ms, by EB's application metrics in two reports running: p95 3"),
        "{err}"
    );
    assert!(err.contains("canary round 1 passed"), "the checks passed: {err}");
    assert_eq!(eb.sim.state().count("AbortEnvironmentUpdate"), 1);
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v1"));
    assert_eq!(eb.p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
}

#[test]
fn an_eb_canary_whose_health_goes_red_is_aborted_and_blue_green_refuses_a_canary() {
    let eb = eb_v2_ready_for_a_canary();
    eb.sim.state().outcomes.insert("v2".into(), Outcome::Red);
    eb.sim.state().split_polls = 1000;
    let (_, err) = eb.run("promote", &["--version", "v2", "--canary", "10", "--bake", "3m"], 1);
    assert!(err.contains("health is Red during the traffic split"), "{err}");
    assert_eq!(eb.sim.state().count("AbortEnvironmentUpdate"), 1);
    assert_eq!(eb.label("urlshort-blue").as_deref(), Some("v1"));

    let bg = Eb::new();
    bg.run("deploy-staging", &["--version", "v1"], 0);
    bg.run("smoke-check", &["--env", "staging", "--expect-version", "v1", "--record"], 0);
    let (_, err) = bg.run("promote", &["--version", "v1", "--canary", "10", "--bake", "3m"], 2);
    assert!(err.contains("is blue/green"), "{err}");
    assert_eq!(bg.sim.state().count("SwapEnvironmentCNAMEs"), 0);
}

/// Staging with `instances` on v0, deployed with EB's Rolling policy, one instance a batch, one
/// poll a batch. Each poll is three or four aws CLI runs, so the deadline is a loaded machine's.
fn rolling(edit: impl FnOnce(String) -> String, instances: &[&str]) -> Eb {
    let eb = Eb::with(edit);
    let mut st = eb.sim.state();
    st.update_polls = 1;
    st.add_env("urlshort-staging", "urlshort-staging", Some("v0"), instances);
    st.envs.get_mut("urlshort-staging").expect("staging").policy = Policy::Rolling(1);
    drop(st);
    eb
}

#[test]
fn a_rolling_deploy_mixes_versions_while_it_runs_and_ends_with_every_instance_on_the_new_one() {
    let eb = rolling(|c| c, &["i-0a", "i-0b", "i-0c", "i-0d"]);
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 0);
    // Every state EB went through is printed once, with how many instances run the label (the
    // fourth instance is on describe-instances-health's second page).
    for n in 0..=4 {
        assert!(err.contains(&format!("; v1 on {n} of 4 instance(s)")), "{n} of 4 not said:\n{err}");
    }
    assert!(err.contains("urlshort-staging: Ready, health Green; v1 on 4 of 4 instance(s)"), "{err}");
    assert_eq!(err.matches("v1 on 4 of 4 instance(s)").count(), 1, "a state is said once:\n{err}");
    let st = eb.sim.state();
    let seen: Vec<&Vec<Option<String>>> =
        st.rollouts.iter().filter(|(e, _)| e == "urlshort-staging").map(|(_, l)| l).collect();
    let mixed = |l: &&Vec<Option<String>>| {
        l.iter().any(|x| x.as_deref() == Some("v0")) && l.iter().any(|x| x.as_deref() == Some("v1"))
    };
    assert!(seen.iter().filter(|l| mixed(l)).count() >= 3, "users reached both versions while it rolled: {seen:?}");
    assert_eq!(st.on("urlshort-staging", "v1"), (4, 4));
    assert_eq!(st.count("AbortEnvironmentUpdate"), 0);
    drop(st);
    let site = format!("{}/site/urlshort-staging/version", eb.sim.url());
    for _ in 0..4 {
        assert_eq!(reqwest::blocking::get(&site).expect("site").text().expect("text"), "v1");
    }
}

#[test]
fn a_rolling_deploy_that_skipped_an_instance_fails_naming_it_even_when_its_health_is_accepted() {
    for accepted in ["", "accepted_health = [\"Green\", \"Yellow\"]\n"] {
        let eb = rolling(|c| c.replace("health_grace", &format!("{accepted}health_grace")), &["i-0a", "i-0b"]);
        eb.sim.state().outcomes.insert("v1".into(), Outcome::Straggler);
        let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 1);
        assert!(
            err.contains(
                "urlshort-staging is Ready on v1, but 1 of 2 instance(s) do not run it: i-0b runs v0 (Deployed)"
            ),
            "{accepted:?}:\n{err}"
        );
        assert!(err.contains("Incorrect application version found on 1 out of 2 instances"), "{err}");
        assert_eq!(eb.p.query_strings("SELECT outcome FROM deployments"), vec!["failed".to_string()]);
        assert_eq!(eb.sim.state().on("urlshort-staging", "v0"), (1, 2), "the skipped instance is left as EB left it");
    }
}

#[test]
fn a_batch_that_stays_red_is_aborted_and_eb_puts_the_old_version_back() {
    let eb = rolling(|c| c, &["i-0a", "i-0b", "i-0c"]);
    eb.sim.state().outcomes.insert("v1".into(), Outcome::BatchRed);
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 1);
    assert!(
        err.contains(
            "urlshort-staging's health stayed Red for 1s while Elastic Beanstalk deployed v1 (v1 had reached 1 of 3 instance(s)): the update was aborted and EB put v0 back (health Green) (it was v0)"
        ),
        "{err}"
    );
    assert!(err.contains("urlshort-staging: Updating, health Red; v1 on 1 of 3 instance(s)"), "{err}");
    let st = eb.sim.state();
    assert_eq!(st.count("AbortEnvironmentUpdate"), 1);
    assert_eq!(st.on("urlshort-staging", "v0"), (3, 3), "every instance back on v0");
    let e = st.env("urlshort-staging");
    assert_eq!((e.status.as_str(), e.health.as_str(), e.label.as_deref()), ("Ready", "Green", Some("v0")));
    drop(st);
    assert_eq!(eb.p.query_strings("SELECT outcome FROM deployments"), vec!["failed".to_string()]);
}

#[test]
fn red_health_shorter_than_the_grace_during_an_update_is_no_verdict() {
    // An all-at-once restart's blip: Red for the first three polls of the update.
    let eb = Eb::with(|c| c.replace("health_grace = \"1s\"", "health_grace = \"60s\""));
    eb.sim.state().envs.get_mut("urlshort-staging").expect("staging").red_while_updating = 3;
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 0);
    assert!(err.contains("urlshort-staging: Updating, health Red"), "the blip is said:\n{err}");
    assert!(err.contains("Ready on v1, health Green"), "{err}");
    assert_eq!(eb.sim.state().count("AbortEnvironmentUpdate"), 0);
}

#[test]
fn with_basic_health_the_per_instance_check_is_said_to_be_off_and_the_deploy_judged_without_it() {
    let eb = Eb::new();
    eb.sim.state().envs.get_mut("urlshort-staging").expect("staging").enhanced = false;
    let (_, err) = eb.run("deploy-staging", &["--version", "v1"], 0);
    assert_eq!(
        err.matches("urlshort-staging has basic health: EB keeps no per-instance deployment record").count(),
        1,
        "{err}"
    );
    assert!(!err.contains(" of 1 instance(s)"), "no per-instance count without the records:\n{err}");
    assert!(err.contains("Ready on v1, health Green"), "{err}");
    assert_eq!(eb.sim.state().count("DescribeInstancesHealth"), 1, "asked once, then not again");
}

#[test]
fn the_model_check_fails_a_misspelt_element_a_value_outside_its_enum_and_a_missing_envelope() {
    let ns = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/";
    let good = format!(
        "<DescribeEnvironmentsResponse xmlns=\"{ns}\"><DescribeEnvironmentsResult><Environments><member>\
         <EnvironmentName>x</EnvironmentName><Status>Ready</Status><Health>Green</Health>\
         <DateUpdated>2026-12-01T10:00:00.000Z</DateUpdated></member></Environments></DescribeEnvironmentsResult>\
         <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeEnvironmentsResponse>"
    );
    let one = |body: String| Sim::check_model(&[("DescribeEnvironments".into(), 200, body)]);
    assert!(one(good.clone()).is_ok(), "{:?}", one(good.clone()));
    for (bad, says) in [
        (good.replace("EnvironmentName>", "EnviromentName>"), "EnviromentName: not a member of EnvironmentDescription"),
        (good.replace(">Ready<", ">Readdy<"), "'Readdy' is not one of"),
        (good.replace("2026-12-01T10:00:00.000Z", "yesterday"), "is not a timestamp"),
        (
            good.replace("<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>", ""),
            "no ResponseMetadata/RequestId",
        ),
        (good.replace("DescribeEnvironmentsResult>", "DescribeEnvironmentResult>"), "no <DescribeEnvironmentsResult>"),
    ] {
        let said = one(bad).expect_err(says);
        assert!(said.contains(says), "{says}: {said}");
    }
}
