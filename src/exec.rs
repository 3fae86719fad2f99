//! The only place that starts a process (through duct), and so the place where `--dry-run`
//! holds for commands: a command that changes something is printed, copy-pastable, and not run;
//! a read-only command (`git rev-parse`) runs in a dry run too, because reads still happen.
//!
//! A failed command reports its argv, exit status and the tail of its output. Long commands are
//! waited on in short slices so SIGINT/SIGTERM and timeouts are noticed, and the child is killed.

use crate::error::Error;
use crate::ui::Ui;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Variables by which Jenkins' process-tree killer finds what a build left behind. A deployed
/// app must not carry them, or Jenkins kills it when the stage ends.
pub const JENKINS_COOKIES: &[&str] =
    &["BUILD_ID", "JENKINS_NODE_COOKIE", "HUDSON_COOKIE", "HUDSON_SERVER_COOKIE", "JENKINS_SERVER_COOKIE"];

/// A command to run: argv, working directory, environment changes, time limit.
#[derive(Debug, Clone)]
pub struct Cmd {
    argv: Vec<String>,
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    /// Starts from this environment instead of the caller's (then `env` is applied).
    base_env: Option<Vec<(String, String)>>,
    timeout: Option<Duration>,
    /// Where the running command's process group id is kept (see [`end_recorded_group`]).
    group_file: Option<PathBuf>,
}

impl Cmd {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            dir: None,
            env: vec![],
            env_remove: vec![],
            base_env: None,
            timeout: None,
            group_file: None,
        }
    }

    /// `sh -c SCRIPT`, for configured shell lines (build commands, Procfile entries).
    pub fn shell(script: &str) -> Self {
        Cmd::new(["sh", "-c", script])
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_remove.push(key.into());
        self
    }
    /// The child starts from `vars` instead of the caller's environment; variables set with
    /// [`Cmd::env`] are added on top (and so win). `removed` names what the caller had and the
    /// child does not get, for the plan line.
    pub fn base_env(mut self, vars: Vec<(String, String)>, removed: Vec<String>) -> Self {
        self.base_env = Some(vars);
        self.env_remove = removed;
        self
    }
    /// Keeps the command's process group id in `path` while it runs.
    pub fn group_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.group_file = Some(path.into());
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The command as a line a person can paste into a shell.
    pub fn display(&self) -> String {
        let mut parts = Vec::new();
        if let Some(dir) = &self.dir {
            parts.push(format!("cd {} &&", quote(&dir.to_string_lossy())));
        }
        for k in &self.env_remove {
            parts.push(format!("env -u {k}"));
        }
        for (k, v) in &self.env {
            // A secret-named variable (an app's API_TOKEN from the config) is shown, not its value.
            let v = if crate::redact::is_secret_name(k) { crate::redact::MASK.to_string() } else { quote(v) };
            parts.push(format!("{k}={v}"));
        }
        parts.extend(self.argv.iter().map(|a| quote(a)));
        parts.join(" ")
    }

    /// The child's process; it starts from `env` (the caller's environment, read once) unless
    /// the command has a base environment of its own.
    fn expression(&self, env: &crate::environ::Environ) -> Result<duct::Expression> {
        let (program, args) = self.argv.split_first().ok_or_else(|| crate::usage!("empty command"))?;
        let mut e = duct::cmd(program, args.iter().map(OsString::from));
        if let Some(dir) = &self.dir {
            e = e.dir(dir);
        }
        // One full environment: duct gives an inner `env_remove` precedence over an outer
        // `env`, so removing a variable and then setting it would lose the value.
        let mut vars: Vec<(String, String)> = match &self.base_env {
            Some(base) => base.clone(),
            None => env.vars().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        vars.retain(|(k, _)| !self.env_remove.contains(k) && !self.env.iter().any(|(s, _)| s == k));
        vars.extend(self.env.iter().cloned());
        Ok(e.full_env(vars))
    }
}

/// A word as a POSIX shell reads it back (`a b` → `'a b'`, `$x` → `'$x'`), on one line: a word
/// with a control character (a newline, say) in ANSI-C quoting (`$'a\nb'`), which plain quotes
/// would carry onto a second line.
pub fn quote(s: &str) -> String {
    if s.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    shlex::try_quote(s).map(|c| c.into_owned()).unwrap_or_else(|_| format!("{s:?}"))
}

/// A command that exited unsuccessfully: argv, status and the tail of its output.
#[derive(Debug, thiserror::Error)]
#[error("command failed ({status}): {argv}{tail}")]
pub struct CommandError {
    pub argv: String,
    pub status: String,
    pub tail: String,
}

/// The last `lines` non-blank lines of some output, indented under an error message ("" if none).
pub fn tail_of(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    if all.is_empty() { String::new() } else { format!("\n    {}", all[start..].join("\n    ")) }
}

pub fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

/// Ends the process group a run killed with -9 left behind, as recorded in `path` by
/// [`Cmd::group_file`], if it still runs under `dir` (so a reused pid is never signalled).
/// Returns whether there was one.
pub fn end_recorded_group(path: &Path, dir: &Path) -> bool {
    let Some(pgid) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<i32>().ok()) else {
        return false;
    };
    let ours = crate::procs::group_works_under(pgid, dir);
    if ours {
        crate::procs::end_group(pgid, GROUP_GRACE);
    }
    let _ = std::fs::remove_file(path);
    ours
}

/// The variable that tells the supervisor to wait at its [`Gate`] (read from its stdin).
pub const START_GATE: &str = "SAFEDEPLOY_START_GATE";

/// The write end of a gated process's stdin ([`Exec::spawn_gated`]). Opened (`start`), the
/// supervisor runs the app; dropped unopened (the run failed, or was killed, before it recorded
/// the process), the supervisor reads the end of its input and exits without starting anything,
/// so no process runs that no record names.
#[derive(Debug)]
pub struct Gate(os_pipe::PipeWriter);

impl Gate {
    /// Lets the supervisor start the app. A supervisor already gone is no error here: the health
    /// wait that follows finds it exited and says so.
    pub fn open(mut self) -> Result<()> {
        use std::io::Write;
        match self.0.write_all(b"start\n") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("opening the start gate"),
            _ => Ok(()),
        }
    }
}

/// Runs commands, honouring `--dry-run`, timeouts and interruption.
#[derive(Debug, Clone)]
pub struct Exec {
    pub dry_run: bool,
    pub ui: Ui,
    pub interrupted: Arc<AtomicBool>,
    /// What children inherit.
    pub env: crate::environ::Environ,
}

/// How long a child's process group gets between SIGTERM and SIGKILL when it is ended.
const GROUP_GRACE: Duration = Duration::from_secs(2);

/// How long to wait between checks for interruption while a child runs.
const SLICE: Duration = Duration::from_millis(50);

impl Exec {
    /// Runs a read-only command, also in a dry run; returns its trimmed stdout.
    pub fn read(&self, cmd: &Cmd) -> Result<String> {
        self.ui.detail(format!("+ {}", cmd.display()));
        let out = self.wait(cmd, cmd.expression(&self.env)?.stdout_capture().stderr_capture().unchecked())?;
        self.check(cmd, &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs a command that changes something, capturing its output; fails on a non-zero exit.
    /// In a dry run it is printed and `None` returned.
    pub fn run(&self, cmd: &Cmd) -> Result<Option<Output>> {
        if self.plan(cmd)? {
            return Ok(None);
        }
        let out = self.wait(cmd, cmd.expression(&self.env)?.stderr_to_stdout().stdout_capture().unchecked())?;
        self.check(cmd, &out)?;
        Ok(Some(out))
    }

    /// Runs a command capturing stdout and stderr apart, without judging its exit status: the
    /// caller reads the failure (the aws CLI's stderr says whether to retry). A command that
    /// `changes` something is only printed in a dry run (`None`); a read runs in a dry run too.
    pub fn capture(&self, cmd: &Cmd, changes: bool) -> Result<Option<Output>> {
        if changes && self.plan(cmd)? {
            return Ok(None);
        }
        if !changes {
            self.ui.detail(format!("+ {}", cmd.display()));
        }
        self.wait(cmd, cmd.expression(&self.env)?.stdout_capture().stderr_capture().unchecked()).map(Some)
    }

    /// Runs a command whose output streams live to our stderr (test runners: the console is where
    /// a person reads their failures), line by line through the redactor: a test that prints a
    /// credential does not put it in the build log. Returns the exit status without judging it.
    pub fn run_streamed(&self, cmd: &Cmd) -> Result<Option<ExitStatus>> {
        if self.plan(cmd)? {
            return Ok(None);
        }
        let (reader, writer) = os_pipe::pipe().context("creating a pipe")?;
        let (done, finished) = std::sync::mpsc::channel();
        let ui = self.ui.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(reader);
            let mut buf = Vec::new();
            while matches!(lines.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                ui.passthrough(String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']));
                buf.clear();
            }
            let _ = done.send(());
        });
        let out = self.wait(cmd, cmd.expression(&self.env)?.stderr_to_stdout().stdout_file(writer).unchecked())?;
        // The output ends when the last writer closes; a lingering grandchild may hold it open.
        let _ = finished.recv_timeout(Duration::from_secs(2));
        Ok(Some(out.status))
    }

    /// Starts a long-lived process in its own process group with stdin closed and stdout/stderr
    /// appended to `log`, without the Jenkins cookies. In a dry run it is printed, `None` returned.
    pub fn spawn_detached(&self, cmd: &Cmd, log: &Path) -> Result<Option<duct::Handle>> {
        if self.plan(cmd)? {
            return Ok(None);
        }
        Ok(Some(self.start_detached(cmd, log, None)?))
    }

    /// As [`Exec::spawn_detached`], for a command under the local platform's supervisor that
    /// waits at a [`Gate`]: it runs the app only once the caller, having recorded the process,
    /// opens the gate.
    pub fn spawn_gated(&self, cmd: &Cmd, log: &Path) -> Result<Option<(duct::Handle, Gate)>> {
        let cmd = cmd.clone().env(START_GATE, "stdin");
        if self.plan(&cmd)? {
            return Ok(None);
        }
        let (reader, writer) = os_pipe::pipe().context("making the start gate's pipe")?;
        Ok(Some((self.start_detached(&cmd, log, Some(reader))?, Gate(writer))))
    }

    fn start_detached(&self, cmd: &Cmd, log: &Path, stdin: Option<os_pipe::PipeReader>) -> Result<duct::Handle> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = file.try_clone()?;
        let mut cmd = cmd.clone();
        cmd.env_remove.extend(JENKINS_COOKIES.iter().map(|k| k.to_string()));
        let expr = cmd.expression(&self.env)?;
        let expr = match stdin {
            Some(r) => expr.stdin_file(r),
            None => expr.stdin_null(),
        };
        expr.stdout_file(file)
            .stderr_file(err)
            .unchecked()
            .before_spawn(|c| {
                use std::os::unix::process::CommandExt;
                c.process_group(0);
                Ok(())
            })
            .start()
            .with_context(|| format!("starting {}", cmd.display()))
    }

    /// Runs a command with stdout and stderr merged, handing each line to `on_line` as it comes;
    /// returns the exit status once the output closes. Used by the local platform's supervisor.
    pub fn run_lines(&self, cmd: &Cmd, mut on_line: impl FnMut(&str)) -> Result<Option<ExitStatus>> {
        if self.plan(cmd)? {
            return Ok(None);
        }
        let reader = cmd
            .expression(&self.env)?
            .stdin_null()
            .stderr_to_stdout()
            .unchecked()
            .reader()
            .with_context(|| format!("starting {}", cmd.display()))?;
        let mut lines = BufReader::new(&reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if lines.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf);
            on_line(text.trim_end_matches(['\n', '\r']));
        }
        let status = reader.try_wait()?.map(|o| o.status);
        Ok(status)
    }

    /// A side effect that is not a command (a signal, a state file): announced as a `#` line of
    /// the plan in a dry run, run otherwise. With `run` and `spawn_detached` this is the whole
    /// of what a platform may change, so a dry run cannot change anything.
    pub fn effect<T>(&self, what: impl FnOnce() -> String, f: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        if self.dry_run {
            self.ui.plan(format!("# would {}", what()));
            return Ok(None);
        }
        crate::failpoint::step(|| format!("# {}", what()))?;
        f().map(Some)
    }

    /// Creates `dir` and its parents; a directory that exists is left alone and not mentioned,
    /// so a dry run says "would create" only for what a real run would create.
    pub fn create_dir(&self, dir: &std::path::Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        self.effect(
            || format!("create {}", dir.display()),
            || std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display())),
        )?;
        Ok(())
    }

    /// Prints the command when this is a dry run; true means "do not run it".
    fn plan(&self, cmd: &Cmd) -> Result<bool> {
        if self.dry_run {
            self.ui.plan(format!("+ {}", cmd.display()));
        } else {
            crate::failpoint::step(|| format!("+ {}", cmd.display()))?;
            self.ui.detail(format!("+ {}", cmd.display()));
        }
        Ok(self.dry_run)
    }

    /// Runs `expr` in a process group of its own, waiting in slices so SIGINT/SIGTERM and the
    /// time limit are noticed. On either the whole group is ended (TERM, then KILL), so a test
    /// runner's children or a build's pip do not outlive it; what the command left running in
    /// its group when it exited is ended too. With [`Cmd::group_file`] the group's id is
    /// recorded while it runs, so a later run can end what a killed one left.
    fn wait(&self, cmd: &Cmd, expr: duct::Expression) -> Result<Output> {
        let expr = expr.before_spawn(|c| {
            use std::os::unix::process::CommandExt;
            c.process_group(0);
            Ok(())
        });
        let handle = expr.start().with_context(|| format!("could not start `{}`", cmd.display()))?;
        let pgid = handle.pids().first().copied().unwrap_or(0) as i32;
        if let Some(f) = &cmd.group_file {
            let _ = std::fs::write(f, pgid.to_string());
        }
        let started = Instant::now();
        let ended = |why: Error| -> anyhow::Error {
            crate::procs::end_group(pgid, GROUP_GRACE);
            let _ = handle.kill();
            why.into()
        };
        let result = loop {
            if let Some(out) = handle.wait_timeout(SLICE)? {
                // Left behind in the group (`server &`): ended with it.
                crate::procs::end_group(pgid, GROUP_GRACE);
                break Ok(out.clone());
            }
            if self.interrupted.load(Ordering::SeqCst) {
                break Err(ended(Error::interrupted(format!(
                    "interrupted while running `{}`; it was stopped, with its process group",
                    cmd.display()
                ))));
            }
            if let Some(limit) = cmd.timeout
                && started.elapsed() > limit
            {
                break Err(ended(Error::could_not_act(format!(
                    "`{}` timed out after {}s and was stopped, with its process group",
                    cmd.display(),
                    limit.as_secs()
                ))));
            }
        };
        if let Some(f) = &cmd.group_file {
            let _ = std::fs::remove_file(f);
        }
        result
    }

    fn check(&self, cmd: &Cmd, out: &Output) -> Result<()> {
        if out.status.success() {
            return Ok(());
        }
        let mut tail = out.stderr.clone();
        tail.extend_from_slice(&out.stdout);
        Err(CommandError { argv: cmd.display(), status: describe(&out.status), tail: tail_of(&tail, 15) }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_copy_pastable() {
        let c = Cmd::new(["git", "archive", "-o", "/tmp/a b.tar", "HEAD"]).dir("/x y").env("PORT", "80");
        assert_eq!(c.display(), "cd '/x y' && PORT=80 git archive -o '/tmp/a b.tar' HEAD");
    }

    /// Each word comes back whole from a shell, and on one line: plain, spaced, with `$`, with
    /// quotes and backslashes, and with control characters (newline, tab, ESC, DEL, C1).
    #[test]
    fn a_quoted_word_is_one_line_that_a_shell_reads_back_as_it_was() {
        for word in
            ["plain", "a b", "$x?", r"\s*", "it's", "\n*", "a\tb\r", "'\\\n'", "\u{1b}[31m", "x\u{7f}", "y\u{85}z", ""]
        {
            let q = quote(word);
            assert!(!q.contains(['\n', '\r']), "{word:?} → {q}");
            let out =
                std::process::Command::new("bash").args(["-c", &format!("printf %s {q}")]).output().expect("bash");
            assert_eq!(String::from_utf8_lossy(&out.stdout), word, "{q}");
        }
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_of(b"a\nb\n\nc\n", 2), "\n    b\n    c");
        assert_eq!(tail_of(b"", 2), "");
    }
}
