//! `[build]` and `[deploy]`: how the local platform builds a version once and runs it, and the
//! rules its environments follow (plain http on this machine, one port each).

use crate::config::locate::{Locator, Seg};
use crate::config::values::{Dur, HttpUrl, Text, UrlPath};
use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// How a version is built once, when it is registered.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Build {
    /// A shell line run in the unpacked version's directory.
    pub command: Option<Text>,
    /// Directories (relative to the version, or absolute) put first on the app's PATH.
    pub path: Vec<Text>,
    pub timeout: Dur<1_000, 86_400_000>,
}

impl Default for Build {
    fn default() -> Self {
        Build { command: None, path: vec![], timeout: Dur::secs(600) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deploy {
    pub health_path: UrlPath,
    /// How long a new version has to answer its health path with a 2xx.
    pub health_timeout: Dur<1_000, 3_600_000>,
    /// How long a stopped version gets between SIGTERM and SIGKILL.
    pub stop_grace: Dur<0, 600_000>,
    /// The web command; default: the version's `Procfile` `web:` line.
    pub command: Option<Text>,
    /// The release command, run once per environment before a version's candidate starts (its
    /// schema migrations); default: the version's `Procfile` `release:` line.
    pub release: Option<Text>,
    /// Time limit of the release command.
    pub release_timeout: Dur<1_000, 86_400_000>,
    /// The reverse proxy that owns each environment's port.
    pub proxy: Proxy,
    /// The system directories on the app's PATH, after `build.path`: the app runs on what its
    /// build installed and on these, never on the deploying shell's PATH.
    pub system_path: Vec<Text>,
    /// After a switch, the previous version keeps running without traffic this long (behind
    /// the proxy), so a rollback within it is a proxy switch; 0 stops it at once.
    pub keep_previous: Dur<0, 86_400_000>,
    /// Under `promote --canary`: the pause between two rounds of checks of the candidate.
    pub canary_interval: Dur<100, 600_000>,
    /// Under `promote --canary`: how many percentage points the candidate's 5xx share of its
    /// answers to users may exceed the stable version's before a round fails.
    pub canary_error_margin: crate::config::values::Percent,
    /// Under `promote --canary`, locally: what a bake that ends with too few user requests to
    /// rule out a lift of the margin does (`pass`, said; `fail`, a verdict; `extend`, bake on
    /// until there are enough or `canary_max_bake`, then could not act).
    pub canary_not_enough: NotEnough,
    /// The longest a canary's bake is extended to (`canary_not_enough = "extend"`).
    pub canary_max_bake: Dur<1_000, 86_400_000>,
    /// Under `promote --canary`, locally: how much slower (median or p95) than the stable
    /// version the candidate may answer users before it fails, when the ranks say it is
    /// slower too; 0 turns the latency rule off.
    pub canary_latency_margin: Dur<0, 600_000>,
}

/// What a canary does when its bake ends on too few user requests to judge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotEnough {
    /// Passes, saying that the requests were too few to rule a lift out.
    #[default]
    Pass,
    /// Fails: the version is not promoted without the evidence (a verdict).
    Fail,
    /// Bakes on until there are enough requests or `canary_max_bake`; then "could not act"
    /// (exit 3, the candidate stopped and not marked bad).
    Extend,
}

impl Deploy {
    /// The rules of `[deploy]` that hold on every platform (the canary's judge is shared).
    pub fn validate(&self, at: &Locator) -> Result<()> {
        if self.canary_error_margin.0 >= 100.0 {
            return Err(at.bad(
                &[Seg::Key("deploy"), Seg::Key("canary_error_margin")],
                "100 points would let a candidate fail every request, so the canary could never fail on errors; expected less than 100",
            ));
        }
        Ok(())
    }
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            health_path: UrlPath("/health".into()),
            health_timeout: Dur::secs(60),
            stop_grace: Dur::secs(10),
            command: None,
            release: None,
            release_timeout: Dur::secs(600),
            proxy: Proxy::Nginx("nginx".into()),
            system_path: ["/usr/local/bin", "/usr/bin", "/bin"].map(|d| Text(d.into())).to_vec(),
            // Covers the pipeline's production smoke check and a bake, and a Datadog monitor's
            // usual 5-minute evaluation window plus its notification; costs one idle process
            // group of the previous version for that long.
            keep_previous: Dur::secs(600),
            // A round every second: an abort is at most a second behind what the checks can
            // see; each round is one pass of the smoke chains.
            canary_interval: Dur::secs(1),
            // One point: a candidate failing 1 request in 100 more than the stable version is
            // not the stable version's equal; fewer is noise at a canary's request counts.
            canary_error_margin: crate::config::values::Percent(1.0),
            // Today's pass, said aloud; a team with the traffic for it chooses `extend` or `fail`.
            canary_not_enough: NotEnough::Pass,
            canary_max_bake: Dur::secs(900),
            // A tenth of a second: felt by users, and well above a cold worker's first answers.
            canary_latency_margin: Dur::ms(100),
        }
    }
}

/// `deploy.proxy`: nginx (a name looked up on PATH, or a path) owns each environment's port, so
/// a new version takes traffic only once healthy and the old one drains; or `"none"`: stop the
/// old version, then start the new one on the port (requests are dropped meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    Nginx(String),
    None,
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim() {
            "none" => Ok(Proxy::None),
            "" => Err(serde::de::Error::custom("expected \"nginx\", a path to nginx, or \"none\"; got \"\"")),
            p => Ok(Proxy::Nginx(p.to_string())),
        }
    }
}

impl Serialize for Proxy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Proxy::Nginx(p) => p,
            Proxy::None => "none",
        })
    }
}

/// The local platform's rules: each environment is plain http on this machine, on a port of
/// its own, and a build path cannot split the app's PATH.
/// The local platform's rules: `urls` are the environments' (name, URL); `build` and `deploy`
/// their sections.
pub fn validate(urls: &[(&str, &HttpUrl)], build: &Build, deploy: &Deploy, at: &Locator) -> Result<()> {
    use Seg::Key;
    let mut ports: BTreeMap<u16, &str> = BTreeMap::new();
    for &(name, url) in urls {
        let url = &url.0;
        let field = [Key("environments"), Key(name), Key("url")];
        let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
        if url.scheme() != "http" || !local {
            return Err(at.bad(&field,
                format!("the local platform serves plain http on this machine; expected http://127.0.0.1:PORT or http://localhost:PORT, got {:?}", url.as_str()),
            ));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        if let Some(other) = ports.insert(port, name) {
            return Err(at.bad(&field, format!("port {port} is also {other}'s; expected a port of its own")));
        }
    }
    for (i, p) in build.path.iter().enumerate() {
        if p.contains(':') {
            return Err(at.bad(
                &[Key("build"), Key("path"), Seg::Index(i)],
                format!("{:?} has a ':', which would split the app's PATH", p.as_str()),
            ));
        }
    }
    for (i, p) in deploy.system_path.iter().enumerate() {
        let field = [Key("deploy"), Key("system_path"), Seg::Index(i)];
        if p.contains(':') || !p.starts_with('/') {
            return Err(at.bad(
                &field,
                format!("expected an absolute directory without ':' (it goes on the app's PATH), got {:?}", p.as_str()),
            ));
        }
    }
    Ok(())
}
