//! deploy-staging: bundle a commit once, register it, deploy it to a staging environment.

use super::*;

/// deploy-staging's `--json` document.
#[derive(Serialize)]
struct Summary<'a> {
    env: &'a str,
    version: &'a str,
    commit: &'a str,
    previous: Option<String>,
    duration_ms: Millis,
    dry_run: bool,
}

/// `deploy-staging`: bundle the commit, register the version, deploy it, wait until healthy.
/// Without `rev`, a label the ledger knows is deployed again from its own commit (a label names
/// one commit for ever), and a new one is bundled from HEAD.
pub fn deploy_staging(ctx: &Ctx, label: &Label, rev: Option<&str>, env: &str) -> Result<Outcome> {
    ctx.config.environment(env)?;
    if is_production(ctx, env) {
        return Err(Error::usage(format!(
            "deploy-staging deploys to staging environments only; {env} is one whose incidents spend the SLA budget (sla.environments)"
        ))
        .with_hint(format!("promote --version {label} --to {env} deploys what passed staging"))
        .into());
    }
    // What the ledger knows of the label, if it can be read (a missing or refused ledger is
    // met again, and said, when the session opens it; `registered` holds a label to its commit).
    let known = match rev {
        Some(_) => None,
        None => ctx.ledger_read_only().and_then(|l| l.version(label)).ok().flatten(),
    };
    let commit = match (&known, rev) {
        (Some(v), _) => {
            ctx.ui.status(format!("{label} is known: deploying its commit {} again", crate::git::short(&v.commit)));
            v.commit.clone()
        }
        (None, rev) => bundle::resolve_commit(ctx, rev.unwrap_or("HEAD"))?,
    };
    ctx.ui.status(format!("{env}: deploying {label} (commit {})", crate::git::short(&commit)));
    let session = Session::open(ctx, ctx.ledger()?, ctx.platform()?, env)?;
    let started = now_ms();
    let version = registered(&session, label, &commit)?;
    let previous = session.live_label();
    let step =
        Step { label, action: Action::Deploy, previous: previous.as_deref(), reason: None, pre: None, canary: None };
    session.deploy(step)?.live_or_verdict(label, env)?;
    let took = now_ms() - started;
    if !ctx.dry_run {
        ctx.ui.result(format!("{env}: {label} is live and healthy ({} after the lock)", human(took)));
    }
    Outcome::of(&Summary {
        env,
        version: label,
        commit: &version.commit,
        previous,
        duration_ms: took,
        dry_run: ctx.dry_run,
    })
}

/// The version `label` of `commit`: the known one (a label names one commit forever), or a new
/// one bundled, registered with the platform and recorded.
fn registered(session: &Session<'_>, label: &str, commit: &str) -> Result<Version> {
    let (ctx, ledger, platform) = (session.ctx, &session.ledger, &*session.platform);
    let known = ledger.version(label)?;
    let version = match &known {
        Some(v) if v.commit != commit => {
            return Err(Error::usage(format!(
                "version {label} already exists for commit {}; labels name one commit",
                v.commit
            ))
            .with_hint("choose a new label, e.g. include the build number")
            .into());
        }
        Some(v) => {
            ctx.ui.status(format!("{label} is already built from this commit; reusing it"));
            v.clone()
        }
        None => Version {
            label: label.to_string(),
            commit: commit.to_string(),
            checksum: bundle::build(ctx, label, commit)?.unwrap_or_default(),
            bundle: bundle::path(ctx, label)?.to_string_lossy().into_owned(),
            created_at: now_ms(),
            bad_at: None,
            bad_reason: None,
        },
    };
    if let Err(e) = platform.register(&version, &bundle::path(ctx, label)?) {
        if known.is_none() {
            bundle::discard(ctx, label)?;
        }
        return Err(e);
    }
    if known.is_none() {
        ledger.record_version(&version)?;
        let dir = ctx.config.source_dir();
        if let Ok(t) = crate::git::read(ctx, &dir, &["show", "-s", "--format=%ct", commit])
            && let Ok(secs) = t.trim().parse::<i64>()
        {
            ledger.record_committed_at(label, secs * 1000)?;
        }
    }
    Ok(version)
}
