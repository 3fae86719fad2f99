//! `{{variables}}` in the texts of smoke checks, found once, when the spec is read: `{{run_id}}`
//! (unique per run), `{{version}}`, `{{env.NAME}}` and values captured by earlier checks of the
//! chain. The one scanner of `{{...}}`: validation asks a template which variables it uses,
//! a run asks it for its text.

use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};

/// A variable a template uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    RunId,
    Version,
    /// `{{env.NAME}}`: the environment variable, which must be set when the checks run.
    Env(String),
    /// A value an earlier check of the chain captured.
    Capture(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A text with `{{variables}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = vec![];
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| format!("an unclosed {{{{ in {text:?}"))?;
            let name = after[..end].trim();
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(format!(
                    "{{{{{name}}}}}: expected a variable name (run_id, version, env.NAME or a capture)"
                ));
            }
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            parts.push(Part::Var(match name {
                "run_id" => Var::RunId,
                "version" => Var::Version,
                n => match n.strip_prefix("env.") {
                    Some(v) if !v.is_empty() => Var::Env(v.to_string()),
                    _ => Var::Capture(n.to_string()),
                },
            }));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { text: text.to_string(), parts })
    }

    /// The variables it uses.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its literal parts hold `c`.
    pub fn literal_contains(&self, c: impl Fn(char) -> bool) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Text(t) if t.chars().any(&c)))
    }

    /// The text with the variables' values. A capture that is missing (its check failed, so
    /// the rest of the chain is skipped) stays as written.
    pub fn render(&self, vars: &Vars) -> String {
        let mut out = String::with_capacity(self.text.len());
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => match vars.value(v) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&format!("{{{{{}}}}}", name_of(v))),
                },
            }
        }
        out
    }
}

fn name_of(v: &Var) -> String {
    match v {
        Var::RunId => "run_id".into(),
        Var::Version => "version".into(),
        Var::Env(n) => format!("env.{n}"),
        Var::Capture(n) => n.clone(),
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// The values a run gives the variables.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub run_id: String,
    pub version: String,
    /// The environment variables the spec names (`{{env.NAME}}`).
    pub env: BTreeMap<String, String>,
    pub captures: HashMap<String, String>,
    /// A header the environment's proxy adds to every answer users get (nginx's version
    /// header), set when the checks ask a version at its own address: its answers are judged
    /// as users would get them.
    pub proxy_header: Option<(String, String)>,
}

impl Vars {
    fn value(&self, v: &Var) -> Option<&str> {
        match v {
            Var::RunId => Some(&self.run_id),
            Var::Version => Some(&self.version),
            Var::Env(n) => self.env.get(n).map(String::as_str),
            Var::Capture(n) => self.captures.get(n).map(String::as_str),
        }
    }
}

/// A JSON value whose strings are templates: a check's `json` body, a `json_equals` value.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    Str(Template),
    Arr(Vec<JsonTemplate>),
    Obj(Vec<(String, JsonTemplate)>),
    Other(serde_json::Value),
}

impl JsonTemplate {
    pub fn from_toml(v: &toml::Value) -> Result<JsonTemplate, String> {
        Ok(match v {
            toml::Value::String(s) => JsonTemplate::Str(Template::parse(s)?),
            toml::Value::Array(a) => JsonTemplate::Arr(a.iter().map(Self::from_toml).collect::<Result<_, _>>()?),
            toml::Value::Table(t) => JsonTemplate::Obj(
                t.iter().map(|(k, v)| Ok((k.clone(), Self::from_toml(v)?))).collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Other(serde_json::to_value(other).map_err(|e| e.to_string())?),
        })
    }

    pub fn render(&self, vars: &Vars) -> serde_json::Value {
        match self {
            JsonTemplate::Str(t) => serde_json::Value::String(t.render(vars)),
            JsonTemplate::Arr(a) => serde_json::Value::Array(a.iter().map(|x| x.render(vars)).collect()),
            JsonTemplate::Obj(o) => o.iter().map(|(k, x)| (k.clone(), x.render(vars))).collect(),
            JsonTemplate::Other(v) => v.clone(),
        }
    }

    /// Every template in it.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            JsonTemplate::Str(t) => vec![t],
            JsonTemplate::Arr(a) => a.iter().flat_map(|x| x.templates()).collect(),
            JsonTemplate::Obj(o) => o.iter().flat_map(|(_, x)| x.templates()).collect(),
            JsonTemplate::Other(_) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_found_once_and_rendered() {
        let t = Template::parse("/{{code}}?v={{ code }}&r={{run_id}}&e={{env.TEAM}}&x={{missing}}").expect("template");
        let vars: Vec<&Var> = t.vars().collect();
        assert_eq!(vars[0], &Var::Capture("code".into()));
        assert_eq!(vars[2], &Var::RunId);
        assert_eq!(vars[3], &Var::Env("TEAM".into()));
        let mut v = Vars { run_id: "r1".into(), ..Default::default() };
        v.captures.insert("code".into(), "abc".into());
        v.env.insert("TEAM".into(), "blue".into());
        assert_eq!(t.render(&v), "/abc?v=abc&r=r1&e=blue&x={{missing}}");
        for bad in ["{{", "a {{ b", "{{}}", "{{a b}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Template::parse("plain").expect("plain").render(&v), "plain");
    }
}
