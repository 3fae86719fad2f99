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
                let mut file = open_report(path, what)?;
                std::io::Write::write_all(&mut file, self.ui.redactor.redact(text).as_bytes())
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

/// Opens a report's file for writing, emptied. A FIFO is opened without waiting for a reader:
/// with none, the run would hang there, deaf to SIGTERM (the open is restarted after the
/// signal), so it is exit 2; with one (`--out /dev/stdout | less`), it is written as a file is.
fn open_report(path: &std::path::Path, what: &str) -> Result<std::fs::File> {
    use anyhow::Context as _;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(!fifo);
    if fifo {
        options.custom_flags(nix::libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Err(e) if fifo && e.raw_os_error() == Some(nix::libc::ENXIO) => {
            return Err(crate::usage!(
                "{what} {}: is a FIFO that no process reads, so it could never be written; expected a file, or a FIFO being read",
                path.display()
            ));
        }
        other => other.with_context(|| format!("writing {}", path.display()))?,
    };
    if fifo {
        // Written whole, as to a file: a reader slower than the report waits for it.
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(file)
}
