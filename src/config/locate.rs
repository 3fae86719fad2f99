//! Where a value is in a configuration file, and the one shape of an error about it
//! (`FILE:LINE: dotted.field: what was expected`). A leaf: the section settings check their
//! own values with it, without knowing the whole configuration.

use crate::error::Error;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// A segment of a path into the file: a key, or an index into an array.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Finds where a value is in the file, for errors found after parsing.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    text: String,
    /// The file the text was read from, named by every error.
    file: PathBuf,
}

impl Locator {
    pub fn new(text: &str, file: &Path) -> Self {
        Locator { text: text.to_string(), file: file.to_path_buf() }
    }

    /// The file the text was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A usage error naming the file, the line of `path` and the field.
    pub fn bad(&self, path: &[Seg<'_>], what: impl std::fmt::Display) -> anyhow::Error {
        let line = self.line(path).map(|l| format!(":{l}")).unwrap_or_default();
        Error::usage(format!("{}{line}: {}: {what}", self.file.display(), dotted(path))).into()
    }

    /// Whether the file writes the value at `path` (keys only).
    pub fn has(&self, path: &[Seg<'_>]) -> bool {
        use toml::de::DeValue;
        let Ok(doc) = toml::de::DeTable::parse(&self.text) else { return false };
        let mut table = doc.get_ref();
        for (i, seg) in path.iter().enumerate() {
            let Seg::Key(k) = seg else { return false };
            let Some((_, v)) = table.iter().find(|(key, _)| key.get_ref() == k) else { return false };
            match v.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return i + 1 == path.len(),
            }
        }
        true
    }

    /// The 1-based line of the value at `path`, or of the nearest table above it.
    pub fn line(&self, path: &[Seg<'_>]) -> Option<usize> {
        use toml::de::DeValue;
        let doc = toml::de::DeTable::parse(&self.text).ok()?;
        let mut at = doc.span().start;
        let mut value: Option<&DeValue<'_>> = None;
        let mut table = Some(doc.get_ref());
        for seg in path {
            let next = match (seg, value, table) {
                (Seg::Key(k), _, Some(t)) => t.iter().find(|(key, _)| key.get_ref() == k).map(|(key, v)| {
                    at = key.span().start;
                    v
                }),
                (Seg::Index(i), Some(DeValue::Array(a)), _) => a.get(*i).inspect(|v| at = v.span().start),
                _ => None,
            };
            let Some(v) = next else { break };
            value = Some(v.get_ref());
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        Some(line_of(&self.text, at))
    }
}

fn dotted(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Reads a file the configuration names, refusing what is not a regular file: a FIFO would
/// hang every binary at start, a directory gives a confusing error.
pub fn read_file(path: &Path, what: &str) -> Result<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(Error::usage(format!("{}: the {what} is not a regular file", path.display())).into()),
        Err(e) => return Err(Error::usage(format!("{}: cannot read: {e}", path.display())).into()),
    }
    std::fs::read_to_string(path).map_err(|e| Error::usage(format!("{}: cannot read: {e}", path.display())).into())
}

/// A TOML error as one line: `file:line: field: what` (the field when the message does not
/// already name it).
pub fn toml_error(e: &toml::de::Error, text: &str, path: &Path) -> anyhow::Error {
    let line = e.span().map(|s| line_of(text, s.start));
    let at = line.map(|l| format!(":{l}")).unwrap_or_default();
    // A value under a secret-looking key is never echoed, not even in a type error.
    let secret = e.span().is_some_and(|s| key_before(text, s.start).is_some_and(crate::redact::is_secret_name));
    let message = if secret { mask_quoted(e.message().trim()) } else { e.message().trim().to_string() };
    // Without its input, toml names the key the error is under (`in `a.b``).
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let field = shown.lines().last().and_then(|l| l.strip_prefix("in `")).and_then(|l| l.strip_suffix('`'));
    let names_itself = ["unknown field", "missing field", "duplicate"].iter().any(|p| message.starts_with(p));
    match field.filter(|_| !names_itself) {
        Some(f) => Error::usage(format!("{}{at}: {f}: {message}", path.display())).into(),
        None => Error::usage(format!("{}{at}: {message}", path.display())).into(),
    }
}

/// The key whose value starts at `offset` (`KEY = value`, also inside an inline table).
pub(super) fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let before = before.trim_end().strip_suffix('=')?.trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"' | '\'' | '.')))
        .map_or(0, |i| i + 1);
    Some(before[start..].trim_matches(['"', '\'']))
}

/// A message with its `quoted` parts masked.
fn mask_quoted(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        out.push_str(if i % 2 == 1 { crate::redact::MASK } else { part });
    }
    out
}
