//! What every operation is handed: the [`Effects`], the loaded config and the state dir.
//! Platforms are given the effects and their own settings, not this.

use crate::config::Config;
pub use crate::effects::Effects;
use crate::environ::Environ;
use crate::ledger::Ledger;
use crate::platform::{self, Platform};
use crate::ui::Ui;
use anyhow::Result;
use std::path::PathBuf;
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
