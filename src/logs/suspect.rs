//! The suspect change: which commit put the failing line there. In-app traceback frames are
//! mapped onto the repository (the deployment prefix cut off), the diff between the last known
//! good version's commit and the failing version's commit (both from the ledger) is read, and a
//! frame on a changed line — or within a few lines of one — is the suspect, with the commit of
//! the range good..bad that last touched the changed line (`git blame good..bad`), its author
//! and subject, and the hunk. A commit outside the range is never blamed: a frame whose nearest
//! change no commit of the range made has no suspect, and a frame near (not on) a change says
//! how far it is.

use super::traces::Frame;
use crate::context::Ctx;
use crate::gate::changes::{Base, parse_unified_zero};
use crate::git;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// How far from a changed line a frame still counts (a changed line often breaks its neighbour).
const NEAR: u32 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Suspect {
    pub file: String,
    pub line: u32,
    pub function: String,
    /// The changed line the frame is on or nearest to, when the frame's own line is unchanged.
    pub changed_line: Option<u32>,
    /// A schema migration of the range, named for a database error no changed line explains.
    pub migration: bool,
    pub good: String,
    pub bad: String,
    pub commit: String,
    pub author: String,
    pub subject: String,
    pub hunk: String,
}

impl Suspect {
    /// One line: where, which commit, who, why.
    pub fn headline(&self) -> String {
        if self.migration {
            return format!(
                "{}, a migration changed in the range (the error is the database's), by {} {} ({})",
                self.file,
                crate::git::short(&self.commit),
                self.author,
                self.subject
            );
        }
        format!(
            "{}:{} in {}{}, changed by {} {} ({})",
            self.file,
            self.line,
            self.function,
            self.nearness(),
            crate::git::short(&self.commit),
            self.author,
            self.subject
        )
    }

    /// `, 2 lines below a change at line 65` when the frame's own line is not changed.
    pub fn nearness(&self) -> String {
        let Some(c) = self.changed_line else { return String::new() };
        let d = self.line.abs_diff(c);
        let side = if self.line > c { "below" } else { "above" };
        format!(", {d} line{} {side} a change at line {c}", if d == 1 { "" } else { "s" })
    }
}

/// A frame's file as a path in the app's source dir, and the version label its path names (the
/// local platform builds each version in `.../local/versions/LABEL/` and runs it from an
/// environment's working copy, `.../local/envs/ENV/work/LABEL-MILLIS/`).
pub fn repo_path(file: &str, prefixes: &[String]) -> (String, Option<String>) {
    if let Some((_, rest)) = file.split_once("/local/versions/")
        && let Some((label, inner)) = rest.split_once('/')
    {
        return (inner.to_string(), Some(label.to_string()));
    }
    if let Some((_, rest)) = file.split_once("/local/envs/")
        && let Some((_env, rest)) = rest.split_once("/work/")
        && let Some((copy, inner)) = rest.split_once('/')
        && let Some((label, millis)) = copy.rsplit_once('-')
        && !millis.is_empty()
        && millis.bytes().all(|b| b.is_ascii_digit())
    {
        return (inner.to_string(), Some(label.to_string()));
    }
    for p in prefixes {
        if let Some(rest) = file.strip_prefix(p.as_str()) {
            return (rest.trim_start_matches('/').to_string(), None);
        }
    }
    (file.to_string(), None)
}

/// The first of `frames` (innermost first) that sits on or near a line changed between `good`
/// and `bad`.
pub fn find(ctx: &Ctx, frames: &[Frame], good: &str, bad: &str) -> Result<Option<Suspect>> {
    let dir = ctx.config.source_dir();
    let (Some(good_commit), Some(bad_commit)) = (git::commit(ctx, &dir, good), git::commit(ctx, &dir, bad)) else {
        return Ok(None);
    };
    let tracked = git::read(ctx, &dir, &["ls-tree", "-r", "--name-only", &bad_commit]).unwrap_or_default();
    let tracked: Vec<&str> = tracked.lines().collect();
    for frame in frames {
        let (path, _) = repo_path(&frame.file, &ctx.config.logs.app_prefixes);
        let Some(path) = in_repo(&path, &tracked) else { continue };
        let base = Base { commit: good_commit.clone(), from: String::new() };
        let diff =
            git::read(ctx, &dir, &["diff", "-U0", "--no-color", "--relative", &base.commit, &bad_commit, "--", &path])?;
        let changed = parse_unified_zero(&diff);
        let Some(lines) = changed.get(&path) else { continue };
        // The frame's line when it changed, else the nearest changed line within NEAR.
        let Some(nearest) =
            lines.iter().copied().filter(|l| l.abs_diff(frame.line) <= NEAR).min_by_key(|l| l.abs_diff(frame.line))
        else {
            continue;
        };
        let range = format!("{good_commit}..{bad_commit}");
        let Some((commit, author, subject)) = blame(ctx, &dir, &range, &path, nearest)? else { continue };
        let full =
            git::read(ctx, &dir, &["diff", "-U3", "--no-color", "--relative", &good_commit, &bad_commit, "--", &path])?;
        return Ok(Some(Suspect {
            file: path,
            line: frame.line,
            function: frame.function.clone(),
            changed_line: (nearest != frame.line).then_some(nearest),
            migration: false,
            good: good.to_string(),
            bad: bad.to_string(),
            commit,
            author,
            subject,
            hunk: hunk_around(&full, frame.line),
        }));
    }
    Ok(None)
}

/// A database error's words: what a schema change breaks (SQLite, PostgreSQL, SQLAlchemy).
static DATABASE_ERROR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)no such (column|table)|Undefined(Column|Table)|OperationalError|ProgrammingError|column .* does not exist|relation .* does not exist")
        .expect("static regex")
});

/// A file that changes the schema: under a `migrations/` or `alembic/` dir, or a `.sql` file.
fn is_migration(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.contains("migration") || p.contains("alembic/") || p.ends_with(".sql")
}

/// For a database error that no changed line explains: the migration changed in good..bad
/// (the newest commit of the range that touched one), with its hunk.
pub fn migration(ctx: &Ctx, error: &str, good: &str, bad: &str) -> Result<Option<Suspect>> {
    if !DATABASE_ERROR.is_match(error) {
        return Ok(None);
    }
    let dir = ctx.config.source_dir();
    let (Some(good_commit), Some(bad_commit)) = (git::commit(ctx, &dir, good), git::commit(ctx, &dir, bad)) else {
        return Ok(None);
    };
    let changed = git::read(ctx, &dir, &["diff", "--name-only", "--relative", &good_commit, &bad_commit])?;
    let Some(path) = changed.lines().map(str::trim).find(|p| is_migration(p)) else { return Ok(None) };
    let range = format!("{good_commit}..{bad_commit}");
    let log = git::read(ctx, &dir, &["log", "-1", "--format=%H%x00%an%x00%s", &range, "--", path])?;
    let mut f = log.trim().splitn(3, '\0');
    let (commit, author, subject) =
        (f.next().unwrap_or_default(), f.next().unwrap_or_default(), f.next().unwrap_or_default());
    if commit.is_empty() {
        return Ok(None);
    }
    let diff =
        git::read(ctx, &dir, &["diff", "-U3", "--no-color", "--relative", &good_commit, &bad_commit, "--", path])?;
    let hunk = git::hunks(&diff).into_iter().next().map(|h| h.lines.join("\n")).unwrap_or_default();
    Ok(Some(Suspect {
        file: path.to_string(),
        line: 0,
        function: String::new(),
        changed_line: None,
        migration: true,
        good: good.to_string(),
        bad: bad.to_string(),
        commit: commit.to_string(),
        author: author.to_string(),
        subject: subject.to_string(),
        hunk,
    }))
}

/// A frame's path as a file of the repository: itself when tracked, else the one tracked file
/// whose path ends with it (a Java frame names `com/example/Store.java`, which lives under
/// `src/main/java/`; a Go binary's paths are the build machine's), else the one ending with the
/// longest tail of it.
fn in_repo(path: &str, tracked: &[&str]) -> Option<String> {
    if tracked.contains(&path) {
        return Some(path.to_string());
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for start in 0..parts.len() {
        let tail = parts[start..].join("/");
        let found: Vec<&&str> = tracked.iter().filter(|t| **t == tail || t.ends_with(&format!("/{tail}"))).collect();
        match found.as_slice() {
            [one] => return Some(one.to_string()),
            [] => continue,
            _ => return None, // ambiguous: no guess
        }
    }
    None
}

/// The commit of `range` (`good..bad`) that last changed `line` of `path`: (sha, author,
/// subject); `None` when the line is older than the range (git marks it a boundary).
fn blame(ctx: &Ctx, dir: &Path, range: &str, path: &str, line: u32) -> Result<Option<(String, String, String)>> {
    let lines = format!("{line},{line}");
    let out = git::read(ctx, dir, &["blame", "--porcelain", "-L", &lines, range, "--", path])?;
    if out.lines().any(|l| l == "boundary") {
        return Ok(None);
    }
    let sha = out.split_whitespace().next().unwrap_or_default().to_string();
    let field =
        |key: &str| out.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default();
    Ok(Some((sha, field("author "), field("summary "))))
}

/// The hunk of a unified diff whose new side covers `line` (or comes nearest to it).
fn hunk_around(diff: &str, line: u32) -> String {
    git::hunks(diff)
        .into_iter()
        .min_by_key(|h| {
            let (s, e) = (h.new_start, h.new_start + h.new_count.max(1) - 1);
            if (s..=e).contains(&line) { 0 } else { line.abs_diff(s).min(line.abs_diff(e)) }
        })
        .map(|h| h.lines.join("\n"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_onto_the_repo() {
        let p = vec!["/var/app/current/".to_string()];
        assert_eq!(repo_path("/var/app/current/application.py", &p), ("application.py".into(), None));
        assert_eq!(repo_path("/s/local/versions/v2/pkg/m.py", &p), ("pkg/m.py".into(), Some("v2".into())));
        let copy = "/s/local/envs/production/work/v2-rc-1796130595664/pkg/m.py";
        assert_eq!(repo_path(copy, &p), ("pkg/m.py".into(), Some("v2-rc".into())));
        // A directory named work that is not a working copy is left as it is.
        assert_eq!(repo_path("/s/local/envs/x/work/notes/m.py", &p).1, None);
    }

    #[test]
    fn a_frame_path_is_found_in_the_repository_by_its_end() {
        let tracked =
            ["src/main/java/com/example/Store.java", "server.js", "lib/a/util.js", "lib/b/util.js", "cmd/app/main.go"];
        assert_eq!(in_repo("server.js", &tracked).as_deref(), Some("server.js"));
        assert_eq!(
            in_repo("com/example/Store.java", &tracked).as_deref(),
            Some("src/main/java/com/example/Store.java")
        );
        assert_eq!(in_repo("/home/ci/build/cmd/app/main.go", &tracked).as_deref(), Some("cmd/app/main.go"));
        assert_eq!(in_repo("util.js", &tracked), None, "two files end so: no guess");
        assert_eq!(in_repo("/usr/lib/node.js", &tracked), None);
        assert_eq!(in_repo("", &tracked), None);
    }

    #[test]
    fn database_errors_and_migration_files_are_told_apart() {
        assert!(
            DATABASE_ERROR
                .is_match("sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such column: post.body")
        );
        assert!(DATABASE_ERROR.is_match("psycopg2.errors.UndefinedColumn: column post.body does not exist"));
        assert!(!DATABASE_ERROR.is_match("TypeError: the JSON object must be str"));
        for m in ["migrations/versions/0002_rename.py", "app/alembic/versions/a1.py", "schema/002.sql"] {
            assert!(is_migration(m), "{m}");
        }
        assert!(!is_migration("application.py"));
    }

    #[test]
    fn the_hunk_around_a_line() {
        let diff = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -10,3 +10,3 @@ def f():\n x\n-y\n+Y\n z\n@@ -64,7 +64,7 @@ def load_urls(path):\n     with open(path) as f:\n-        return json.load(f)\n+        return json.loads(f)\n";
        let h = hunk_around(diff, 67);
        assert!(h.starts_with("@@ -64,7 +64,7 @@") && h.contains("+        return json.loads(f)"), "{h}");
    }
}
