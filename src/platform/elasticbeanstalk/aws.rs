//! The aws CLI as the Elastic Beanstalk platform calls it: every argv is built here
//! (`--output json`, the configured region and profile), run through `exec` (so a dry run
//! prints the exact command), its JSON parsed, throttling and transient failures retried with
//! backoff, and a failure reported with the CLI's own stderr. Credentials reach the CLI only
//! through its environment and files; no argv carries one.

use super::settings::EbPlatform;
use crate::clock::human;
use crate::effects::Effects;
use crate::exec::Cmd;
use anyhow::Result;
use serde_json::Value;
use std::time::Duration;

pub struct Aws<'a> {
    fx: &'a Effects,
    cfg: &'a EbPlatform,
}

/// A failed aws command: the operation, the AWS error code when the CLI names one, and what the
/// CLI said.
#[derive(Debug, thiserror::Error)]
#[error("aws {op} failed ({status}): {message}")]
pub struct AwsError {
    pub op: String,
    pub status: String,
    pub code: Option<String>,
    pub message: String,
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];
const TRANSIENT_CODES: &[&str] =
    &["InternalFailure", "InternalError", "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout"];
const TRANSIENT_TEXT: &[&str] =
    &["Could not connect to the endpoint URL", "Connection was closed", "Read timeout on endpoint", "Connect timeout"];

impl AwsError {
    fn parse(op: &str, status: String, stderr: &str) -> Self {
        static CODE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re =
            CODE.get_or_init(|| regex::Regex::new(r"An error occurred \(([A-Za-z0-9.]+)\)").expect("static regex"));
        let code = re.captures(stderr).map(|c| c[1].to_string());
        let message = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        let message = if message.is_empty() { "no message on stderr".into() } else { message };
        AwsError { op: op.to_string(), status, code, message }
    }

    /// The request was refused before it did anything: always safe to send again.
    pub fn throttled(&self) -> bool {
        self.code.as_deref().is_some_and(|c| THROTTLING.contains(&c)) || self.message.contains("Rate exceeded")
    }

    /// A failure that may pass; a read is retried, a change is not (it may have happened).
    pub fn transient(&self) -> bool {
        self.code.as_deref().is_some_and(|c| TRANSIENT_CODES.contains(&c))
            || TRANSIENT_TEXT.iter().any(|t| self.message.contains(t))
    }
}

impl<'a> Aws<'a> {
    pub fn new(fx: &'a Effects, cfg: &'a EbPlatform) -> Self {
        Aws { fx, cfg }
    }

    /// `aws --output json [--region R] [--profile P] SERVICE OP ARGS...`
    pub fn cmd(&self, service: &str, op: &str, args: &[&str]) -> Cmd {
        let mut argv: Vec<String> = self.cfg.aws.0.clone();
        argv.extend(["--output".into(), "json".into()]);
        if let Some(r) = &self.cfg.region {
            argv.extend(["--region".into(), r.to_string()]);
        }
        if let Some(p) = &self.cfg.profile {
            argv.extend(["--profile".into(), p.to_string()]);
        }
        argv.extend([service.to_string(), op.to_string()]);
        argv.extend(args.iter().map(|a| a.to_string()));
        Cmd::new(argv)
    }

    /// A read (`describe-*`, `retrieve-*`): also runs in a dry run; throttling and transient
    /// failures are retried.
    pub fn read(&self, service: &str, op: &str, args: &[&str]) -> Result<Value> {
        Ok(self.call(service, op, args, false)?.unwrap_or(Value::Null))
    }

    /// A change: printed and not run in a dry run (`None`); only throttling is retried.
    pub fn change(&self, service: &str, op: &str, args: &[&str]) -> Result<Option<Value>> {
        self.call(service, op, args, true)
    }

    fn call(&self, service: &str, op: &str, args: &[&str], changes: bool) -> Result<Option<Value>> {
        let cmd = self.cmd(service, op, args);
        let name = format!("{service} {op}");
        let mut attempt = 0;
        loop {
            let Some(out) = self.fx.exec.capture(&cmd, changes)? else {
                return Ok(None);
            };
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout);
                if text.trim().is_empty() {
                    return Ok(Some(Value::Null));
                }
                return serde_json::from_str(&text).map(Some).map_err(|e| {
                    crate::could_not_act!("aws {name}: the output is not JSON ({e}); is `aws` the AWS CLI?")
                });
            }
            let err = AwsError::parse(&name, crate::exec::describe(&out.status), &String::from_utf8_lossy(&out.stderr));
            let retry = err.throttled() || (!changes && err.transient());
            if !retry || u64::from(attempt) >= self.cfg.retries.0 {
                return Err(err.into());
            }
            let pause = self.backoff(attempt);
            self.fx.ui.warn(format!(
                "aws {name}: {} — retry {}/{} in {}",
                err.code.as_deref().unwrap_or("transient failure"),
                attempt + 1,
                self.cfg.retries.0,
                human(pause.as_millis() as i64)
            ));
            self.fx.nap(pause, || format!("interrupted while waiting to retry aws {name}"))?;
            attempt += 1;
        }
    }

    /// Exponential backoff from `retry_backoff`, capped at 30 s, with up to a quarter of jitter
    /// so parallel jobs do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.retry_backoff.0.saturating_mul(1 << attempt.min(10)).min(Duration::from_secs(30));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos());
        let jitter = base.mul_f64((nanos.unwrap_or(0) % 1000) as f64 / 4000.0);
        base + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cli_error() {
        let e = AwsError::parse(
            "elasticbeanstalk update-environment",
            "exit status 254".into(),
            "\nAn error occurred (Throttling) when calling the UpdateEnvironment operation (reached max retries: 0): Rate exceeded\n",
        );
        assert_eq!(e.code.as_deref(), Some("Throttling"));
        assert!(e.throttled() && !e.transient());
        let e =
            AwsError::parse("s3 cp", "exit status 1".into(), "Could not connect to the endpoint URL: \"http://x/\"");
        assert!(e.code.is_none() && e.transient() && !e.throttled());
        let e = AwsError::parse("x", "exit status 254".into(), "An error occurred (InvalidParameterValue) when ...");
        assert!(!e.throttled() && !e.transient());
    }
}
