//! What an environment hands its app (`[environments.NAME.env]`): text that may name the
//! values only the platform knows at start — `${SAFEDEPLOY_DATA_DIR}`, `${PORT}`,
//! `${SAFEDEPLOY_ENV}`, `${SAFEDEPLOY_VERSION}` — and secrets taken from the deploying shell
//! by explicit reference (`SECRET_KEY = { from_env = "APP_SECRET_KEY" }`), so a Jenkins
//! credential reaches the app without being committed. Any other `${…}` is an error at load:
//! passed literally, it would fail the deploy a minute later, or worse, not at all.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The names a value may use as `${NAME}`.
pub const PLACEHOLDERS: [&str; 4] = ["SAFEDEPLOY_DATA_DIR", "PORT", "SAFEDEPLOY_ENV", "SAFEDEPLOY_VERSION"];

/// One variable's value as the file writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppValue {
    /// Text, its placeholders checked (expanded at start).
    Text(String),
    /// The value of this variable of the deploying shell, at deploy time.
    FromEnv(String),
}

/// What a value's `${…}` stand for at one start of the app.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    pub data_dir: &'a str,
    /// Empty for a command that serves no port (the release).
    pub port: &'a str,
    pub env: &'a str,
    pub version: &'a str,
}

/// The parts of a text: literal runs and placeholders (`$${` is a literal `${`).
fn parts(text: &str) -> Result<Vec<Part<'_>>, String> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            // `$${`: a literal `${`, the first `$` dropped.
            out.push(Part::Lit(&rest[..i - 1]));
            out.push(Part::Lit("${"));
            rest = &rest[i + 2..];
            continue;
        }
        out.push(Part::Lit(&rest[..i]));
        let after = &rest[i + 2..];
        // The value itself is never echoed: it may be a secret, or a megabyte long.
        let end =
            after.find('}').ok_or_else(|| "a `${` without its `}` (write `$${` for a literal `${`)".to_string())?;
        let name: String = after[..end].chars().take(40).collect();
        if !PLACEHOLDERS.contains(&name.as_str()) {
            return Err(format!(
                "${{{name}}} is not known; expected one of {} (a variable of the deploying shell is passed with {{ from_env = \"NAME\" }}; write `$${{` for a literal `${{`)",
                PLACEHOLDERS.map(|p| format!("${{{p}}}")).join(", ")
            ));
        }
        out.push(Part::Var(&after[..end]));
        rest = &after[end + 1..];
    }
    out.push(Part::Lit(rest));
    Ok(out)
}

enum Part<'a> {
    Lit(&'a str),
    Var(&'a str),
}

impl AppValue {
    /// The text with its placeholders replaced; `None` for a `from_env` value.
    pub fn expand(&self, p: &Placeholders<'_>) -> Option<String> {
        let AppValue::Text(t) = self else { return None };
        // Checked at load: a text that does not parse never gets here.
        let parts = parts(t).unwrap_or_else(|_| vec![Part::Lit(t)]);
        Some(
            parts
                .into_iter()
                .map(|part| match part {
                    Part::Lit(l) => l,
                    Part::Var("SAFEDEPLOY_DATA_DIR") => p.data_dir,
                    Part::Var("PORT") => p.port,
                    Part::Var("SAFEDEPLOY_ENV") => p.env,
                    Part::Var(_) => p.version,
                })
                .collect(),
        )
    }

    /// Whether the text stores the app's data under `${SAFEDEPLOY_DATA_DIR}`.
    pub fn names_data_dir(&self) -> bool {
        matches!(self, AppValue::Text(t) if t.contains("${SAFEDEPLOY_DATA_DIR}"))
    }

    /// The shell's variable a `from_env` value reads.
    pub fn from_env(&self) -> Option<&str> {
        match self {
            AppValue::FromEnv(v) => Some(v),
            AppValue::Text(_) => None,
        }
    }

    /// The text as written (`None` for a `from_env` value).
    pub fn text(&self) -> Option<&str> {
        match self {
            AppValue::Text(t) => Some(t),
            AppValue::FromEnv(_) => None,
        }
    }
}

fn valid_var_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'de> Deserialize<'de> for AppValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AppValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, or { from_env = \"NAME\" } for a variable of the deploying shell")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AppValue, E> {
                parts(s).map_err(E::custom)?;
                Ok(AppValue::Text(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<AppValue, A::Error> {
                let mut from = None;
                while let Some(k) = m.next_key::<String>()? {
                    if k != "from_env" {
                        return Err(de::Error::custom(format!("unknown field `{k}`, expected `from_env`")));
                    }
                    let v: String = m.next_value()?;
                    if !valid_var_name(&v) {
                        return Err(de::Error::custom(format!(
                            "from_env = {v:?}: expected a variable's name (A-Z a-z 0-9 _, not starting with a digit)"
                        )));
                    }
                    from = Some(v);
                }
                from.map(AppValue::FromEnv).ok_or_else(|| de::Error::custom("expected { from_env = \"NAME\" }"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for AppValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AppValue::Text(t) => s.serialize_str(t),
            AppValue::FromEnv(v) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("from_env", v)?;
                m.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<AppValue, String> {
        #[derive(Deserialize)]
        struct T {
            #[allow(dead_code)]
            x: AppValue,
        }
        toml::from_str::<T>(&format!("x = {v}")).map(|t| t.x).map_err(|e| e.message().to_string())
    }

    const AT: Placeholders<'static> =
        Placeholders { data_dir: "/s/staging/data", port: "8001", env: "staging", version: "v2" };

    #[test]
    fn placeholders_expand_and_anything_else_in_braces_is_refused() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (r#""sqlite:///${SAFEDEPLOY_DATA_DIR}/app.db""#, Ok("sqlite:////s/staging/data/app.db")),
            (r#""${PORT}-${SAFEDEPLOY_ENV}-${SAFEDEPLOY_VERSION}""#, Ok("8001-staging-v2")),
            (r#""plain $HOME and $ alone""#, Ok("plain $HOME and $ alone")),
            (r#""a literal $${PORT}""#, Ok("a literal ${PORT}")),
            (r#""""#, Ok("")),
            (r#""${HOME}/x""#, Err("${HOME} is not known")),
            (r#""${}""#, Err("${} is not known")),
            (r#""${port}""#, Err("${port} is not known")),
            (r#""${ PORT }""#, Err("${ PORT } is not known")),
            (r#""${PORT""#, Err("without its `}`")),
            // A secret's text is not echoed in the error.
            (r#""hunter2-secret${X}""#, Err("${X} is not known")),
            (r#"{ from_env = "APP_SECRET_KEY" }"#, Err("")),
            (r#"{ from_env = "" }"#, Err("expected a variable's name")),
            (r#"{ from_env = "-x" }"#, Err("expected a variable's name")),
            (r#"{ from_env = "1X" }"#, Err("expected a variable's name")),
            (r#"{ from_env = "A B" }"#, Err("expected a variable's name")),
            (r#"{ from = "X" }"#, Err("unknown field `from`")),
            (r#"{}"#, Err("expected { from_env")),
            ("3", Err("expected a string, or { from_env")),
        ];
        for (text, want) in cases {
            let got = parse(text);
            match (want, &got) {
                (Ok(expanded), Ok(v)) => assert_eq!(v.expand(&AT).as_deref(), Some(*expanded), "{text}"),
                (Err(""), Ok(AppValue::FromEnv(n))) => assert_eq!(n, "APP_SECRET_KEY"),
                (Err(msg), Err(e)) if !msg.is_empty() => {
                    assert!(e.contains(msg), "{text}: {e}");
                    assert!(!e.contains("hunter2"), "the value is echoed: {e}");
                }
                _ => panic!("{text}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn a_value_writes_itself_back_as_written() {
        for text in [r#""a ${PORT} $${x}""#, r#"{ from_env = "K" }"#] {
            let v = parse(text).expect("parses");
            #[derive(Serialize, Deserialize)]
            struct T {
                x: AppValue,
            }
            let back = toml::to_string(&T { x: v.clone() }).expect("serializes");
            assert_eq!(toml::from_str::<T>(&back).expect("reads back").x, v, "{back}");
        }
    }
}
