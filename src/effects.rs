//! What a run changes or learns the world through: the console, the command and request
//! chokepoints (where `--dry-run` holds), the interrupt flag and the environment read once.
//! Operations reach it through their context; platforms are handed it directly.

use crate::environ::Environ;
use crate::error::Error;
use crate::exec::Exec;
use crate::http::Http;
use crate::ui::Ui;
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// run it is announced instead. `what` names it in the plan line. Operations write through
    /// `Ctx::write_report`, which first refuses a path that would destroy what a run keeps.
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

    /// Sleeps `d`, waking early with an interrupted error (`state` says what is left) when
    /// SIGINT/SIGTERM arrives: every pause of a polling loop or a bake.
    pub fn nap(&self, d: std::time::Duration, state: impl Fn() -> String) -> Result<()> {
        let until = std::time::Instant::now() + d;
        loop {
            self.check_interrupt(&state)?;
            let now = std::time::Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(std::time::Duration::from_millis(50)));
        }
    }
}
