//! Secret masking: every line that leaves the process (console, reports, dry-run plans) passes
//! through [`Redactor::redact`].
//!
//! Two sources: the values of secret-looking environment variables (`*_KEY`, `*_TOKEN`,
//! `*SECRET*`, `*PASSWORD*`, `*WEBHOOK*`), masked wherever they appear, and patterns for the
//! well-known credential shapes (AWS key ids, Slack webhooks and tokens, bearer/basic
//! credentials, passwords in URLs).

use regex::Regex;
use std::sync::OnceLock;

pub const MASK: &str = "****";

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

fn patterns() -> &'static [(Regex, &'static str)] {
    static P: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    P.get_or_init(|| {
        let p = |re: &str, rep: &'static str| (Regex::new(re).expect("static regex"), rep);
        vec![
            p(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", MASK),
            p(r"(?i)(aws_secret_access_key\s*[=:]\s*)\S+", "${1}****"),
            p(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+", "https://hooks.slack.com/services/****"),
            p(r"\bxox[abprs]-[A-Za-z0-9-]{10,}", MASK),
            p(r"\bgh[pousr]_[A-Za-z0-9]{20,}", MASK),
            p(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", "${1} ****"),
            p(r"(?i)(dd-api-key|dd-application-key)(\s*[:=]\s*)\S+", "${1}${2}****"),
            p(r"([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", "${1}****@"),
            // Presigned URLs (EB log downloads): the signature and any session token.
            p(
                r"(?i)([?&](?:X-Amz-Signature|X-Amz-Security-Token|X-Amz-Credential|Signature|AWSAccessKeyId)=)[^&\s]+",
                "${1}****",
            ),
            p(
                r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
                "-----BEGIN PRIVATE KEY----- **** -----END PRIVATE KEY-----",
            ),
        ]
    })
}

/// Whether an environment variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["_KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "WEBHOOK", "CREDENTIAL"].iter().any(|s| n.contains(s))
        || n.ends_with("KEY")
}

impl Redactor {
    /// A redactor that knows the secret values in this process's environment.
    pub fn from_env() -> Self {
        let values = std::env::vars().filter(|(k, v)| is_secret_name(k) && v.len() >= 6).map(|(_, v)| v).collect();
        Redactor { values }
    }

    pub fn add_value(&mut self, value: impl Into<String>) {
        let v = value.into();
        if v.len() >= 6 {
            self.values.push(v);
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        for (re, rep) in patterns() {
            if re.is_match(&out) {
                out = re.replace_all(&out, *rep).into_owned();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_patterns_and_known_values() {
        let mut r = Redactor::default();
        r.add_value("s3cr3t-value");
        let line = "key AKIAABCDEFGHIJKLMNOP url https://user:pw123@host/x token s3cr3t-value \
                    hook https://hooks.slack.com/services/T0/B0/abc Authorization: Bearer abcdefghijkl";
        let out = r.redact(line);
        assert!(!out.contains("AKIAABCDEFGHIJKLMNOP"), "{out}");
        assert!(!out.contains("pw123"), "{out}");
        assert!(!out.contains("s3cr3t-value"), "{out}");
        assert!(!out.contains("T0/B0/abc"), "{out}");
        assert!(!out.contains("abcdefghijkl"), "{out}");
        assert!(out.contains("https://user:****@host/x"), "{out}");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("DD_API_KEY"));
        assert!(is_secret_name("SLACK_WEBHOOK_URL"));
        assert!(is_secret_name("AWS_SECRET_ACCESS_KEY"));
        assert!(!is_secret_name("PATH"));
        assert!(!is_secret_name("SAFEDEPLOY_STATE_DIR"));
    }
}
