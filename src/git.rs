//! Read-only questions to git about the app's repository (through `exec`, so they also run —
//! and show with `-v` — in a dry run).

use crate::context::Ctx;
use crate::exec::Cmd;
use anyhow::Result;
use std::path::Path;

/// `git -C DIR -c core.quotePath=false ARGS...`, read-only; returns trimmed stdout.
pub fn read(ctx: &Ctx, dir: &Path, args: &[&str]) -> Result<String> {
    let mut argv = vec![
        "git".to_string(),
        "-C".into(),
        dir.to_string_lossy().into_owned(),
        "-c".into(),
        "core.quotePath=false".into(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    ctx.exec.read(&Cmd::new(argv))
}

/// The full commit id `rev` names, if it names one in this clone.
pub fn commit(ctx: &Ctx, dir: &Path, rev: &str) -> Option<String> {
    read(ctx, dir, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).ok().filter(|c| !c.is_empty())
}

/// A commit id as people read it: its first 12 characters.
pub fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// One hunk of a unified diff: the file it is in (its new path; `None` when deleted), the
/// new side's first line and line count, and its lines (the `@@` line first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk<'a> {
    pub file: Option<String>,
    pub new_start: u32,
    pub new_count: u32,
    pub lines: Vec<&'a str>,
}

/// The hunks of a unified diff (`git diff`, any `-U`): the one reader of `@@ -a,b +c,d @@`.
pub fn hunks(diff: &str) -> Vec<Hunk<'_>> {
    let mut out: Vec<Hunk<'_>> = vec![];
    let mut file: Option<String> = None;
    let mut in_hunk = false;
    for line in diff.lines() {
        if line.starts_with("diff --git ") {
            file = None;
            in_hunk = false;
        } else if let (false, Some(rest)) = (in_hunk, line.strip_prefix("+++ ")) {
            file = header_path(rest);
        } else if let Some(h) = line.strip_prefix("@@ ") {
            let new = h.split_whitespace().find(|t| t.starts_with('+')).unwrap_or("+0");
            let mut n = new[1..].splitn(2, ',');
            let new_start: u32 = n.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let new_count: u32 = n.next().and_then(|v| v.parse().ok()).unwrap_or(1);
            out.push(Hunk { file: file.clone(), new_start, new_count, lines: vec![line] });
            in_hunk = true;
        } else if let Some(h) = out.last_mut().filter(|_| in_hunk) {
            h.lines.push(line);
        }
    }
    out
}

/// A path as git prints it in a diff header: `b/path`, or C-quoted `"b/pa\"th"`.
fn header_path(raw: &str) -> Option<String> {
    let raw = raw.trim_end();
    if raw == "/dev/null" {
        return None;
    }
    let unquoted = if raw.starts_with('"') && raw.ends_with('"') && raw.len() >= 2 {
        let inner = &raw[1..raw.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        raw.to_string()
    };
    Some(unquoted.strip_prefix("b/").unwrap_or(&unquoted).to_string())
}
