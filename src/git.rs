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
