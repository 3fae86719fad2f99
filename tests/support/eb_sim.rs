//! A simulated AWS Elastic Beanstalk + S3 + STS on 127.0.0.1, for the real aws CLI to talk to
//! (through `AWS_ENDPOINT_URL_ELASTIC_BEANSTALK` / `_S3` / `_STS`). It speaks the AWS Query
//! protocol (form-encoded POST, XML answers and errors) for the operations the platform uses,
//! S3's REST PUT/HEAD for uploads, and serves the presigned log URLs and each environment's
//! site (`/site/<cname or name>/...`) so smoke-check has something to check.
//!
//! Environments are state machines advanced by each `DescribeEnvironments` that names them:
//! an update is `Updating` for a few polls, then rolls out batch by batch (all instances in one
//! batch by default; `Policy::Rolling(n)` as EB's Rolling deployment policy), so users reach a
//! mix of versions while it runs, and ends as its label's scripted [`Outcome`]. Each instance
//! carries EB's per-instance Deployment record (`DescribeInstancesHealth`, enhanced health
//! only). A CNAME swap completes after a few polls. `throttle` refuses the next N calls.
//!
//! Answers are seeded from botocore's own example responses (`examples-1.json` beside the
//! service model the aws CLI parses with): every element an example has and the simulator does
//! not model (Tier, EndpointURL, DateCreated, an instance's metrics...) is sent as the example
//! has it, and what the simulator models is written over it.
#![allow(dead_code)]

use crate::server::{Req, Resp, Server};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const APP: &str = "url-shortener";
/// Appears in every presigned log URL; must never be printed.
pub const URL_SIGNATURE: &str = "SIMSIGNATURE0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ready, the new label, Green.
    Healthy,
    /// Ready, the new label, Red.
    Red,
    /// EB rolls the instances back: Ready again on the old label.
    OldLabel,
    /// Ready, new label, Green, but an ERROR event on the way.
    ErrorEvent,
    /// Stays Updating for ever.
    Stuck,
    /// Every batch but the last instance deploys; that one keeps the old version (EB skipped
    /// it). EB: Ready on the new label; enhanced health Yellow ("Incorrect application
    /// version"), basic health Green.
    Straggler,
    /// The first batch takes the new version, which answers users 500; EB's health turns Red
    /// and the rollout waits for the batch to become healthy (EB's rolling timeout: for ever
    /// here) until the update is aborted, when EB rolls the batch back.
    BatchRed,
}

/// The environment's deployment policy (`aws:elasticbeanstalk:command` DeploymentPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    AllAtOnce,
    /// Rolling, with this many instances per batch.
    Rolling(usize),
}

/// One EC2 instance of an environment, with EB's record of its most recent deployment.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    /// The version it runs.
    pub label: Option<String>,
    deployment: i64,
    /// EB's Deployment.Status: `Deployed`, `In Progress` or `Failed`.
    pub status: &'static str,
    /// Enhanced health: `Ok`, `Pending` (being deployed, out of service), `Severe`.
    pub health: &'static str,
    at: i64,
}

/// An update rolling out: `polls` DescribeEnvironments before the next batch.
#[derive(Debug, Clone)]
struct Rollout {
    label: String,
    old: Option<String>,
    polls: u32,
    outcome: Outcome,
    batch: usize,
    next: usize,
    /// Waiting for a Red batch to become healthy (BatchRed).
    halted: bool,
    /// Aborted: the next poll puts the old version back on every instance.
    rolling_back: bool,
}

#[derive(Debug, Clone)]
pub struct Env {
    pub name: String,
    pub cname: String,
    pub label: Option<String>,
    pub status: String,
    pub health: String,
    pub instances: Vec<Instance>,
    /// Enhanced health reporting (DescribeInstancesHealth answers; HealthStatus is sent).
    pub enhanced: bool,
    pub policy: Policy,
    /// Polls left of Red health at the start of an update (an all-at-once restart's blip).
    pub red_while_updating: u32,
    deployment: i64,
    rollout: Option<Rollout>,
    swap_with: Option<(String, u32)>,
    /// A traffic-splitting deployment under evaluation.
    pub split: Option<Split>,
    /// Requests its site answered (a split sends every 100th `percent` of them to the new one).
    served: u64,
    /// What each version answered since enhanced health last reported it.
    answered: std::collections::BTreeMap<String, Answered>,
    /// When enhanced health last reported the application metrics.
    metrics_at: i64,
}

/// A traffic-splitting deployment (DeploymentPolicy TrafficSplitting): `percent` of the site's
/// requests go to `label` until `polls` DescribeEnvironments have passed (EB's evaluation),
/// then EB ends it: on `label` (healthy), or back on the old version (its outcome is Red).
/// AbortEnvironmentUpdate sends every request back at once.
#[derive(Debug, Clone)]
pub struct Split {
    pub label: String,
    pub percent: u64,
    pub minutes: u64,
    polls: u32,
    outcome: Outcome,
    pub aborted: bool,
}

#[derive(Debug, Clone)]
pub struct AppVersion {
    pub bucket: String,
    pub key: String,
    pub status: String,
    polls: u32,
}

#[derive(Debug, Clone)]
struct Event {
    at: i64,
    env: String,
    severity: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Sample {
    env: String,
    instance: String,
    kind: String,
    at: i64,
    /// Visible once RetrieveEnvironmentInfo has been called this many more times.
    after: u32,
}

#[derive(Default)]
pub struct State {
    pub versions: BTreeMap<String, AppVersion>,
    pub objects: BTreeMap<String, Vec<u8>>,
    pub buckets: Vec<String>,
    pub envs: BTreeMap<String, Env>,
    events: Vec<Event>,
    samples: Vec<Sample>,
    /// Every Query action and S3 operation, in order.
    pub calls: Vec<String>,
    /// The next this many Elastic Beanstalk calls are refused with `Throttling`.
    pub throttle: usize,
    /// Then the next this many answer 503 `ServiceUnavailable` (a transient failure).
    pub unavailable: usize,
    /// How a deploy of a label ends (default: healthy).
    pub outcomes: HashMap<String, Outcome>,
    /// Polls an update stays `Updating` (and a swap pending).
    pub update_polls: u32,
    /// The first UpdateEnvironment after a CreateApplicationVersion does not see the label yet.
    pub lagging_labels: bool,
    lagging: Vec<String>,
    /// Versions whose site answers 500 though EB reports them healthy: only a check of what
    /// users get finds them.
    pub site_fails: std::collections::HashSet<String>,
    /// (version, path): that version answers 500 on that path of its site only.
    pub path_fails: std::collections::HashSet<(String, String)>,
    /// Versions whose site answers this many seconds more slowly than the 10–28 ms of the rest.
    pub slow: HashMap<String, f64>,
    /// Polls a traffic split is evaluated for.
    pub split_polls: u32,
    /// Every Query answer sent: (action, status, body).
    pub answers: Vec<(String, u16, String)>,
    /// Log files each instance holds: instance → [(path in the bundle, text)].
    pub logs: HashMap<String, Vec<(String, String)>>,
    /// While an update runs, the versions an environment's instances ran after each poll.
    pub rollouts: Vec<(String, Vec<Option<String>>)>,
    /// DescribeInstancesHealth answers this many instances a page (NextToken for the rest).
    pub instances_page: usize,
    clock: i64,
}

impl State {
    fn now(&mut self) -> i64 {
        // Strictly increasing milliseconds, so events order.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
        self.clock = t.max(self.clock + 1);
        self.clock
    }
    /// Logs an event of `env`; its time.
    fn event(&mut self, env: &str, severity: &str, message: &str) -> i64 {
        let at = self.now();
        self.events.push(Event { at, env: env.into(), severity: severity.into(), message: message.into() });
        at
    }

    /// Instances on `label`, out of all: "1 of 2".
    pub fn on(&self, env: &str, label: &str) -> (usize, usize) {
        let e = &self.envs[env];
        (e.instances.iter().filter(|i| i.label.as_deref() == Some(label)).count(), e.instances.len())
    }

    pub fn add_env(&mut self, name: &str, cname: &str, label: Option<&str>, instances: &[&str]) {
        let at = self.now() - 86_400_000;
        let instances = instances
            .iter()
            .map(|id| Instance {
                id: id.to_string(),
                label: label.map(Into::into),
                deployment: 1,
                status: "Deployed",
                health: "Ok",
                at,
            })
            .collect();
        self.envs.insert(
            name.into(),
            Env {
                name: name.into(),
                cname: format!("{cname}.{REGION}.elasticbeanstalk.com"),
                label: label.map(Into::into),
                status: "Ready".into(),
                health: "Green".into(),
                instances,
                enhanced: true,
                policy: Policy::AllAtOnce,
                red_while_updating: 0,
                deployment: 1,
                rollout: None,
                swap_with: None,
                split: None,
                served: 0,
                answered: Default::default(),
                metrics_at: safedeploy::clock::now_ms(),
            },
        );
        // An old error, before any deploy the tests make: it must not count against them.
        let at = self.now() - 3_600_000;
        self.events.push(Event { at, env: name.into(), severity: "ERROR".into(), message: "an old failure".into() });
    }

    /// A version EB already holds (e.g. deployed before safedeploy was used).
    pub fn add_version(&mut self, label: &str, key: &str) {
        let bucket = format!("elasticbeanstalk-{REGION}-{ACCOUNT}");
        self.versions
            .insert(label.into(), AppVersion { bucket, key: key.into(), status: "Processed".into(), polls: 0 });
    }

    pub fn env(&self, name: &str) -> &Env {
        &self.envs[name]
    }

    pub fn count(&self, call: &str) -> usize {
        self.calls.iter().filter(|c| *c == call).count()
    }

    fn tick(&mut self, name: &str) {
        let Some(env) = self.envs.get_mut(name) else { return };
        if let Some(split) = env.split.clone() {
            let n = name.to_string();
            if split.aborted || split.polls <= 1 {
                env.split = None;
                env.status = "Ready".into();
                env.health = "Green".into();
                let message = if split.aborted {
                    "Traffic splitting was aborted: all traffic is back on the previous version's instances."
                } else if split.outcome == Outcome::Red {
                    "New instances failed health checks during the evaluation; traffic was shifted back to the previous version."
                } else {
                    env.label = Some(split.label.clone());
                    "Traffic splitting completed: all traffic goes to the new version's instances."
                };
                let severity = if split.aborted || split.outcome != Outcome::Red { "INFO" } else { "WARN" };
                self.event(&n, severity, message);
                self.event(&n, "INFO", "Environment update completed successfully.");
            } else {
                env.split = Some(Split { polls: split.polls - 1, ..split.clone() });
                if split.outcome == Outcome::Red {
                    env.health = "Red".into();
                }
            }
            return;
        }
        if env.rollout.is_some() {
            self.roll(name);
            return;
        }
        let env = self.envs.get_mut(name).expect("env");
        if let Some((other, polls)) = env.swap_with.clone() {
            if polls > 1 {
                env.swap_with = Some((other, polls - 1));
                return;
            }
            env.swap_with = None;
            let mine = env.cname.clone();
            let theirs = std::mem::replace(&mut self.envs.get_mut(&other).expect("other").cname, mine);
            self.envs.get_mut(name).expect("env").cname = theirs;
            let n = name.to_string();
            self.event(&n, "INFO", &format!("Completed swapping CNAMEs for environments '{n}' and '{other}'."));
        }
    }

    /// One poll of an update rolling out: a wait, then the next batch, then the end.
    fn roll(&mut self, name: &str) {
        let polls_per_batch = self.update_polls.max(1);
        let env = self.envs.get_mut(name).expect("env");
        let mut r = env.rollout.clone().expect("rollout");
        let n = name.to_string();
        if env.red_while_updating > 0 {
            env.red_while_updating -= 1;
            env.health = "Red".into();
        } else if !r.halted {
            env.health = "Grey".into();
        }
        if r.rolling_back {
            for i in env.instances.iter_mut().filter(|i| i.label.as_deref() == Some(r.label.as_str())) {
                i.label = r.old.clone();
                (i.status, i.health) = ("Deployed", "Ok");
            }
            env.rollout = None;
            (env.status, env.health) = ("Ready".into(), "Green".into());
            self.event(
                &n,
                "INFO",
                "The environment was reverted to the previous version after the update was aborted.",
            );
            self.event(&n, "INFO", "Environment update completed successfully.");
            return;
        }
        if r.halted || r.outcome == Outcome::Stuck || r.polls > 1 {
            r.polls = r.polls.saturating_sub(1);
            env.rollout = Some(r);
            return;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
        let total = env.instances.len();
        let last = env.instances.last().map(|i| i.id.clone());
        // The batch just deployed leaves Pending; the next one goes out of service.
        for i in env.instances.iter_mut().filter(|i| i.status == "In Progress") {
            let straggler = r.outcome == Outcome::Straggler && total > 1 && Some(&i.id) == last.as_ref();
            if straggler {
                // EB skipped it: its record is still the previous deployment.
                (i.status, i.health) = ("Deployed", "Ok");
                continue;
            }
            i.label = Some(r.label.clone());
            (i.deployment, i.status, i.at) = (env.deployment, "Deployed", now);
            i.health = if r.outcome == Outcome::BatchRed { "Severe" } else { "Ok" };
        }
        if r.outcome == Outcome::BatchRed && env.instances.iter().any(|i| i.health == "Severe") {
            r.halted = true;
            env.health = "Red".into();
            env.rollout = Some(r);
            self.event(&n, "WARN", "Environment health has transitioned from Info to Severe. 100.0 % of the requests to the updated batch are failing with HTTP 5xx.");
            return;
        }
        if r.next < total {
            let end = (r.next + r.batch).min(total);
            for i in &mut env.instances[r.next..end] {
                (i.status, i.health, i.at) = ("In Progress", "Pending", now);
            }
            let m = format!(
                "Deploying new version to instance(s): {}.",
                env.instances[r.next..end].iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(",")
            );
            r.next = end;
            r.polls = polls_per_batch;
            env.rollout = Some(r);
            self.event(&n, "INFO", &m);
            return;
        }
        env.rollout = None;
        env.status = "Ready".into();
        env.health = "Green".into();
        let outcome = r.outcome;
        match outcome {
            Outcome::OldLabel => {
                for i in &mut env.instances {
                    i.label = r.old.clone();
                }
            }
            _ => env.label = Some(r.label.clone()),
        }
        let enhanced = env.enhanced;
        let deployment = env.deployment;
        if outcome == Outcome::Red {
            env.health = "Red".into();
        }
        if outcome == Outcome::Straggler && enhanced && total > 1 {
            env.health = "Yellow".into();
        }
        match outcome {
            Outcome::Healthy | Outcome::Straggler => {
                self.event(&n, "INFO", "New application version was deployed to running EC2 instances.");
                self.event(&n, "INFO", "Environment update completed successfully.");
                if outcome == Outcome::Straggler && enhanced && total > 1 {
                    self.event(&n, "WARN", &format!("Environment health has transitioned from Ok to Warning. Incorrect application version found on 1 out of {total} instances. Expected version \"{}\" (deployment {deployment}).", r.label));
                }
            }
            Outcome::Red => {
                self.event(&n, "INFO", "Environment update completed successfully.");
                self.event(&n, "WARN", "Environment health has transitioned from Ok to Severe. 100.0 % of the requests are failing with HTTP 5xx.");
            }
            Outcome::OldLabel => {
                self.event(&n, "WARN", "Deployment of the new version did not finish on every instance; the previous version was restored.");
                self.event(&n, "INFO", "Environment update completed successfully.");
            }
            Outcome::ErrorEvent => {
                self.event(
                    &n,
                    "ERROR",
                    "During an aborted deployment, some instances may have deployed the new application version.",
                );
                self.event(&n, "INFO", "Environment update completed successfully.");
            }
            Outcome::Stuck | Outcome::BatchRed => {}
        }
    }
}

pub struct Sim {
    pub server: Server,
    state: Arc<Mutex<State>>,
}

impl Sim {
    pub fn start() -> Sim {
        let state = Arc::new(Mutex::new(State {
            buckets: vec![format!("elasticbeanstalk-{REGION}-{ACCOUNT}")],
            update_polls: 2,
            split_polls: 4,
            instances_page: 3,
            ..Default::default()
        }));
        let s = state.clone();
        let base = Arc::new(Mutex::new(String::new()));
        let b = base.clone();
        let server = Server::start(move |req, _| {
            let mut st = s.lock().expect("sim");
            let resp = handle(&mut st, req, &b.lock().expect("base"));
            // Every Query-protocol answer is kept, to be held to AWS's model when the sim ends.
            if req.method == "POST" && req.path.split('?').next() == Some("/") {
                let p: HashMap<String, String> = form_urlencoded::parse(&req.body).into_owned().collect();
                let action = p.get("Action").cloned().unwrap_or_default();
                st.answers.push((action, resp.status, String::from_utf8_lossy(&resp.body).into_owned()));
            }
            resp
        });
        *base.lock().expect("base") = server.url();
        Sim { server, state }
    }

    /// Holds `answers` to botocore's model of each operation (`scripts/check-eb-model.py`, with
    /// the aws CLI's own botocore); the departures, if any.
    pub fn check_model(answers: &[(String, u16, String)]) -> Result<String, String> {
        let doc: Vec<serde_json::Value> =
            answers.iter().map(|(a, s, b)| serde_json::json!({"action": a, "status": s, "body": b})).collect();
        let dir =
            std::env::temp_dir().join(format!("eb-answers-{}-{}", std::process::id(), safedeploy::clock::now_ms()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("answers.json");
        std::fs::write(&file, serde_json::to_vec(&doc).expect("json")).expect("write");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(crate::support::venv().join("bin/python3"))
            .arg(root.join("scripts/check-eb-model.py"))
            .arg(&file)
            .output()
            .expect("python");
        std::fs::remove_dir_all(&dir).ok();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() { Ok(said) } else { Err(said) }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("sim")
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// What the aws CLI needs to reach this server instead of AWS, with planted credentials.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        let u = self.url();
        [
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", u.as_str()),
            ("AWS_ENDPOINT_URL_S3", u.as_str()),
            ("AWS_ENDPOINT_URL_STS", u.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIASIMULATED0KEY0ID"),
            ("AWS_SECRET_ACCESS_KEY", "simulatedSecretAccessKey0123456789abcdefgh"),
            ("AWS_DEFAULT_REGION", REGION),
            // One attempt per aws command: the retries under test are safedeploy's own.
            ("AWS_MAX_ATTEMPTS", "1"),
            ("AWS_RETRY_MODE", "standard"),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_PAGER", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn iso(ms: i64) -> String {
    safedeploy::clock::rfc3339(ms)
}

/// `2026-11-24T01:04:09.123000Z`, `...+00:00`: the times the CLI sends.
fn parse_time(s: &str) -> i64 {
    let s = s.trim_end_matches("+00:00").trim_end_matches('Z');
    safedeploy::clock::parse_rfc3339(s).unwrap_or_else(|| panic!("sim: unreadable time {s:?}"))
}

const EB_NS: &str = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/";

fn ok(action: &str, ns: &str, result: &str) -> Resp {
    let body = format!(
        "<{action}Response xmlns=\"{ns}\"><{action}Result>{result}</{action}Result>\
         <ResponseMetadata><RequestId>sim-req</RequestId></ResponseMetadata></{action}Response>"
    );
    Resp::new(200, body).header("Content-Type", "text/xml")
}

/// EB's answer naming an environment it does not have.
fn no_env(name: &str) -> Resp {
    error(400, "InvalidParameterValue", &format!("No Environment found for EnvironmentName = '{name}'."))
}

fn error(status: u16, code: &str, message: &str) -> Resp {
    let body = format!(
        "<ErrorResponse xmlns=\"{EB_NS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{}</Message></Error><RequestId>sim-req</RequestId></ErrorResponse>",
        esc(message)
    );
    Resp::new(status, body).header("Content-Type", "text/xml")
}

/// botocore's example output of `op` (`examples-1.json`), the base every answer is written on.
fn example(op: &str) -> serde_json::Value {
    static EXAMPLES: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let all = EXAMPLES.get_or_init(|| {
        let lib = crate::support::venv().join("lib");
        let dir = std::fs::read_dir(&lib)
            .expect("venv lib")
            .flatten()
            .map(|d| d.path().join("site-packages"))
            .find(|d| d.is_dir())
            .expect("site-packages");
        let rel = "botocore/data/elasticbeanstalk/2010-12-01/examples-1.json";
        let file = [dir.join("awscli").join(rel), dir.join(rel)]
            .into_iter()
            .find(|f| f.is_file())
            .unwrap_or_else(|| panic!("no {rel} under {}", dir.display()));
        serde_json::from_slice(&std::fs::read(&file).expect("examples")).expect("examples json")
    });
    all["examples"][op][0]["output"].clone()
}

/// The Query protocol's XML of a JSON value: an object's keys as elements, a list's items as
/// `<member>`s, scalars as text.
fn xml_of(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => m.iter().map(|(k, v)| format!("<{k}>{}</{k}>", xml_of(v))).collect(),
        Value::Array(a) => a.iter().map(|v| format!("<member>{}</member>", xml_of(v))).collect(),
        Value::String(t) => esc(t),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `base` (an example's object) with `over` written over it; a null in `over` removes the key.
fn seeded(mut base: serde_json::Value, over: serde_json::Value) -> String {
    let m = base.as_object_mut().expect("an example object");
    for (k, v) in over.as_object().expect("an object") {
        if v.is_null() {
            m.remove(k);
        } else {
            m.insert(k.clone(), v.clone());
        }
    }
    xml_of(&base)
}

/// An environment's description, `updated` its DateUpdated.
fn env_xml(e: &Env, updated: i64) -> String {
    let enhanced = |v: &str| if e.enhanced { serde_json::json!(v) } else { serde_json::Value::Null };
    let status = match (e.status.as_str(), e.health.as_str()) {
        ("Updating", "Red") => "Severe",
        ("Updating", _) => "Info",
        (_, "Green") => "Ok",
        (_, "Yellow") => "Warning",
        (_, "Red") => "Severe",
        _ => "Unknown",
    };
    seeded(
        example("DescribeEnvironments")["Environments"][0].clone(),
        serde_json::json!({
            "EnvironmentName": e.name,
            "EnvironmentId": format!("e-{}", e.name.len()),
            "ApplicationName": APP,
            "VersionLabel": e.label,
            "SolutionStackName": "64bit Amazon Linux 2023 running Python 3.11",
            "Status": e.status,
            "Health": e.health,
            "HealthStatus": enhanced(status),
            "CNAME": e.cname,
            "DateUpdated": iso(updated),
            "AbortableOperationInProgress": e.status == "Updating",
        }),
    )
}

fn version_xml(label: &str, v: &AppVersion) -> String {
    let now = iso(safedeploy::clock::now_ms());
    let member = seeded(
        example("DescribeApplicationVersions")["ApplicationVersions"][0].clone(),
        serde_json::json!({
            "ApplicationName": APP,
            "VersionLabel": label,
            "Description": null,
            "SourceBundle": {"S3Bucket": v.bucket, "S3Key": v.key},
            "Status": v.status,
            "DateCreated": now,
            "DateUpdated": now,
        }),
    );
    format!("<member>{member}</member>")
}

/// `OptionSettings.member.N.{Namespace,OptionName,Value}`.
fn option_settings(p: &HashMap<String, String>) -> Vec<(String, String, String)> {
    (1..)
        .map_while(|i| {
            let f = |k: &str| p.get(&format!("OptionSettings.member.{i}.{k}")).cloned();
            Some((f("Namespace")?, f("OptionName")?, f("Value").unwrap_or_default()))
        })
        .collect()
}

fn members(p: &HashMap<String, String>, prefix: &str) -> Vec<String> {
    (1..).map_while(|i| p.get(&format!("{prefix}.member.{i}")).cloned()).collect()
}

fn handle(st: &mut State, req: &Req, base: &str) -> Resp {
    let path = req.path.split('?').next().unwrap_or("").to_string();
    if req.method == "GET" && path.starts_with("/site/") {
        return site(st, &path["/site/".len()..]);
    }
    if req.method == "GET" && path.starts_with("/logs/") {
        return log_download(st, req, &path["/logs/".len()..]);
    }
    if req.method != "POST" || path != "/" {
        return s3(st, req, &path);
    }
    let p: HashMap<String, String> = form_urlencoded::parse(&req.body).into_owned().collect();
    let action = p.get("Action").cloned().unwrap_or_default();
    st.calls.push(action.clone());
    if action == "GetCallerIdentity" {
        return ok(
            "GetCallerIdentity",
            "https://sts.amazonaws.com/doc/2011-06-15/",
            &format!(
                "<Arn>arn:aws:iam::{ACCOUNT}:user/deployer</Arn><UserId>AIDASIM</UserId><Account>{ACCOUNT}</Account>"
            ),
        );
    }
    if st.throttle > 0 {
        st.throttle -= 1;
        return error(400, "Throttling", "Rate exceeded");
    }
    if st.unavailable > 0 {
        st.unavailable -= 1;
        return error(503, "ServiceUnavailable", "Service is unavailable. Please try again later.");
    }
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    match action.as_str() {
        "DescribeApplicationVersions" => {
            let labels = members(&p, "VersionLabels");
            let mut out = String::new();
            for (label, v) in st.versions.iter_mut() {
                if !labels.is_empty() && !labels.contains(label) {
                    continue;
                }
                if v.status == "Processing" {
                    v.polls = v.polls.saturating_sub(1);
                    if v.polls == 0 {
                        let object = format!("{}/{}", v.bucket, v.key);
                        v.status = if valid_bundle(st.objects.get(&object)) { "Processed" } else { "Failed" }.into();
                    }
                }
                out += &version_xml(label, v);
            }
            ok("DescribeApplicationVersions", EB_NS, &format!("<ApplicationVersions>{out}</ApplicationVersions>"))
        }
        "CreateApplicationVersion" => {
            let (label, bucket, key) = (get("VersionLabel"), get("SourceBundle.S3Bucket"), get("SourceBundle.S3Key"));
            if st.versions.contains_key(&label) {
                return error(400, "InvalidParameterValue", &format!("Application Version {label} already exists."));
            }
            if !st.objects.contains_key(&format!("{bucket}/{key}")) {
                return error(
                    400,
                    "InvalidParameterCombination",
                    &format!("Unable to download from S3 location (Bucket: {bucket} Key: {key}). Reason: Not Found"),
                );
            }
            let processing = get("Process") == "true";
            let v = AppVersion {
                bucket,
                key,
                status: if processing { "Processing" } else { "Unprocessed" }.into(),
                polls: 2,
            };
            let xml = version_xml(&label, &v);
            st.versions.insert(label.clone(), v);
            if st.lagging_labels {
                st.lagging.push(label);
            }
            ok(
                "CreateApplicationVersion",
                EB_NS,
                &format!(
                    "<ApplicationVersion>{}</ApplicationVersion>",
                    xml.trim_start_matches("<member>").trim_end_matches("</member>")
                ),
            )
        }
        "DescribeEnvironments" => {
            let names = members(&p, "EnvironmentNames");
            let mut out = String::new();
            let all: Vec<String> = st.envs.keys().cloned().collect();
            for n in all.iter().filter(|n| names.is_empty() || names.contains(n)) {
                st.tick(n);
                let e = &st.envs[n];
                if e.status == "Updating" {
                    let labels = e.instances.iter().map(|i| i.label.clone()).collect();
                    st.rollouts.push((n.clone(), labels));
                }
                out += &format!("<member>{}</member>", env_xml(&st.envs[n], safedeploy::clock::now_ms()));
            }
            ok("DescribeEnvironments", EB_NS, &format!("<Environments>{out}</Environments>"))
        }
        "UpdateEnvironment" => {
            let (name, label) = (get("EnvironmentName"), get("VersionLabel"));
            if let Some(i) = st.lagging.iter().position(|l| *l == label) {
                st.lagging.remove(i);
                return error(400, "InvalidParameterValue", &format!("No Application Version named '{label}' found."));
            }
            if !st.versions.contains_key(&label) {
                return error(400, "InvalidParameterValue", &format!("No Application Version named '{label}' found."));
            }
            let Some(env) = st.envs.get(&name) else {
                return no_env(&name);
            };
            if env.status != "Ready" {
                return error(
                    400,
                    "InvalidParameterValue",
                    &format!("Environment named {name} is in an invalid state for this operation. Must be Ready."),
                );
            }
            let outcome = st.outcomes.get(&label).copied().unwrap_or(Outcome::Healthy);
            let polls = st.update_polls;
            let options = option_settings(&p);
            let option =
                |ns: &str, name: &str| options.iter().find(|(n, o, _)| n == ns && o == name).map(|(_, _, v)| v.clone());
            let split_polls = st.split_polls.max(1);
            let env = st.envs.get_mut(&name).expect("env");
            env.status = "Updating".into();
            if option("aws:elasticbeanstalk:command", "DeploymentPolicy").as_deref() == Some("TrafficSplitting") {
                let num = |o: &str, d: u64| {
                    option("aws:elasticbeanstalk:trafficsplitting", o).map_or(Ok(d), |v| v.parse::<u64>())
                };
                let (Ok(percent), Ok(minutes)) = (num("NewVersionPercent", 10), num("EvaluationTime", 5)) else {
                    return error(400, "InvalidParameterValue", "NewVersionPercent and EvaluationTime take integers");
                };
                if !(1..=100).contains(&percent) || !(3..=600).contains(&minutes) {
                    env.status = "Ready".into();
                    return error(
                        400,
                        "ConfigurationValidationException",
                        "NewVersionPercent: 1-100; EvaluationTime: 3-600",
                    );
                }
                env.split = Some(Split { label, percent, minutes, polls: split_polls, outcome, aborted: false });
                // The split's reports begin with it: the first one covers the split's first
                // seconds, not every minute since the environment was made.
                env.metrics_at = safedeploy::clock::now_ms();
                env.answered.clear();
            } else {
                let policy = match option("aws:elasticbeanstalk:command", "DeploymentPolicy").as_deref() {
                    Some("Rolling") => Policy::Rolling(
                        option("aws:elasticbeanstalk:command", "BatchSize").and_then(|b| b.parse().ok()).unwrap_or(1),
                    ),
                    Some("AllAtOnce") => Policy::AllAtOnce,
                    _ => env.policy,
                };
                let batch = match policy {
                    Policy::AllAtOnce => env.instances.len(),
                    Policy::Rolling(n) => n.max(1),
                };
                env.health = "Grey".into();
                env.deployment += 1;
                env.rollout = Some(Rollout {
                    old: env.label.clone(),
                    label,
                    polls,
                    outcome,
                    batch,
                    next: 0,
                    halted: false,
                    rolling_back: false,
                });
            }
            // DateUpdated is when the update began: the time its events start at.
            let at = st.event(&name, "INFO", "Environment update is starting.");
            ok("UpdateEnvironment", EB_NS, &env_xml(&st.envs[&name], at))
        }
        "AbortEnvironmentUpdate" => {
            let name = get("EnvironmentName");
            let Some(env) = st.envs.get_mut(&name) else {
                return no_env(&name);
            };
            if env.status != "Updating" {
                return error(400, "InvalidParameterValue", &format!("Environment named {name} is not being updated."));
            }
            match env.split.as_mut() {
                Some(s) => s.aborted = true,
                None => {
                    if let Some(r) = env.rollout.as_mut() {
                        r.rolling_back = true;
                    }
                }
            }
            st.event(&name, "INFO", "Abort of the environment update was requested.");
            Resp::new(
                200,
                format!("<AbortEnvironmentUpdateResponse xmlns=\"{EB_NS}\"><ResponseMetadata><RequestId>sim-req</RequestId></ResponseMetadata></AbortEnvironmentUpdateResponse>"),
            )
            .header("Content-Type", "text/xml")
        }
        "DescribeEvents" => {
            let name = get("EnvironmentName");
            let since = p.get("StartTime").map(|s| parse_time(s)).unwrap_or(0);
            let mut evs: Vec<&Event> = st.events.iter().filter(|e| e.env == name && e.at >= since).collect();
            evs.sort_by_key(|e| std::cmp::Reverse(e.at));
            let out: String = evs
                .iter()
                .map(|e| {
                    let member = seeded(
                        example("DescribeEvents")["Events"][1].clone(),
                        serde_json::json!({
                            "EventDate": iso(e.at),
                            "Message": e.message,
                            "ApplicationName": APP,
                            "EnvironmentName": e.env,
                            "Severity": e.severity,
                        }),
                    );
                    format!("<member>{member}</member>")
                })
                .collect();
            ok("DescribeEvents", EB_NS, &format!("<Events>{out}</Events>"))
        }
        "SwapEnvironmentCNAMEs" => {
            let (src, dst) = (get("SourceEnvironmentName"), get("DestinationEnvironmentName"));
            for n in [&src, &dst] {
                match st.envs.get(n) {
                    None => {
                        return no_env(n);
                    }
                    Some(e) if e.status != "Ready" => {
                        return error(400, "InvalidParameterValue", &format!("Environment {n} must be Ready to swap."));
                    }
                    _ => {}
                }
            }
            let polls = st.update_polls;
            st.envs.get_mut(&src).expect("src").swap_with = Some((dst.clone(), polls));
            st.event(&src, "INFO", &format!("swapEnvironmentCNAMEs is starting for '{src}' and '{dst}'."));
            Resp::new(
                200,
                format!("<SwapEnvironmentCNAMEsResponse xmlns=\"{EB_NS}\"><ResponseMetadata><RequestId>sim-req</RequestId></ResponseMetadata></SwapEnvironmentCNAMEsResponse>"),
            )
            .header("Content-Type", "text/xml")
        }
        "DescribeEnvironmentResources" => {
            let name = get("EnvironmentName");
            let instances: Vec<serde_json::Value> =
                st.envs[&name].instances.iter().map(|i| serde_json::json!({"Id": i.id})).collect();
            let resources = seeded(
                example("DescribeEnvironmentResources")["EnvironmentResources"].clone(),
                serde_json::json!({"EnvironmentName": name, "Instances": instances}),
            );
            ok(
                "DescribeEnvironmentResources",
                EB_NS,
                &format!("<EnvironmentResources>{resources}</EnvironmentResources>"),
            )
        }
        "DescribeInstancesHealth" => {
            let name = get("EnvironmentName");
            let page = st.instances_page.max(1);
            let Some(env) = st.envs.get_mut(&name) else {
                return no_env(&name);
            };
            if !env.enhanced {
                return error(
                    400,
                    "InvalidRequestException",
                    &format!("Environment {name} does not have enhanced health reporting enabled."),
                );
            }
            let wanted = members(&p, "AttributeNames");
            let all = wanted.is_empty() || wanted.iter().any(|a| a == "All");
            let start: usize = p.get("NextToken").and_then(|t| t.strip_prefix("page-")?.parse().ok()).unwrap_or(0);
            let base = example("DescribeInstancesHealth")["InstanceHealthList"][0].clone();
            // Under a traffic split EB runs the new version on instances of its own, beside the
            // old ones, until the evaluation ends.
            let mut listed = env.instances.clone();
            if let Some(split) = env.split.as_ref().filter(|s| !s.aborted) {
                let twins: Vec<Instance> = env
                    .instances
                    .iter()
                    .map(|i| Instance {
                        id: format!("{}-new", i.id),
                        label: Some(split.label.clone()),
                        status: "Deployed",
                        health: if split.outcome == Outcome::Red { "Severe" } else { "Ok" },
                        ..i.clone()
                    })
                    .collect();
                listed.extend(twins);
            }
            // Each version's answers since the last report, shared among its instances; the
            // window is the time since then (EB's own is its last 10 seconds).
            let now = safedeploy::clock::now_ms();
            let secs = ((now - env.metrics_at) / 1000).max(1);
            let with_metrics = all || wanted.iter().any(|a| a == "ApplicationMetrics");
            let answered = if with_metrics { std::mem::take(&mut env.answered) } else { Default::default() };
            if with_metrics {
                env.metrics_at = now;
            }
            let metrics_of = |i: &Instance| {
                let peers: Vec<&Instance> = listed.iter().filter(|o| o.label == i.label).collect();
                let none = Answered::default();
                let a = i.label.as_ref().and_then(|l| answered.get(l)).unwrap_or(&none);
                let (n, bad) = (a.requests, a.errors);
                let first = peers.first().is_some_and(|p| p.id == i.id);
                let share =
                    |x: u64| x / peers.len().max(1) as u64 + if first { x % peers.len().max(1) as u64 } else { 0 };
                let (req, fail) = (share(n), share(bad));
                let mut m = base["ApplicationMetrics"].clone();
                m["Duration"] = serde_json::json!(secs);
                m["RequestCount"] = serde_json::json!(req);
                m["StatusCodes"] = serde_json::json!({"Status2xx": req - fail.min(req), "Status3xx": 0, "Status4xx": 0, "Status5xx": fail});
                // The version's latency percentiles, in seconds (every instance of it reports them).
                let mut lat = a.latency.clone();
                lat.sort_by(f64::total_cmp);
                let pct = |q: f64| {
                    lat.get(((lat.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
                };
                m["Latency"] = serde_json::json!({"P999": pct(0.999), "P99": pct(0.99), "P95": pct(0.95), "P90": pct(0.9),
                    "P85": pct(0.85), "P75": pct(0.75), "P50": pct(0.5), "P10": pct(0.1)});
                m
            };
            let list: Vec<String> = listed
                .iter()
                .skip(start)
                .take(page)
                .map(|i| {
                    let mut full = base.clone();
                    let color = match i.health {
                        "Ok" => "Green",
                        "Pending" => "Grey",
                        _ => "Red",
                    };
                    let causes: Vec<String> = match i.health {
                        "Pending" => vec!["Application deployment in progress.".into()],
                        "Severe" => vec!["100.0 % of the requests are failing with HTTP 5xx.".into()],
                        _ => vec![],
                    };
                    let m = full.as_object_mut().expect("object");
                    m.insert("InstanceId".into(), serde_json::json!(i.id));
                    m.insert("HealthStatus".into(), serde_json::json!(i.health));
                    m.insert("Color".into(), serde_json::json!(color));
                    m.insert("Causes".into(), serde_json::json!(causes));
                    m.insert("ApplicationMetrics".into(), metrics_of(i));
                    m.insert(
                        "Deployment".into(),
                        serde_json::json!({
                            "VersionLabel": i.label,
                            "DeploymentId": i.deployment,
                            "Status": i.status,
                            "DeploymentTime": iso(i.at),
                        }),
                    );
                    m.retain(|k, _| k == "InstanceId" || all || wanted.contains(k));
                    format!("<member>{}</member>", xml_of(&full))
                })
                .collect();
            let next = if start + page < listed.len() {
                format!("<NextToken>page-{}</NextToken>", start + page)
            } else {
                String::new()
            };
            ok(
                "DescribeInstancesHealth",
                EB_NS,
                &format!(
                    "<InstanceHealthList>{}</InstanceHealthList><RefreshedAt>{}</RefreshedAt>{next}",
                    list.concat(),
                    iso(safedeploy::clock::now_ms())
                ),
            )
        }
        "RequestEnvironmentInfo" => {
            let (name, kind) = (get("EnvironmentName"), get("InfoType"));
            let instances: Vec<String> = st.envs[&name].instances.iter().map(|i| i.id.clone()).collect();
            for (i, instance) in instances.into_iter().enumerate() {
                let at = st.now();
                // Instances answer one after another.
                st.samples.push(Sample { env: name.clone(), instance, kind: kind.clone(), at, after: 1 + i as u32 });
            }
            Resp::new(
                200,
                format!("<RequestEnvironmentInfoResponse xmlns=\"{EB_NS}\"><ResponseMetadata><RequestId>sim-req</RequestId></ResponseMetadata></RequestEnvironmentInfoResponse>"),
            )
            .header("Content-Type", "text/xml")
        }
        "RetrieveEnvironmentInfo" => {
            let (name, kind) = (get("EnvironmentName"), get("InfoType"));
            let mut out = String::new();
            // A sample from yesterday, which must not be taken for the new one.
            if let Some(first) = st.envs[&name].instances.first() {
                out += &info_xml(base, &name, &first.id, &kind, safedeploy::clock::now_ms() - 86_400_000);
            }
            for s in st.samples.iter_mut().filter(|s| s.env == name && s.kind == kind) {
                if s.after > 0 {
                    s.after -= 1;
                    continue;
                }
                out += &info_xml(base, &s.env, &s.instance, &s.kind, s.at);
            }
            ok("RetrieveEnvironmentInfo", EB_NS, &format!("<EnvironmentInfo>{out}</EnvironmentInfo>"))
        }
        other => error(400, "InvalidAction", &format!("the simulator does not implement {other}")),
    }
}

fn info_xml(base: &str, env: &str, instance: &str, kind: &str, at: i64) -> String {
    let url = format!(
        "{base}/logs/{env}/{instance}/{kind}?X-Amz-Algorithm=AWS4-HMAC-SHA256&amp;X-Amz-Signature={URL_SIGNATURE}{at}"
    );
    format!(
        "<member><InfoType>{kind}</InfoType><Ec2InstanceId>{instance}</Ec2InstanceId>\
         <SampleTimestamp>{}</SampleTimestamp><Message>{url}</Message></member>",
        iso(at)
    )
}

/// What EB's processing checks here: a zip with the app (a Procfile) at its root.
fn valid_bundle(bytes: Option<&Vec<u8>>) -> bool {
    let Some(bytes) = bytes else { return false };
    zip::ZipArchive::new(std::io::Cursor::new(bytes)).is_ok_and(|z| z.file_names().flatten().any(|n| n == "Procfile"))
}

fn s3(st: &mut State, req: &Req, path: &str) -> Resp {
    let rest = path.trim_start_matches('/');
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    st.calls.push(format!("S3 {} {bucket}/{key}", req.method));
    if !st.buckets.iter().any(|b| b == bucket) {
        return Resp::new(404, format!("<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>{bucket}</BucketName></Error>"))
            .header("Content-Type", "application/xml");
    }
    match req.method.as_str() {
        "PUT" => {
            st.objects.insert(format!("{bucket}/{key}"), req.body.clone());
            Resp::new(200, "").header("ETag", "\"sim-etag\"")
        }
        "HEAD" | "GET" => match st.objects.get(&format!("{bucket}/{key}")) {
            Some(b) => Resp::new(200, if req.method == "GET" { b.clone() } else { vec![] }),
            None => Resp::new(404, ""),
        },
        _ => Resp::new(405, ""),
    }
}

fn log_download(st: &mut State, req: &Req, rest: &str) -> Resp {
    if !req.path.contains(URL_SIGNATURE) {
        return Resp::new(403, "<Error><Code>AccessDenied</Code></Error>");
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let (instance, kind) = (parts[1], parts[2]);
    let files = st.logs.get(instance).cloned().unwrap_or_default();
    if kind == "tail" {
        let text: String = files
            .iter()
            .map(|(path, text)| {
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "-------------------------------------\n{path}\n-------------------------------------\n{}\n",
                    lines[lines.len().saturating_sub(100)..].join("\n")
                )
            })
            .collect();
        return Resp::new(200, text);
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        for (path, text) in &files {
            z.start_file(path.trim_start_matches('/'), zip::write::SimpleFileOptions::default()).expect("zip");
            z.write_all(text.as_bytes()).expect("zip");
        }
        z.finish().expect("zip");
    }
    Resp::new(200, buf.into_inner())
}

/// What a version's site answered since enhanced health last reported it.
#[derive(Debug, Clone, Default)]
struct Answered {
    requests: u64,
    errors: u64,
    /// Each answer's latency, in seconds.
    latency: Vec<f64>,
}

/// The environment's "site": `/version` is the label it runs, anything else 200 when Green and
/// 500 otherwise. Found by CNAME or its prefix (what users reach) or by environment name.
fn site(st: &mut State, rest: &str) -> Resp {
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let name = st
        .envs
        .values()
        .find(|e| e.cname == host || e.cname.starts_with(&format!("{host}.")))
        .or_else(|| st.envs.get(host))
        .map(|e| e.name.clone());
    let Some(name) = name else { return Resp::new(404, "no such site") };
    let fails = st.site_fails.clone();
    let path_fails = st.path_fails.clone();
    let slow = st.slow.clone();
    let env = st.envs.get_mut(&name).expect("env");
    env.served += 1;
    // Under a split, every hundred requests: `percent` to the new version, the rest to the old.
    // Otherwise the load balancer takes the instances in service in turn: during a rolling
    // update some run the old version and some the new.
    let in_service: Vec<&Instance> = env.instances.iter().filter(|i| i.status != "In Progress").collect();
    let instance = (!in_service.is_empty()).then(|| in_service[(env.served as usize) % in_service.len()]);
    let label = match &env.split {
        Some(s) if !s.aborted && env.served % 100 < s.percent => Some(s.label.clone()),
        Some(_) => env.label.clone(),
        None => match instance {
            Some(i) => i.label.clone(),
            None => return Resp::new(503, "Service Unavailable: no instance in service"),
        },
    };
    if path == "/version" {
        return Resp::new(200, label.unwrap_or_default());
    }
    let new_and_red = env.split.as_ref().is_some_and(|s| Some(&s.label) == label.as_ref() && s.outcome == Outcome::Red);
    let severe = env.split.is_none() && instance.is_some_and(|i| i.health == "Severe");
    let failed =
        label.as_ref().is_some_and(|l| fails.contains(l) || path_fails.contains(&(l.clone(), path.to_string())))
            || new_and_red
            || severe
            || (env.health == "Red" && env.split.is_none());
    // Enhanced health's application metrics count it against the version that answered.
    if let Some(l) = &label {
        let c = env.answered.entry(l.clone()).or_default();
        c.requests += 1;
        c.errors += u64::from(failed);
        c.latency.push(0.010 + (env.served % 10) as f64 * 0.002 + slow.get(l).copied().unwrap_or(0.0));
    }
    if failed { Resp::new(500, "Internal Server Error") } else { Resp::new(200, format!("ok from {}", env.name)) }
}

impl Drop for Sim {
    /// Whatever a test did, every answer the simulator gave it matches AWS's model.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let answers = std::mem::take(&mut self.state.lock().expect("sim").answers);
        if answers.is_empty() {
            return;
        }
        if let Err(said) = Sim::check_model(&answers) {
            panic!("the simulator departed from botocore's model of Elastic Beanstalk:\n{said}");
        }
    }
}
