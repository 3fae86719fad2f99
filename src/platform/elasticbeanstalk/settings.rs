//! `[platform.elasticbeanstalk]` and `[environments.NAME.elasticbeanstalk]`: the EB
//! application, how the platform talks to it, and the EB environment(s) behind each
//! environment — with their rules.

use crate::config::locate::{Locator, Seg};
use crate::config::values::{Count, Dur, Text};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The Elastic Beanstalk application and how the platform talks to it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbPlatform {
    /// The EB application whose versions and environments the tools drive (required).
    pub application: String,
    /// `--region` for every aws command; default: the aws CLI's own (AWS_REGION, profile).
    pub region: Option<Text>,
    /// `--profile` for every aws command; default: the aws CLI's own.
    pub profile: Option<Text>,
    /// The aws CLI as argv (v1 or v2).
    pub aws: crate::config::values::Argv,
    /// Where bundles are uploaded; default `elasticbeanstalk-<region>-<account>`, the bucket EB
    /// itself creates.
    pub bucket: Option<Text>,
    /// Key prefix of the bundles in the bucket; default: the application's name.
    pub key_prefix: Option<Text>,
    /// Health values that count as healthy after a deploy.
    pub accepted_health: Vec<Health>,
    /// First pause between polls of a deploy; grows by half each time up to `poll_max`.
    pub poll: Dur<100, 300_000>,
    pub poll_max: Dur<100, 1_800_000>,
    /// How long a deploy (or a CNAME swap) may take before the tool gives up waiting (exit 3).
    pub deploy_timeout: Dur<1_000, 21_600_000>,
    /// Once the environment is Ready on the new version, how long its health may take to reach
    /// an accepted value (Red fails at once).
    pub health_grace: Dur<0, 3_600_000>,
    /// Throttled or transient aws calls are retried this many times, backing off from
    /// `retry_backoff`.
    pub retries: Count<0, 20>,
    pub retry_backoff: Dur<10, 300_000>,
    /// What collect-logs asks EB for.
    pub logs: LogKind,
    /// How long to wait for the instances' logs after requesting them.
    pub logs_timeout: Dur<1_000, 3_600_000>,
}

impl Default for EbPlatform {
    fn default() -> Self {
        EbPlatform {
            application: String::new(),
            region: None,
            profile: None,
            aws: crate::config::values::Argv(vec!["aws".into()]),
            bucket: None,
            key_prefix: None,
            accepted_health: vec![Health::Green],
            poll: Dur::secs(10),
            poll_max: Dur::secs(30),
            deploy_timeout: Dur::secs(30 * 60),
            health_grace: Dur::secs(120),
            retries: Count(5),
            retry_backoff: Dur::secs(2),
            logs: LogKind::Bundle,
            logs_timeout: Dur::secs(180),
        }
    }
}

/// An environment's health as EB reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Health {
    Green,
    Yellow,
    Grey,
    Red,
}

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        [Health::Green, Health::Yellow, Health::Grey, Health::Red].into_iter().find(|h| h.as_str() == s).ok_or_else(
            || serde::de::Error::custom(format!("expected values among Green, Yellow, Grey, Red, got {s:?}")),
        )
    }
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Green => "Green",
            Health::Yellow => "Yellow",
            Health::Grey => "Grey",
            Health::Red => "Red",
        }
    }
}

/// What collect-logs asks the instances for: all their log files, or the last lines of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    Bundle,
    Tail,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Bundle => "bundle",
            LogKind::Tail => "tail",
        }
    }
}

/// `[environments.X.elasticbeanstalk]`: the EB environment(s) behind a named environment.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EbEnvironment {
    /// The EB environment deployed by redeploying a label.
    pub environment: String,
    /// Blue/green: the second EB environment. A deploy goes to whichever of the two does not
    /// own `cname`, then the CNAMEs are swapped; a rollback swaps back.
    pub standby: Option<String>,
    /// Blue/green: the CNAME users reach (e.g. `urlshort-prod.us-east-1.elasticbeanstalk.com`,
    /// or its first label); the environment owning it is the live one.
    pub cname: Option<Text>,
    /// Blue/green: where promote checks the candidate on the standby before the swap;
    /// `{cname}` is the standby's own CNAME. Default `http://{cname}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<Text>,
}

/// The Elastic Beanstalk platform's rules.
/// Elastic Beanstalk's rules: its platform table, and each environment's (name, its table).
pub fn validate(eb: Option<&EbPlatform>, envs: &[(&str, Option<&EbEnvironment>)], at: &Locator) -> Result<()> {
    use Seg::Key;
    let eb_field = |f: &'static str| [Key("platform"), Key("elasticbeanstalk"), Key(f)];
    let Some(eb) = eb else {
        return Err(at.bad(
            &[Key("platform"), Key("elasticbeanstalk")],
            "kind = \"elasticbeanstalk\" needs a [platform.elasticbeanstalk] table with application = NAME",
        ));
    };
    if eb.application.trim().is_empty() || eb.application.len() > 100 {
        return Err(at.bad(&eb_field("application"), "expected the EB application's name (1 to 100 characters)"));
    }
    if eb.accepted_health.is_empty() {
        return Err(at.bad(&eb_field("accepted_health"), "expected at least one of Green, Yellow, Grey, Red"));
    }
    if eb.poll_max.0 < eb.poll.0 {
        return Err(at.bad(&eb_field("poll_max"), "expected poll_max >= poll"));
    }
    let eb_name = |s: &str| s.len() >= 4 && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    for &(name, env) in envs {
        let field = |f: &'static str| [Key("environments"), Key(name), Key("elasticbeanstalk"), Key(f)];
        let Some(e) = env else {
            return Err(at.bad(
                &[Key("environments"), Key(name), Key("elasticbeanstalk")],
                "expected a table with environment = EB_ENVIRONMENT_NAME",
            ));
        };
        for (k, v) in [("environment", Some(&e.environment)), ("standby", e.standby.as_ref())] {
            if let Some(v) = v
                && !eb_name(v)
            {
                return Err(
                    at.bad(&field(k), format!("expected an EB environment name (4-40 of A-Z a-z 0-9 -), got {v:?}"))
                );
            }
        }
        match (&e.standby, &e.cname) {
            (Some(s), _) if *s == e.environment => {
                return Err(at.bad(&field("standby"), "expected a different environment than `environment`"));
            }
            (Some(_), None) => {
                return Err(at.bad(&field("cname"), "blue/green (standby) needs the CNAME users reach"));
            }
            (None, Some(_)) => {
                return Err(at.bad(&field("cname"), "a CNAME only means something with a standby"));
            }
            _ => {}
        }
        if let Some(url) = &e.preview_url {
            if e.standby.is_none() {
                return Err(at.bad(&field("preview_url"), "a preview URL only means something with a standby"));
            }
            // Checked with a stand-in CNAME, as promote fills it in.
            let filled = url.replace("{cname}", "standby.example.elasticbeanstalk.com");
            let ok = reqwest::Url::parse(&filled).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(at.bad(
                    &field("preview_url"),
                    format!(
                        "expected an http(s) URL, `{{cname}}` standing for the standby's CNAME; got {:?}",
                        url.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}
