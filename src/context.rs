//! What every operation is handed: the [`Effects`], the loaded config and the state dir.
//! Platforms are given the effects and their own settings, not this.

use crate::config::Config;
pub use crate::effects::Effects;
use crate::environ::Environ;
use crate::ledger::Ledger;
use crate::platform::{self, Platform};
use crate::ui::Ui;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The common options, as plain data (clap stays in `cli`).
#[derive(Debug, Clone, Default)]
pub struct GlobalOptions {
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
    /// Where no config is found (and none was named), run with [`Config::defaults`].
    pub config_optional: bool,
}

pub struct Ctx {
    pub fx: Effects,
    pub config: Config,
    pub state_dir: PathBuf,
}

impl std::ops::Deref for Ctx {
    type Target = Effects;
    fn deref(&self) -> &Effects {
        &self.fx
    }
}

/// Where the ledger and the local platform's state live when `--state-dir` is not given: a
/// per-user directory named after the app (`~/.local/state/safedeploy/APP`), outside the
/// working tree — a copy of every version kept inside the app's tree would be found by its
/// test runner and its build, and a Jenkins workspace wipe would take the ledger with it.
pub fn default_state_dir(config: &Config, env: &Environ) -> Result<PathBuf> {
    let Some(base) = env.user_state_home() else {
        return Err(crate::usage!(
            "no state dir: neither XDG_STATE_HOME nor HOME is set and this user has no home; give --state-dir or SAFEDEPLOY_STATE_DIR"
        ));
    };
    crate::paths::child(&base.join("safedeploy"), &config.app.name.0, "app.name")
}

/// A warning for a state dir inside the app's repository, its source (what a build bundles) or
/// the gate's directory: test runners and builds walk those trees and would find every kept
/// version's copy (a test suite run three times over, say).
fn state_dir_warning(config: &Config, state_dir: &Path, env: &Environ) -> Option<String> {
    if !config.path.exists() {
        return None; // no config: nothing is deployed from here
    }
    let absolute = |p: &Path| crate::paths::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let state = absolute(state_dir);
    let source = absolute(&config.source_dir());
    let gate = config.gate.as_ref().and_then(|g| g.dir.as_ref()).map(|d| absolute(&config.dir.join(d)));
    let repo = source.ancestors().find(|d| d.join(".git").exists()).map(Path::to_path_buf);
    let places = [
        (Some(source), "the app's source dir (what a build bundles)"),
        (gate, "the gate's dir"),
        (repo, "the repository"),
    ];
    let (dir, what) = places.into_iter().find_map(|(d, what)| d.filter(|d| state.starts_with(d)).map(|d| (d, what)))?;
    let default = default_state_dir(config, env)
        .map(|d| format!(", or leave it unset for the default, {}", d.display()))
        .unwrap_or_default();
    Some(format!(
        "the state dir {} is inside {what} {}: test runners and builds there will find every kept version's copy; give --state-dir a path outside it{default}",
        state_dir.display(),
        dir.display(),
    ))
}

impl Ctx {
    pub fn load(opts: &GlobalOptions, ui: Ui, interrupted: Arc<AtomicBool>, env: Environ) -> Result<Ctx> {
        let config = match Config::locate(opts.config.as_deref()) {
            Ok(path) => Config::load(&path)?,
            Err(_) if opts.config_optional && opts.config.is_none() => {
                ui.detail("no safedeploy.toml here or above: every setting is its default");
                Config::defaults(&std::env::current_dir()?)
            }
            Err(e) => return Err(e),
        };
        // Secrets the config knows of are masked wherever their values appear: values under
        // secret-looking names, and the variables it names as holding a webhook or a key.
        for v in &config.secrets {
            ui.redactor.add_value(v.clone());
        }
        for var in config.secret_vars() {
            if let Some(v) = env.get(var) {
                ui.redactor.add_value(v);
            }
        }
        // An empty SAFEDEPLOY_STATE_DIR is unset, as Jenkins passes an option left empty.
        let state_dir = match opts.state_dir.clone().or_else(|| env.state_dir()) {
            Some(dir) if dir.to_string_lossy().trim().is_empty() => {
                return Err(crate::usage!("--state-dir {:?}: expected a directory's path, not blanks", dir.display()));
            }
            // Absolute and without `..` from here on: every command and message names the same
            // directory whatever its working directory, and a relative `-x` is never an option.
            Some(dir) => crate::paths::absolute(&dir)?,
            None => default_state_dir(&config, &env)?,
        };
        // The state dir's paths go on the app's PATH (its build paths): a ':' would split them.
        if state_dir.to_string_lossy().contains([':', '\n', '\0']) {
            return Err(crate::usage!(
                "--state-dir {:?}: a state dir's path must not contain ':' or a newline (it is put on the app's PATH)",
                state_dir.display()
            ));
        }
        if let Some(warning) = state_dir_warning(&config, &state_dir, &env) {
            ui.warn(warning);
        }
        if opts.dry_run {
            ui.status("dry run: nothing will be changed; the commands and requests of a real run follow");
        }
        Ok(Ctx { fx: Effects::new(ui, opts.dry_run, interrupted, env), config, state_dir })
    }

    pub fn ledger(&self) -> Result<Ledger> {
        Ledger::open(&self.state_dir, self.dry_run, self.ui.clone(), self.env.actor())
    }

    /// The ledger for a command that only reads: it creates nothing and writes nothing.
    pub fn ledger_read_only(&self) -> Result<Ledger> {
        Ledger::open_read_only(&self.state_dir, self.ui.clone(), self.env.actor())
    }

    /// Refuses a report path that would destroy what a run reads or keeps (exit 2, before
    /// anything runs): a directory, the config file, what safedeploy keeps in the state dir
    /// (the ledger, locks, platform records, bundles: `statedir::KEPT`), or one of `reads` (the
    /// logs collect-logs reads). A report of its own in the state dir is allowed: a state dir
    /// may be the workspace a pipeline writes its reports in. Operations call it before they
    /// start, with the flag as `what`; [`Ctx::write_report`] calls it again at the write.
    pub fn check_report_path(&self, path: &Path, what: &str, reads: &[PathBuf]) -> Result<()> {
        // `-` reads standard input where a tool reads; a report is a file, never one named `-`.
        if path == Path::new("-") {
            return Err(crate::usage!(
                "{what}: `-` is not a file name here (reports are written to files; stdout carries the result)"
            ));
        }
        crate::paths::not_an_option(path, what)?;
        if path.to_string_lossy().trim().is_empty() {
            return Err(crate::usage!("{what} {:?}: expected a file's name, not blanks", path.display()));
        }
        let shown = path.display();
        if path.is_dir() {
            return Err(crate::usage!("{what} {shown}: is a directory; expected a file's name"));
        }
        // What the write would fail on, said as the input's fault rather than as a fault of the
        // machine: a name past the file system's limit, a file where a directory must be.
        if path.components().any(|c| c.as_os_str().len() > 255) {
            return Err(crate::usage!(
                "{what}: a name in the path is longer than 255 bytes, the longest a file's name can be"
            ));
        }
        if let Some(file) = path.ancestors().skip(1).find(|a| a.exists() || a.is_symlink()).filter(|a| !a.is_dir()) {
            return Err(crate::usage!(
                "{what} {shown}: {} is not a directory; expected a path through directories",
                file.display()
            ));
        }
        if crate::paths::same_file(path, &self.config.path) {
            return Err(crate::usage!("{what} {shown}: is the config file; expected a file of its own"));
        }
        if let Some(kept) = crate::statedir::kept_under(&self.state_dir, path)? {
            return Err(crate::usage!(
                "{what} {shown}: would overwrite {}, which safedeploy keeps in the state dir; expected a path outside it",
                kept.display()
            ));
        }
        let at = crate::paths::resolved(path)?;
        let same = |r: &PathBuf| crate::paths::same_file(path, r) || crate::paths::resolved(r).is_ok_and(|r| r == at);
        if let Some(read) = reads.iter().find(|r| same(r)) {
            return Err(crate::usage!(
                "{what} {shown}: is {}, which this run reads; expected a file of its own",
                read.display()
            ));
        }
        Ok(())
    }

    /// Writes a report (see [`Effects::write_report`]) to a path [`Ctx::check_report_path`]
    /// allows.
    pub fn write_report(&self, path: &Path, text: &str, what: &str) -> Result<()> {
        self.check_report_path(path, what, &[])?;
        self.fx.write_report(path, text, what)
    }

    pub fn platform(&self) -> Result<Box<dyn Platform + '_>> {
        platform::for_config(&self.fx, &self.config, &self.state_dir)
    }
}
