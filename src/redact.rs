//! Secret masking: every line that leaves the process (console, reports, dry-run plans) passes
//! through [`Redactor::redact`].
//!
//! By value and by shape:
//! - values: the secret-looking environment variables (`*_KEY`, `*TOKEN*`, `*SECRET*`,
//!   `*PASSWORD*`, `*WEBHOOK*`, ...), the variables the config names as holding a webhook or a
//!   key, config values under secret-looking names, and the header values smoke checks send;
//!   they are added as they become known (the set is shared by every clone), and masked
//!   wherever they appear;
//! - shapes: AWS key ids and bare secret access keys, a value after a key-like word
//!   (`password=`, `"aws_secret_access_key": "..."`, `api-key:`), Slack webhooks and tokens,
//!   GitHub tokens, bearer/basic credentials, passwords in URLs, presigned URL signatures,
//!   private keys.

use regex::{Captures, Regex};
use std::sync::{Arc, OnceLock, RwLock};

pub const MASK: &str = "****";

/// Values shorter than this are not masked by value (a secret variable set to `1` must not
/// mask every `1`); their shape still is.
const MIN_VALUE: usize = 6;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

fn patterns() -> &'static [(Regex, &'static str)] {
    static P: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    P.get_or_init(|| {
        let p = |re: &str, rep: &'static str| (Regex::new(re).expect("static regex"), rep);
        vec![
            p(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", MASK),
            // A value after a key-like word: `password=x`, `"client_secret": "x"`, `X-Api-Key: x`.
            p(
                r#"(?i)([A-Za-z0-9_.-]*(?:secret|token|passwd|password|pwd|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)["']?\s*[:=]\s*["']?)([^\s"',;&}<>]{3,})"#,
                "${1}****",
            ),
            p(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+", "https://hooks.slack.com/services/****"),
            p(r"\bxox[abprs]-[A-Za-z0-9-]{10,}", MASK),
            // Stripe-style keys (`sk_live_…`, `rk_test_…`, `whsec_…`).
            p(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}", MASK),
            p(r"\bwhsec_[A-Za-z0-9]{10,}", MASK),
            p(r"\bgh[pousr]_[A-Za-z0-9]{20,}", MASK),
            p(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", "${1} ****"),
            p(r"(?i)(dd-api-key|dd-application-key)(\s*[:=]\s*)\S+", "${1}${2}****"),
            p(r"([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", "${1}****@"),
            // A DSN's key without a password (`https://0123abcd@o1.ingest.sentry.io/42`): a
            // user part of hex or base64 long enough to be a key, not a name.
            p(r"([a-z][a-z0-9+.-]*://)[A-Za-z0-9_-]{16,}@", "${1}****@"),
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

/// Runs of the characters an AWS secret access key is made of.
fn key_runs() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"[A-Za-z0-9/+]+").expect("static regex"))
}

/// An AWS secret access key's shape: exactly 40 characters of base64 without padding, with
/// upper and lower case letters and a digit, `/` or `+` — so a 40-character commit id (hex)
/// or a path is not one.
fn looks_like_aws_secret(run: &str) -> bool {
    run.len() == 40
        && run.bytes().any(|b| b.is_ascii_uppercase())
        && run.bytes().any(|b| b.is_ascii_lowercase())
        && run.bytes().any(|b| b.is_ascii_digit() || b == b'/' || b == b'+')
        && !run.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether an environment variable's (or a config key's, or a header's) name says it holds a
/// secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase().replace('-', "_");
    ["_KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "WEBHOOK", "CREDENTIAL", "AUTHORIZATION", "COOKIE"]
        .iter()
        .any(|s| n.contains(s))
        || n.ends_with("KEY")
}

impl Redactor {
    /// A redactor that knows the secret values of an environment.
    pub fn for_env(env: &crate::environ::Environ) -> Self {
        let r = Redactor::default();
        for (k, v) in env.vars() {
            if is_secret_name(k) {
                r.add_value(v.clone());
            }
        }
        r
    }

    /// Masks `value` from now on, in this redactor and every clone of it.
    pub fn add_value(&self, value: impl Into<String>) {
        let v = value.into();
        if v.chars().count() >= MIN_VALUE
            && let Ok(mut values) = self.values.write()
            && !values.contains(&v)
        {
            values.push(v);
            // Longer first, so a value containing another is masked whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// A JSON document with every string masked, and every scalar under a secret-looking key:
    /// masking runs on the values themselves, before serializing escapes `"` into `\"` (a
    /// pattern for `"password": "x"` no longer matches `\"password\": \"x\"`).
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            // `api_key_env` names a variable; it holds none.
                            Value::String(_) | Value::Number(_) if is_secret_name(k) && !k.ends_with("_env") => {
                                Value::String(MASK.into())
                            }
                            v => self.redact_json(v),
                        };
                        (self.redact(k), v)
                    })
                    .collect(),
            ),
            v => v.clone(),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(values) = self.values.read() {
            for v in values.iter() {
                if out.contains(v.as_str()) {
                    out = out.replace(v.as_str(), MASK);
                }
            }
        }
        for (re, rep) in patterns() {
            if re.is_match(&out) {
                out = re.replace_all(&out, *rep).into_owned();
            }
        }
        if key_runs().find_iter(&out).any(|m| looks_like_aws_secret(m.as_str())) {
            out = key_runs()
                .replace_all(
                    &out,
                    |c: &Captures<'_>| {
                        if looks_like_aws_secret(&c[0]) { MASK.to_string() } else { c[0].to_string() }
                    },
                )
                .into_owned();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_patterns_and_known_values() {
        let r = Redactor::default();
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
    fn values_added_to_one_clone_are_masked_by_all() {
        let a = Redactor::default();
        let b = a.clone();
        b.add_value("header-secret-42");
        assert_eq!(a.redact("X-Api-Key header-secret-42 sent"), "X-Api-Key **** sent");
        // Short values are not masked by value.
        a.add_value("1");
        assert_eq!(a.redact("1 2 3"), "1 2 3");
    }

    #[test]
    fn secrets_are_masked_by_shape_without_being_known() {
        let r = Redactor::default();
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for line in [
            format!("upload failed with {secret}"),
            format!(r#"{{"aws_secret_access_key": "{secret}"}}"#),
            format!("aws_secret_access_key={secret}"),
            format!("AWS_SECRET_ACCESS_KEY: '{secret}'"),
        ] {
            let out = r.redact(&line);
            assert!(!out.contains(secret), "{line} → {out}");
            assert!(!out.contains("wJalrXUtnFEMI"), "{line} → {out}");
        }
        for (line, gone) in [
            ("password=hunter22 next", "hunter22"),
            (r#"{"client_secret": "abc123xyz"}"#, "abc123xyz"),
            ("X-Api-Key: k-998877", "k-998877"),
            ("db_pwd = 'qwerty1'", "qwerty1"),
        ] {
            let out = r.redact(line);
            assert!(!out.contains(gone), "{line} → {out}");
        }
        // Not secrets: a commit id, a path, an author line, counts of tokens.
        for keep in [
            "commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
            "/var/app/current/application/helpers/views.py",
            "author: New Hire <new.hire@example.com>",
            "GET /shorten HTTP/1.1 200",
        ] {
            assert_eq!(r.redact(keep), keep);
        }
    }

    #[test]
    fn json_documents_are_masked_value_by_value_and_stay_json() {
        let r = Redactor::default();
        r.add_value("known-secret-1");
        let doc = serde_json::json!({
            "detail": "answered 500: {\"db_password\":\"hunter22\",\"api_token\":\"t0k3n!\"}",
            "api_key": "abc123def",
            "api_key_env": "DD_API_KEY",
            "list": ["known-secret-1", "token=zz\\\"yy"],
            "count": 3,
        });
        let text = serde_json::to_string(&r.redact_json(&doc)).expect("json");
        for gone in ["hunter22", "t0k3n!", "abc123def", "known-secret-1", "zz"] {
            assert!(!text.contains(gone), "{gone}: {text}");
        }
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back["api_key_env"], "DD_API_KEY", "a variable's name is not a secret");
        assert_eq!(back["count"], 3);
    }

    #[test]
    fn payment_keys_and_dsn_keys_are_masked_by_shape() {
        let r = Redactor::default();
        for (line, gone) in [
            ("charge failed with sk_live_51HplantedKey0123", "51HplantedKey0123"),
            ("rk_test_abcdefghij0123 restricted", "abcdefghij0123"),
            ("whsec_abcdefghij0123456 endpoint", "abcdefghij0123456"),
            ("SENTRY_DSN=https://0123456789abcdef0123@o1.ingest.sentry.io/42", "0123456789abcdef0123"),
        ] {
            let out = r.redact(line);
            assert!(!out.contains(gone), "{line} → {out}");
        }
        // A user name in a URL is not a key.
        assert_eq!(r.redact("git clone https://git@example.com/x"), "git clone https://git@example.com/x");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("DD_API_KEY"));
        assert!(is_secret_name("SLACK_WEBHOOK_URL"));
        assert!(is_secret_name("AWS_SECRET_ACCESS_KEY"));
        assert!(is_secret_name("X-Api-Key"));
        assert!(is_secret_name("authorization"));
        assert!(!is_secret_name("PATH"));
        assert!(!is_secret_name("GIT_AUTHOR_NAME"));
        assert!(!is_secret_name("SAFEDEPLOY_STATE_DIR"));
    }
}
