//! The process environment, read once at start into one value: Jenkins' variables (who acts,
//! the base of the change, the build's URL), the AWS region, the secrets named by the config,
//! PATH, and the whole set an app inherits. No other module reads `std::env`, so a test can
//! hand the tools an environment, and every variable the tools read is in this file.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Environ {
    vars: BTreeMap<String, String>,
}

impl Environ {
    /// This process's environment.
    pub fn from_process() -> Self {
        Environ {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment of exactly these variables (tests).
    pub fn of<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Environ { vars: vars.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// A variable's value; an empty one counts as unset (Jenkins passes unset parameters so).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Every variable, for a child that inherits them (the caller filters).
    pub fn vars(&self) -> impl Iterator<Item = (&String, &String)> {
        self.vars.iter()
    }

    pub fn path(&self) -> &str {
        self.get("PATH").unwrap_or_default()
    }

    /// Who is acting: the Jenkins build when there is one, else user@host.
    pub fn actor(&self) -> String {
        if let (Some(job), Some(num)) = (self.get("JOB_NAME"), self.get("BUILD_NUMBER")) {
            return format!("jenkins:{job}#{num}");
        }
        let user = self.get("USER").unwrap_or("unknown");
        let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
        format!("{user}@{host}")
    }

    /// `SAFEDEPLOY_STATE_DIR`, when `--state-dir` is not given (empty: unset).
    pub fn state_dir(&self) -> Option<std::path::PathBuf> {
        self.get("SAFEDEPLOY_STATE_DIR").map(std::path::PathBuf::from)
    }

    /// The per-user base of state files (the XDG Base Directory rule): `$XDG_STATE_HOME` when
    /// absolute, else `$HOME/.local/state`, else the account's home from the password database
    /// (a Jenkins agent started without `HOME`). `None` only when none of these is known.
    pub fn user_state_home(&self) -> Option<std::path::PathBuf> {
        use std::path::{Path, PathBuf};
        if let Some(x) = self.get("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
            return Some(PathBuf::from(x));
        }
        let home = match self.get("HOME").filter(|h| Path::new(h).is_absolute()) {
            Some(h) => PathBuf::from(h),
            None => nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten()?.dir,
        };
        Some(home.join(".local/state"))
    }

    /// The Jenkins build's page, for links in notifications.
    pub fn build_url(&self) -> Option<&str> {
        self.get("BUILD_URL")
    }
}
