//! A version's bundle: `git archive` of the app's source dir at one commit, stored once under
//! `<state>/bundles/<label>.tar` (`.zip` for Elastic Beanstalk) with its sha256. Bundles are never rebuilt: promote and rollback
//! reuse what deploy-staging built.

use crate::context::Ctx;
use crate::exec::Cmd;
use crate::git;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub fn path(ctx: &Ctx, label: &str) -> Result<PathBuf> {
    crate::paths::child(&ctx.state_dir.join("bundles"), &format!("{label}.{}", format(ctx)), "version label")
}

/// The archive format the platform takes: a tar for `local`, the zip Elastic Beanstalk requires
/// (with the app at its root, as EB expects).
fn format(ctx: &Ctx) -> &'static str {
    match ctx.config.platform.kind {
        crate::config::PlatformKind::Local => "tar",
        crate::config::PlatformKind::ElasticBeanstalk => "zip",
    }
}

/// The full commit id `rev` names in the app's repository (a read: also runs in a dry run).
pub fn resolve_commit(ctx: &Ctx, rev: &str) -> Result<String> {
    let src = ctx.config.source_dir();
    git::read(ctx, &src, &["rev-parse", "--show-toplevel"]).map_err(|e| {
        crate::usage!(
            "{}: app.source_dir {} is not inside a git repository ({})",
            ctx.config.path.display(),
            src.display(),
            first_line(&e)
        )
    })?;
    let commit = git::commit(ctx, &src, rev)
        .ok_or_else(|| crate::usage!("--commit {rev:?}: no such commit in {}", src.display()))?;
    if let Ok(dirty) = git::read(ctx, &src, &["status", "--porcelain", "--untracked-files=no", "--", "."])
        && !dirty.is_empty()
        && rev == "HEAD"
    {
        ctx.ui.warn(format!(
            "{} has uncommitted changes; the bundle is commit {} as committed",
            src.display(),
            crate::git::short(&commit)
        ));
    }
    Ok(commit)
}

fn first_line(e: &anyhow::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Writes the bundle for `commit` and returns its sha256 (`None` in a dry run).
pub fn build(ctx: &Ctx, label: &str, commit: &str) -> Result<Option<String>> {
    let out = path(ctx, label)?;
    let src = ctx.config.source_dir();
    ctx.exec.create_dir(out.parent().unwrap_or(&ctx.state_dir))?;
    let tmp = out.with_extension(format!("{}.tmp", format(ctx)));
    // Run from the repository's root with the source dir's own tree: run in a subdirectory,
    // `git archive` keeps only that subdirectory's path inside the tree it is given, so an app
    // in a subdirectory of its repository (examples/url-shortener here) bundled nothing.
    let located = git::read(ctx, &src, &["rev-parse", "--show-toplevel", "--show-prefix"])?;
    let mut lines = located.lines();
    let (top, prefix) = (lines.next().unwrap_or("."), lines.next().unwrap_or(""));
    let cmd = Cmd::new([
        "git".to_string(),
        "-C".into(),
        top.to_string(),
        "archive".into(),
        format!("--format={}", format(ctx)),
        "-o".into(),
        tmp.to_string_lossy().into_owned(),
        format!("{commit}:{prefix}"),
    ]);
    if ctx.exec.run(&cmd)?.is_none() {
        return Ok(None);
    }
    let bytes = std::fs::read(&tmp).with_context(|| format!("reading {}", tmp.display()))?;
    let sum = format!("{:x}", Sha256::digest(&bytes));
    std::fs::rename(&tmp, &out).with_context(|| format!("storing {}", out.display()))?;
    Ok(Some(sum))
}

/// Removes the bundle of a version that was never registered.
pub fn discard(ctx: &Ctx, label: &str) -> Result<()> {
    let p = path(ctx, label)?;
    ctx.exec.effect(
        || format!("remove {}", p.display()),
        || match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        },
    )?;
    Ok(())
}
