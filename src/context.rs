//! What every operation is handed: the [`Effects`] (console, the command and request
//! chokepoints, the dry-run switch, the interrupt flag, the environment read once), the loaded
//! config and the state dir. Platforms are given the effects and their own settings, not this.

use crate::config::Config;
use crate::environ::Environ;
use crate::error::Error;
use crate::exec::Exec;
use crate::http::Http;
use crate::ledger::Ledger;
use crate::platform::{self, Platform};
use crate::ui::Ui;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The common options, as plain data (clap stays in `cli`).
#[derive(Debug, Clone, Default)]
pub struct GlobalOptions {
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
}

/// Everything through which a run changes or learns about the world.
pub struct Effects {
    pub ui: Ui,
    pub dry_run: bool,
    pub exec: Exec,
    pub http: Http,
    pub interrupted: Arc<AtomicBool>,
    pub env: Environ,
}

impl Effects {
    pub fn new(ui: Ui, dry_run: bool, interrupted: Arc<AtomicBool>, env: Environ) -> Self {
        let exec = Exec { dry_run, ui: ui.clone(), interrupted: interrupted.clone(), env: env.clone() };
        let http = Http::new(dry_run, ui.clone());
        Effects { ui, dry_run, exec, http, interrupted, env }
    }

    /// Writes a report a person or Jenkins reads (JUnit, the error report), redacted; in a dry
    /// run it is announced instead. `what` names it in the plan line.
    pub fn write_report(&self, path: &std::path::Path, text: &str, what: &str) -> Result<()> {
        use anyhow::Context as _;
        self.exec.effect(
            || format!("write {what} to {}", path.display()),
            || {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(path, self.ui.redactor.redact(text))
                    .with_context(|| format!("writing {}", path.display()))
            },
        )?;
        Ok(())
    }

    /// Fails with exit 130 when SIGINT/SIGTERM has arrived; `state` describes what is left.
    pub fn check_interrupt(&self, state: impl FnOnce() -> String) -> Result<()> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(Error::interrupted(format!("interrupted; {}", state())).into());
        }
        Ok(())
    }
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

impl Ctx {
    pub fn load(opts: &GlobalOptions, ui: Ui, interrupted: Arc<AtomicBool>, env: Environ) -> Result<Ctx> {
        let path = Config::locate(opts.config.as_deref())?;
        let config = Config::load(&path)?;
        // Secrets the config knows of are masked wherever their values appear: values under
        // secret-looking names, and the variables it names as holding a webhook or a key.
        for v in &config.secrets {
            ui.redactor.add_value(v.clone());
        }
        let mut named = vec![&config.logs.slack_webhook_env, &config.logs.datadog_api_key_env];
        if let Some(dd) = &config.smoke.datadog {
            named.extend([&dd.api_key_env, &dd.app_key_env]);
        }
        for var in named {
            if let Some(v) = env.get(var) {
                ui.redactor.add_value(v);
            }
        }
        let state_dir = opts.state_dir.clone().unwrap_or_else(|| config.dir.join(".safedeploy"));
        // The state dir's paths go on the app's PATH (its build paths): a ':' would split them.
        if state_dir.to_string_lossy().contains([':', '\n', '\0']) {
            return Err(crate::usage!(
                "--state-dir {:?}: a state dir's path must not contain ':' or a newline (it is put on the app's PATH)",
                state_dir.display()
            ));
        }
        if opts.dry_run {
            ui.status("dry run: nothing will be changed; the commands and requests of a real run follow");
        }
        Ok(Ctx { fx: Effects::new(ui, opts.dry_run, interrupted, env), config, state_dir })
    }

    pub fn ledger(&self) -> Result<Ledger> {
        Ledger::open(&self.state_dir, self.dry_run, self.ui.clone(), self.env.actor())
    }

    pub fn platform(&self) -> Result<Box<dyn Platform + '_>> {
        platform::for_config(&self.fx, &self.config, &self.state_dir)
    }
}
