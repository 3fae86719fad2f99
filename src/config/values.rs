//! The typed values of `safedeploy.toml`. Each parses and checks itself as it is read, so a
//! value that cannot work is an error naming the file, the line, the field and what is
//! accepted (exit 2) before anything runs, and consumers get values ready to use: bounded
//! durations, compiled regexes and JSONPaths, HTTP methods and header names, URLs, templates
//! whose `{{variables}}` are found once. Every value also writes itself back the way it is
//! written in the file, for `safedeploy check`'s effective configuration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A value read from a string, checked as it is read.
fn from_str<'de, D: Deserializer<'de>, T>(d: D, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// A duration written as text (`"30s"`, `"5m"`, `"1h 30m"`) from `MIN_MS` to `MAX_MS`: a time
/// limit of `0s` cannot be met, and one of `10000000000000000000s` overflows a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur<const MIN_MS: u64, const MAX_MS: u64>(pub Duration);

impl<const MIN_MS: u64, const MAX_MS: u64> Dur<MIN_MS, MAX_MS> {
    pub const fn ms(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }

    /// What is accepted, as the error says it.
    pub fn range() -> String {
        let show = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
        format!("a duration from {} to {}", if MIN_MS == 0 { "0s".into() } else { show(MIN_MS) }, show(MAX_MS))
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("expected {}, e.g. \"30s\", got {s:?} ({e})", Self::range()))?;
        if d < Duration::from_millis(MIN_MS) || d > Duration::from_millis(MAX_MS) {
            return Err(format!("expected {}, got {s:?}", Self::range()));
        }
        Ok(Dur(d))
    }
}

impl<'de, const A: u64, const B: u64> Deserialize<'de> for Dur<A, B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl<const A: u64, const B: u64> Serialize for Dur<A, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A count from `MIN` to `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Count<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Count<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if n < MIN as i64 || n as u64 > MAX {
            return Err(serde::de::Error::custom(format!("expected a whole number from {MIN} to {MAX}, got {n}")));
        }
        Ok(Count(n as u64))
    }
}

/// A percentage, 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = f64::deserialize(d)?;
        if !(0.0..=100.0).contains(&p) {
            return Err(serde::de::Error::custom(format!("expected a percentage from 0 to 100, got {p}")));
        }
        Ok(Percent(p))
    }
}

/// Text that must say something: not empty, not only spaces, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl Text {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("expected a non-empty text".into());
        }
        if s.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("expected text without control characters or newlines, got {s:?}"));
        }
        Ok(Text(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A command as argv: at least one element, none of them empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Argv(pub Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        if v.is_empty() {
            return Err(serde::de::Error::custom("expected a command as a non-empty list, e.g. [\"pytest\", \"-q\"]"));
        }
        if let Some(i) = v.iter().position(|a| a.is_empty()) {
            return Err(serde::de::Error::custom(format!("expected no empty element, got one at position {}", i + 1)));
        }
        Ok(Argv(v))
    }
}

/// Texts of every kind a pattern could meet: empty, blank, a word, a digit, a control byte, and
/// one that mixes them over two lines.
const ANY_TEXT: &[&str] = &["", " ", "\n", "x", "0", "\u{1}", "Ab 0-\n_\u{e9}\t;"];

/// Whether `re` matches even an empty text and every kind of text: a pattern that can match
/// nothing at the start or the end of any text (`""`, `.*`, `x*`, `^`, `|ERROR`). As a check it
/// could never fail, and as a log pattern it would select every line. A pattern that matches
/// only the empty text (`^$`) tells an empty body apart, and stays; so does one that only
/// bounds a text's length (`(?s)^.{0,20}$`), which the long text fails.
pub fn matches_any_text(re: &regex::Regex) -> bool {
    // 110,000 characters: longer than a length bound a check would set (only built for a
    // pattern that matched every short text).
    let long = || ANY_TEXT[ANY_TEXT.len() - 1].repeat(10_000);
    ANY_TEXT.iter().all(|t| re.is_match(t)) && re.is_match(&long())
}

/// A regular expression, compiled once as it is read. One that matches any text is refused
/// ([`matches_any_text`]).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let re = regex::Regex::new(s).map_err(|e| {
            format!("invalid regex: {}", e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
        })?;
        if matches_any_text(&re) {
            return Err(format!(
                "{s:?} matches any text (even an empty one), so it tells nothing apart; expected a pattern that some text does not match"
            ));
        }
        Ok(Pattern(re))
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A JSONPath, parsed once as it is read.
#[derive(Debug, Clone)]
pub struct JsonPathExpr {
    pub path: serde_json_path::JsonPath,
    text: String,
}

impl JsonPathExpr {
    pub fn parse(s: &str) -> Result<Self, String> {
        serde_json_path::JsonPath::parse(s)
            .map(|path| JsonPathExpr { path, text: s.to_string() })
            .map_err(|e| format!("invalid JSONPath {s:?}: {e}"))
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The first value it selects in `body`, or why there is none.
    pub fn first(&self, body: &str) -> Result<Option<serde_json::Value>, String> {
        let value: serde_json::Value = serde_json::from_str(body).map_err(|_| "the body is not JSON".to_string())?;
        Ok(self.path.query(&value).first().cloned())
    }
}

impl<'de> Deserialize<'de> for JsonPathExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl Serialize for JsonPathExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method(pub reqwest::Method);

impl Default for Method {
    fn default() -> Self {
        Method(reqwest::Method::GET)
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, |s| {
            reqwest::Method::from_bytes(s.to_ascii_uppercase().as_bytes())
                .map(Method)
                .map_err(|_| format!("expected an HTTP method (GET, POST, ...), got {s:?}"))
        })
    }
}

impl Serialize for Method {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// An HTTP header's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeaderName(pub String);

impl HeaderName {
    pub fn parse(s: &str) -> Result<Self, String> {
        reqwest::header::HeaderName::from_bytes(s.as_bytes())
            .map(|_| HeaderName(s.to_string()))
            .map_err(|_| format!("expected an HTTP header name (letters, digits, '-', no spaces), got {s:?}"))
    }
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl Serialize for HeaderName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// An http(s) URL with a host, to which paths are appended: no user or password (it would be
/// printed with every request), no query or fragment, and a port that is not 0 or left empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub reqwest::Url);

impl HttpUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        // The URL parser drops spaces around it and tabs and newlines in it, so `http://host: `
        // would lose its port unseen: text a URL does not hold is refused as written.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("expected a URL without spaces, tabs, newlines or control characters, got {s:?}"));
        }
        let u = match reqwest::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            _ => return Err(format!("expected an http(s) URL, got {s:?}")),
        };
        if !u.username().is_empty() || u.password().is_some() {
            // Not echoed: the password would be in the message.
            return Err("has a user or password, which would be printed with every request; expected none (send credentials in a header from the environment: {{env.NAME}})".into());
        }
        // `http://host:` parses as the scheme's default port: a port forgotten, not chosen.
        // (A `\` ends the host as a `/` does, in an http(s) URL.)
        let authority =
            s.split_once("://").map_or("", |(_, rest)| rest.split(['/', '\\', '?', '#']).next().unwrap_or(""));
        if authority.ends_with(':') || u.port() == Some(0) {
            return Err(format!("expected a port from 1 to 65535 after the host's ':', got {s:?}"));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(format!("paths are appended to this URL; expected no ?query or #fragment, got {s:?}"));
        }
        Ok(HttpUrl(u))
    }
    /// The URL as written, without a trailing `/`: paths are appended to it.
    pub fn base(&self) -> String {
        self.0.as_str().trim_end_matches('/').to_string()
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.base())
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base())
    }
}

/// A URL path: it starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UrlPath(pub String);

impl UrlPath {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("expected a path starting with / and without spaces, got {s:?}"));
        }
        Ok(UrlPath(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for UrlPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl fmt::Display for UrlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for UrlPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A glob pattern (the `glob` crate's syntax, also accepted by `globset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct GlobPattern(pub String);

impl GlobPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("expected a non-empty glob, e.g. \"reports/*.xml\"".into());
        }
        glob::Pattern::new(s).map_err(|e| format!("invalid glob {s:?}: {e}"))?;
        globset::Glob::new(s).map_err(|e| format!("invalid glob {s:?}: {e}"))?;
        Ok(GlobPattern(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for GlobPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl std::ops::Deref for GlobPattern {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A version label: `[A-Za-z0-9][A-Za-z0-9._-]{0,99}` (Elastic Beanstalk's limit is 100). It
/// starts with a letter or digit, so it is never `.`, `..` or an option; it is a safe name for
/// a directory and an argument. Also the command line's value parser.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub fn parse(s: &str) -> Result<Label, String> {
        let ok = s.len() <= 100
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Label(s.to_string()))
        } else {
            Err(format!(
                "invalid version label {s:?}: expected 1 to 100 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, Self::parse)
    }
}

impl std::ops::Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Label::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_that_matches_any_text_is_refused() {
        let any =
            ["", ".*", "x*", "^", "$", "(?:)", "|ERROR", "ERROR|", "a?", "(?m)^", "(?s).*", "[\\s\\S]*", "\\b|\\B"];
        for re in any {
            let e = Pattern::parse(re).expect_err(re);
            assert!(e.contains("matches any text"), "{re}: {e}");
        }
        // Each fails on some text: the empty body, a word, a line of its own, a long text.
        for re in [
            "^$",
            "ERROR",
            "\\bfoo\\b",
            "\\d+",
            "<form",
            "(?i)error",
            "\\b",
            "\\S",
            "^\\s*$",
            "(?s)^.{0,20}$",
            "(?s)^.{0,2000}$",
        ] {
            assert!(Pattern::parse(re).is_ok(), "{re}");
        }
        assert!(Pattern::parse("(").expect_err("(").starts_with("invalid regex"));
    }

    #[test]
    fn durations_are_bounded() {
        type D = Dur<1000, 3_600_000>;
        assert_eq!(D::parse("30s"), Ok(D::secs(30)));
        assert_eq!(D::parse(" 1h "), Ok(D::secs(3600)));
        for bad in ["0s", "999ms", "1h 1s", "10000000000000000000s", "18446744073709551615s", "", "soon", "-1s"] {
            let e = D::parse(bad).expect_err(bad);
            assert!(e.starts_with("expected a duration from 1s to 1h"), "{bad}: {e}");
        }
        assert_eq!(Dur::<0, 1000>::range(), "a duration from 0s to 1s");
    }

    #[test]
    fn labels() {
        assert!(Label::parse("v1.2_rc-3").is_ok());
        assert!(Label::parse(&"x".repeat(100)).is_ok());
        for bad in ["", ".", "..", "-rf", "--help", "_x", ".hidden", "a/b", "a b", "a\nb", "é", &"x".repeat(101)] {
            assert!(Label::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn other_values() {
        assert!(HeaderName::parse("X-Api-Key").is_ok());
        assert!(HeaderName::parse("X Api").is_err());
        assert!(HttpUrl::parse("ftp://x").is_err());
        assert_eq!(HttpUrl::parse("http://127.0.0.1:8101/").expect("url").base(), "http://127.0.0.1:8101");
        for good in
            ["http://localhost", "https://api.datadoghq.com", "http://[::1]:8101/base/", "http://127.0.0.1:65535"]
        {
            assert!(HttpUrl::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "http://127.0.0.1:",
            "http://127.0.0.1:/",
            "http://[::1]:/x",
            "http://127.0.0.1:0",
            "http://127.0.0.1:65536",
            "http://127.0.0.1:8101/?a=1",
            "http://127.0.0.1:8101/?",
            "http://127.0.0.1:8101/#top",
            "http://user@127.0.0.1:8101",
            "http://:hunter2@127.0.0.1:8101",
            "http://127.0.0.1: ",
            " http://127.0.0.1:8101",
            "http://127.0.0.1:\t",
            "http://127.0.0.1:\n/x",
            "http://127.0.0.1:\\x",
            "http://127.0.0.1:8101/a b",
            "http://127.0.0.1:8101/\u{7f}",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        let err = HttpUrl::parse("https://deploy:hunter2@staging.example.com").expect_err("credentials");
        assert!(!err.contains("hunter2"), "the password is not echoed: {err}");
        assert!(UrlPath::parse("version").is_err());
        assert!(UrlPath::parse("").is_err());
        assert!(Text::parse("  ").is_err());
        assert!(GlobPattern::parse("").is_err());
        assert!(GlobPattern::parse("a[").is_err());
        assert!(Pattern::parse("(").is_err());
    }
}
