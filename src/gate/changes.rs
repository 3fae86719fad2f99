//! What changed since the base: the base commit itself (from `--base`, Jenkins' variables, the
//! ledger or the default branch), the files changed (for the change policy) and the added lines
//! (for diff coverage), read from `git diff` against the working tree.

use crate::context::Ctx;
use crate::error::Error;
use crate::git;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Base {
    pub commit: String,
    /// Where it came from, for the report: `--base`, `CHANGE_TARGET`, ...
    pub from: String,
}

/// The base to compare with, in order: `--base`; `CHANGE_TARGET` (a pull request's target
/// branch); `GIT_PREVIOUS_SUCCESSFUL_COMMIT`; the commit of production's last known good
/// version; the merge base with the default branch. A named base missing from the clone (a
/// shallow clone) is an error, never a silent "no changes".
pub fn resolve_base(
    ctx: &Ctx,
    dir: &Path,
    explicit: Option<&str>,
    known_good: Option<(String, String)>,
) -> Result<Base> {
    let missing = |rev: &str, from: &str| -> anyhow::Error {
        Error::usage(format!("base {rev:?} (from {from}) is not a commit in this clone"))
            .with_hint("a shallow clone lacks history: fetch more (git fetch --unshallow) or pass --base REV")
            .into()
    };
    if let Some(rev) = explicit {
        return git::commit(ctx, dir, rev)
            .map(|commit| Base { commit, from: "--base".into() })
            .ok_or_else(|| missing(rev, "--base"));
    }
    if let Some(target) = ctx.env.get("CHANGE_TARGET").map(str::to_string) {
        for candidate in [format!("origin/{target}"), target.clone()] {
            if let Some(tip) = git::commit(ctx, dir, &candidate)
                && let Ok(mb) = git::read(ctx, dir, &["merge-base", "HEAD", &tip])
            {
                return Ok(Base { commit: mb, from: format!("merge base with CHANGE_TARGET {target}") });
            }
        }
        return Err(missing(&target, "CHANGE_TARGET"));
    }
    if let Some(prev) = ctx.env.get("GIT_PREVIOUS_SUCCESSFUL_COMMIT").map(str::to_string) {
        return git::commit(ctx, dir, &prev)
            .map(|commit| Base { commit, from: "GIT_PREVIOUS_SUCCESSFUL_COMMIT".into() })
            .ok_or_else(|| missing(&prev, "GIT_PREVIOUS_SUCCESSFUL_COMMIT"));
    }
    if let Some((commit, what)) = known_good {
        return git::commit(ctx, dir, &commit)
            .map(|commit| Base { commit, from: what.clone() })
            .ok_or_else(|| missing(&commit, &what));
    }
    let default_branch =
        git::read(ctx, dir, &["symbolic-ref", "--short", "refs/remotes/origin/HEAD"]).ok().or_else(|| {
            ["origin/main", "origin/master", "main", "master"]
                .iter()
                .find(|b| git::commit(ctx, dir, b).is_some())
                .map(|b| b.to_string())
        });
    if let Some(branch) = default_branch
        && let Ok(mb) = git::read(ctx, dir, &["merge-base", "HEAD", &branch])
    {
        let head = git::commit(ctx, dir, "HEAD").unwrap_or_default();
        if mb == head {
            ctx.ui.warn(format!(
                "the base is HEAD itself (the merge base with {branch}): no changes to judge; \
                 pass --base, or let Jenkins set GIT_PREVIOUS_SUCCESSFUL_COMMIT"
            ));
        }
        return Ok(Base { commit: mb, from: format!("merge base with {branch}") });
    }
    Err(Error::usage("cannot find a base to compare the change with")
        .with_hint("pass --base REV (or set CHANGE_TARGET / GIT_PREVIOUS_SUCCESSFUL_COMMIT)")
        .into())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// A added, M modified, D deleted, R renamed, C copied, T type changed.
    pub status: char,
    pub path: String,
    pub old_path: Option<String>,
    /// For renames and copies: git's similarity percentage (100 = content unchanged).
    pub similarity: Option<u32>,
}

impl FileChange {
    /// Whether the file's content changed in a way that calls for tests (a deletion or a pure
    /// rename does not).
    pub fn content_changed(&self) -> bool {
        match self.status {
            'D' => false,
            'R' | 'C' => self.similarity != Some(100),
            _ => true,
        }
    }
}

/// Parses `git diff --name-status -z`: `STATUS\0PATH\0`, or `R087\0OLD\0NEW\0` for renames.
pub fn parse_name_status(text: &str) -> Vec<FileChange> {
    let mut parts = text.split('\0').filter(|p| !p.is_empty());
    let mut out = vec![];
    while let Some(status) = parts.next() {
        let kind = status.chars().next().unwrap_or('M');
        let similarity = status[1..].parse().ok();
        let Some(first) = parts.next() else { break };
        if matches!(kind, 'R' | 'C') {
            let Some(new) = parts.next() else { break };
            out.push(FileChange { status: kind, path: new.to_string(), old_path: Some(first.to_string()), similarity });
        } else {
            out.push(FileChange { status: kind, path: first.to_string(), old_path: None, similarity: None });
        }
    }
    out
}

pub fn changed_files(ctx: &Ctx, dir: &Path, base: &Base) -> Result<Vec<FileChange>> {
    let text =
        git::read(ctx, dir, &["diff", "--name-status", "-z", "--find-renames", "--relative", &base.commit, "--"])?;
    Ok(parse_name_status(&text))
}

/// The added or changed lines per file (paths relative to `dir`), from `git diff -U0`.
pub fn added_lines(ctx: &Ctx, dir: &Path, base: &Base) -> Result<BTreeMap<String, Vec<u32>>> {
    let text = git::read(
        ctx,
        dir,
        &["diff", "-U0", "--no-color", "--no-ext-diff", "--find-renames", "--relative", &base.commit, "--"],
    )?;
    Ok(parse_unified_zero(&text))
}

/// Parses `git diff -U0` into the new-side line numbers of each file's added lines. Binary
/// files and deletions contribute none.
pub fn parse_unified_zero(text: &str) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for h in crate::git::hunks(text) {
        if let Some(file) = h.file {
            out.entry(file).or_default().extend(h.new_start..h.new_start + h.new_count);
        }
    }
    out.retain(|_, lines| !lines.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_with_renames_spaces_and_deletions() {
        let text = "M\0app.py\0R100\0old name.py\0new name.py\0R087\0a.py\0b.py\0D\0gone.py\0A\0tests/test x.py\0";
        let c = parse_name_status(text);
        assert_eq!(c.len(), 5);
        assert_eq!(c[1].path, "new name.py");
        assert_eq!(c[1].old_path.as_deref(), Some("old name.py"));
        assert!(!c[1].content_changed(), "a pure rename changes no content");
        assert!(c[2].content_changed());
        assert!(!c[3].content_changed(), "a deletion needs no test");
        assert_eq!(c[4].path, "tests/test x.py");
    }

    #[test]
    fn unified_zero_hunks() {
        let diff = "diff --git a/application.py b/application.py
index 1..2 100644
--- a/application.py
+++ b/application.py
@@ -67 +67 @@ def load_urls(path):
-        return json.load(urls_file)
+        return json.loads(urls_file)
@@ -80,0 +81,3 @@
+a
+b
+c
diff --git a/img.png b/img.png
Binary files a/img.png and b/img.png differ
diff --git a/gone.py b/gone.py
deleted file mode 100644
--- a/gone.py
+++ /dev/null
@@ -1,2 +0,0 @@
-x
-y
diff --git \"a/we\\\"ird.py\" \"b/we\\\"ird.py\"
--- \"a/we\\\"ird.py\"
+++ \"b/we\\\"ird.py\"
@@ -1,0 +2 @@
+z
diff --git a/dir with space/m.py b/dir with space/m.py
--- a/dir with space/m.py
+++ b/dir with space/m.py
@@ -4,2 +4,2 @@
-p
-q
+P
+Q
";
        let added = parse_unified_zero(diff);
        assert_eq!(added["application.py"], vec![67, 81, 82, 83]);
        assert_eq!(added["we\"ird.py"], vec![2]);
        assert_eq!(added["dir with space/m.py"], vec![4, 5]);
        assert!(!added.contains_key("img.png") && !added.contains_key("gone.py"));
    }
}
