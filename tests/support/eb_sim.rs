//! A simulated AWS Elastic Beanstalk + S3 + STS on 127.0.0.1, for the real aws CLI to talk to
//! (through `AWS_ENDPOINT_URL_ELASTIC_BEANSTALK` / `_S3` / `_STS`). It speaks the AWS Query
//! protocol (form-encoded POST, XML answers and errors) for the operations the platform uses,
//! S3's REST PUT/HEAD for uploads, and serves the presigned log URLs and each environment's
//! site (`/site/<cname or name>/...`) so smoke-check has something to check.
//!
//! Environments are state machines advanced by each `DescribeEnvironments` that names them:
//! an update is `Updating` for a few polls, then ends as its label's scripted [`Outcome`]. A
//! CNAME swap completes after a few polls. `throttle` refuses the next N calls.
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
}

#[derive(Debug, Clone)]
pub struct Env {
    pub name: String,
    pub cname: String,
    pub label: Option<String>,
    pub status: String,
    pub health: String,
    pub instances: Vec<String>,
    pending: Option<(String, u32, Outcome)>,
    swap_with: Option<(String, u32)>,
    /// A traffic-splitting deployment under evaluation.
    pub split: Option<Split>,
    /// Requests its site answered (a split sends every 100th `percent` of them to the new one).
    served: u64,
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
    /// Polls a traffic split is evaluated for.
    pub split_polls: u32,
    /// Every Query answer sent: (action, status, body).
    pub answers: Vec<(String, u16, String)>,
    /// Log files each instance holds: instance → [(path in the bundle, text)].
    pub logs: HashMap<String, Vec<(String, String)>>,
    clock: i64,
}

impl State {
    fn now(&mut self) -> i64 {
        // Strictly increasing milliseconds, so events order.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
        self.clock = t.max(self.clock + 1);
        self.clock
    }
    fn event(&mut self, env: &str, severity: &str, message: &str) {
        let at = self.now();
        self.events.push(Event { at, env: env.into(), severity: severity.into(), message: message.into() });
    }

    pub fn add_env(&mut self, name: &str, cname: &str, label: Option<&str>, instances: &[&str]) {
        self.envs.insert(
            name.into(),
            Env {
                name: name.into(),
                cname: format!("{cname}.{REGION}.elasticbeanstalk.com"),
                label: label.map(Into::into),
                status: "Ready".into(),
                health: "Green".into(),
                instances: instances.iter().map(|s| s.to_string()).collect(),
                pending: None,
                swap_with: None,
                split: None,
                served: 0,
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
        if let Some((target, polls, outcome)) = env.pending.clone() {
            if polls > 1 || outcome == Outcome::Stuck {
                env.pending = Some((target, polls.saturating_sub(1), outcome));
                return;
            }
            env.pending = None;
            env.status = "Ready".into();
            env.health = "Green".into();
            match outcome {
                Outcome::Healthy | Outcome::ErrorEvent | Outcome::Red => env.label = Some(target.clone()),
                Outcome::OldLabel | Outcome::Stuck => {}
            }
            if outcome == Outcome::Red {
                env.health = "Red".into();
            }
            let n = name.to_string();
            match outcome {
                Outcome::Healthy => {
                    self.event(&n, "INFO", "New application version was deployed to running EC2 instances.");
                    self.event(&n, "INFO", "Environment update completed successfully.");
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
                Outcome::Stuck => {}
            }
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

fn error(status: u16, code: &str, message: &str) -> Resp {
    let body = format!(
        "<ErrorResponse xmlns=\"{EB_NS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{}</Message></Error><RequestId>sim-req</RequestId></ErrorResponse>",
        esc(message)
    );
    Resp::new(status, body).header("Content-Type", "text/xml")
}

fn env_xml(e: &Env) -> String {
    format!(
        "<EnvironmentName>{}</EnvironmentName><EnvironmentId>e-{}</EnvironmentId><ApplicationName>{APP}</ApplicationName>\
         {}<SolutionStackName>64bit Amazon Linux 2023 running Python 3.11</SolutionStackName>\
         <Status>{}</Status><Health>{}</Health><CNAME>{}</CNAME><DateUpdated>{}</DateUpdated>",
        e.name,
        e.name.len(),
        e.label.as_ref().map(|l| format!("<VersionLabel>{l}</VersionLabel>")).unwrap_or_default(),
        e.status,
        e.health,
        e.cname,
        iso(safedeploy::clock::now_ms())
    )
}

fn version_xml(label: &str, v: &AppVersion) -> String {
    format!(
        "<member><ApplicationName>{APP}</ApplicationName><VersionLabel>{label}</VersionLabel>\
         <SourceBundle><S3Bucket>{}</S3Bucket><S3Key>{}</S3Key></SourceBundle><Status>{}</Status></member>",
        esc(&v.bucket),
        esc(&v.key),
        v.status
    )
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
                out += &format!("<member>{}</member>", env_xml(&st.envs[n]));
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
                return error(
                    400,
                    "InvalidParameterValue",
                    &format!("No Environment found for EnvironmentName = '{name}'."),
                );
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
            } else {
                env.health = "Grey".into();
                env.pending = Some((label, polls, outcome));
            }
            let xml = env_xml(env);
            let at = st.now();
            st.events.push(Event {
                at,
                env: name.clone(),
                severity: "INFO".into(),
                message: "Environment update is starting.".into(),
            });
            // DateUpdated is when the update began: the time its events start at.
            let xml = xml.replace(
                &xml[xml.find("<DateUpdated>").expect("date")..],
                &format!("<DateUpdated>{}</DateUpdated>", iso(at)),
            );
            ok("UpdateEnvironment", EB_NS, &xml)
        }
        "AbortEnvironmentUpdate" => {
            let name = get("EnvironmentName");
            let Some(env) = st.envs.get_mut(&name) else {
                return error(
                    400,
                    "InvalidParameterValue",
                    &format!("No Environment found for EnvironmentName = '{name}'."),
                );
            };
            if env.status != "Updating" {
                return error(400, "InvalidParameterValue", &format!("Environment named {name} is not being updated."));
            }
            match env.split.as_mut() {
                Some(s) => s.aborted = true,
                None => env.pending = env.pending.take().map(|(l, _, _)| (l, 1, Outcome::OldLabel)),
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
                    format!(
                        "<member><EventDate>{}</EventDate><Message>{}</Message><ApplicationName>{APP}</ApplicationName>\
                         <EnvironmentName>{}</EnvironmentName><Severity>{}</Severity></member>",
                        iso(e.at),
                        esc(&e.message),
                        e.env,
                        e.severity
                    )
                })
                .collect();
            ok("DescribeEvents", EB_NS, &format!("<Events>{out}</Events>"))
        }
        "SwapEnvironmentCNAMEs" => {
            let (src, dst) = (get("SourceEnvironmentName"), get("DestinationEnvironmentName"));
            for n in [&src, &dst] {
                match st.envs.get(n) {
                    None => {
                        return error(
                            400,
                            "InvalidParameterValue",
                            &format!("No Environment found for EnvironmentName = '{n}'."),
                        );
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
            let instances: String =
                st.envs[&name].instances.iter().map(|i| format!("<member><Id>{i}</Id></member>")).collect();
            ok(
                "DescribeEnvironmentResources",
                EB_NS,
                &format!(
                    "<EnvironmentResources><EnvironmentName>{name}</EnvironmentName><Instances>{instances}</Instances></EnvironmentResources>"
                ),
            )
        }
        "RequestEnvironmentInfo" => {
            let (name, kind) = (get("EnvironmentName"), get("InfoType"));
            let instances = st.envs[&name].instances.clone();
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
                out += &info_xml(base, &name, first, &kind, safedeploy::clock::now_ms() - 86_400_000);
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
    let env = st.envs.get_mut(&name).expect("env");
    env.served += 1;
    // Under a split, every hundred requests: `percent` to the new version, the rest to the old.
    let label = match &env.split {
        Some(s) if !s.aborted && env.served % 100 < s.percent => Some(s.label.clone()),
        _ => env.label.clone(),
    };
    if path == "/version" {
        return Resp::new(200, label.unwrap_or_default());
    }
    let new_and_red = env.split.as_ref().is_some_and(|s| Some(&s.label) == label.as_ref() && s.outcome == Outcome::Red);
    if label.as_ref().is_some_and(|l| fails.contains(l)) || new_and_red {
        return Resp::new(500, "Internal Server Error");
    }
    if env.health == "Green" || env.split.is_some() {
        Resp::new(200, format!("ok from {}", env.name))
    } else {
        Resp::new(500, "Internal Server Error")
    }
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
