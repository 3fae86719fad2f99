//! `safedeploy-supervisor`: runs an app's command in its own process group, stamps each of its
//! output lines, and retires a warm previous version when its window ends.

use super::*;

/// The supervisor's job: run the web command, stamp each output line with the time, say when it
/// exits. SIGTERM is caught so the output is drained while the group shuts down.
pub fn supervise(argv: Vec<String>, exec: &crate::exec::Exec) -> Result<i32> {
    use std::io::Write;
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    let stamp = || crate::clock::rfc3339(crate::clock::now_ms());
    let label = exec.env.get("SAFEDEPLOY_VERSION").unwrap_or_default().to_string();
    let out = std::io::stdout();
    // The retirement is the supervisor's business: the app is not told where it is decided.
    let cmd = Cmd::new(argv)
        .env_remove("SAFEDEPLOY_RETIRE_FILE")
        .env_remove("SAFEDEPLOY_STOP_GRACE_MS")
        .env_remove(crate::exec::START_GATE);
    // Gated: the app starts only once the run that started this supervisor recorded it. Its
    // input ending first means that run ended before the record: nothing is started, so
    // nothing runs that no record names.
    if exec.env.get(crate::exec::START_GATE).is_some() && !gate_opened(std::io::stdin().lock()) {
        let _ = writeln!(
            out.lock(),
            "{} [safedeploy] {label} not started: the run that started it ended before recording it",
            stamp()
        );
        return Ok(1);
    }
    let _ = writeln!(out.lock(), "{} [safedeploy] starting {label}: {}", stamp(), cmd.display());
    if let Some(file) = exec.env.get("SAFEDEPLOY_RETIRE_FILE").map(PathBuf::from) {
        let grace = exec.env.get("SAFEDEPLOY_STOP_GRACE_MS").and_then(|g| g.parse().ok()).unwrap_or(10_000);
        let label = label.clone();
        std::thread::spawn(move || retire_when_due(&file, Duration::from_millis(grace), &label));
    }
    let status = exec.run_lines(&cmd, |line| {
        let mut o = out.lock();
        let _ = writeln!(o, "{} {line}", stamp());
        let _ = o.flush();
    })?;
    let how = status.map(|s| crate::exec::describe(&s)).unwrap_or_else(|| "unknown status".into());
    let _ = writeln!(out.lock(), "{} [safedeploy] {label} exited ({how})", stamp());
    Ok(status.and_then(|s| s.code()).unwrap_or(1))
}

/// Whether the start gate was opened: `start` read before the end of the input.
/// Only the first few bytes are read: whatever else comes is not the word.
fn gate_opened(input: impl std::io::BufRead) -> bool {
    use std::io::BufRead;
    let mut line = String::new();
    input.take(16).read_line(&mut line).is_ok() && line.trim_end() == "start"
}

/// A warm previous ends itself: once the time in `file` has passed (the platform removes the
/// file when it switches back to this version), the supervisor's whole group gets SIGTERM,
/// then SIGKILL after the grace.
///
/// While the file stays, its time can only come earlier: a later time written over it (by the
/// app, which runs as the same user) does not postpone the retirement. Its removal (a switch
/// back) forgets it, and a new window starts afresh.
///
/// Whatever the file says, a group whose working copy is gone (the state dir removed under it)
/// ends itself: nothing else would ever stop it.
pub(super) fn retire_when_due(file: &Path, grace: Duration, label: &str) {
    let mut earliest: Option<i64> = None;
    // The working copy the group runs in: gone, the state dir was removed under it (a script
    // that cleaned up its work dir) and nothing will ever stop it.
    let copy = file.to_str().and_then(|f| f.strip_suffix(".retire-at")).map(PathBuf::from);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if copy.as_ref().is_some_and(|c| !c.exists()) {
            return end_own_group(&format!("{label}'s working copy is gone (its state dir was removed)"), grace);
        }
        // Read as every state file is: a FIFO or a symlink put in its place is no time (and
        // cannot block this loop, which also watches for the working copy's removal).
        let written = crate::statedir::read_own(file).ok().flatten().map(|t| t.trim().parse::<i64>().ok());
        earliest = retire_due(earliest, written);
        if earliest.is_none_or(|d| crate::clock::now_ms() < d) {
            continue;
        }
        if std::fs::remove_file(file).is_err() {
            continue; // switched back to at this very moment: it serves again
        }
        return end_own_group(&format!("{label} was kept warm without traffic until now"), grace);
    }
}

/// The supervisor ends its whole group, saying why in the app's log: SIGTERM, then SIGKILL
/// after the grace.
pub(super) fn end_own_group(why: &str, grace: Duration) {
    use nix::sys::signal::{Signal, killpg};
    println!("{} [safedeploy] {why}; stopping it", crate::clock::rfc3339(crate::clock::now_ms()));
    let group = nix::unistd::getpgrp();
    let _ = killpg(group, Signal::SIGTERM);
    std::thread::sleep(grace);
    let _ = killpg(group, Signal::SIGKILL);
}

/// When a warm version retires, from what it knew (`earliest`) and what its retire file says
/// now (`None`: no file, a switch back; `Some(None)`: unreadable): never later than a time
/// already seen while the file stayed.
pub(super) fn retire_due(earliest: Option<i64>, written: Option<Option<i64>>) -> Option<i64> {
    match written {
        None => None,
        Some(None) => earliest,
        Some(Some(d)) => Some(earliest.map_or(d, |e| e.min(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_starts_only_when_the_gate_says_start() {
        assert!(gate_opened(&b"start\n"[..]));
        let long = vec![b's'; 1 << 20];
        for closed in [&b""[..], b"\n", b"star", b"stop\n", b"started\n", b" start\n", &long] {
            assert!(!gate_opened(closed), "{closed:?}");
        }
    }

    #[test]
    fn a_retire_time_can_come_earlier_never_later_while_the_file_stays() {
        assert_eq!(retire_due(None, Some(Some(100))), Some(100));
        assert_eq!(retire_due(Some(100), Some(Some(9_999_999))), Some(100), "postponed");
        assert_eq!(retire_due(Some(100), Some(Some(50))), Some(50));
        assert_eq!(retire_due(Some(100), Some(None)), Some(100), "unreadable");
        assert_eq!(retire_due(Some(100), None), None, "switched back");
        assert_eq!(retire_due(None, Some(Some(500))), Some(500), "a new window");
    }
}
