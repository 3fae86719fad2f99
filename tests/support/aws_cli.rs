//! The Elastic Beanstalk tests' `aws`: the real aws CLI from the test venv, imported once by a
//! fork server (`aws_forkserver.py`) and forked for each command the platform runs. The
//! command is the CLI's own: its parsing, its requests, its errors and its JSON. A plain run of
//! the CLI spends most of its second importing botocore and reading its models; forked from
//! the warm server, which has done both, a command takes about a sixth of that (README: the
//! Elastic Beanstalk tests), and the EB tests run hundreds. One test keeps the plain entry
//! point (`bin/aws`), so the CLI as a user installs it is run too, and one holds the two to
//! the same answers.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

pub struct AwsCli {
    /// The executable to name as `aws` in a config.
    pub path: PathBuf,
    server: Child,
    /// Closed when this is dropped, or when the test's process ends however it ends: the
    /// server ends on it.
    lifeline: Option<ChildStdin>,
    /// The end of the server's command line (its script and socket), which its forks share and
    /// a client's (which names the socket after its own script) does not.
    cmdline_tail: Vec<u8>,
    /// Holds the wrapper and the socket.
    _dir: tempfile::TempDir,
}

impl AwsCli {
    /// Starts the server with this environment (what a warm-up may read), and returns once it
    /// listens.
    pub fn start(env: &[(String, String)]) -> AwsCli {
        let python = crate::support::venv().join("bin/python");
        let support = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support");
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("aws.sock");
        let quote = |p: &std::path::Path| shlex::try_quote(&p.display().to_string()).expect("no NUL").into_owned();
        let path = dir.path().join("aws");
        let script = format!(
            "#!/bin/sh\nexec {} -I {} {} \"$@\"\n",
            quote(&python),
            quote(&support.join("aws_client.py")),
            quote(&socket)
        );
        std::fs::write(&path, script).expect("aws");
        let mut perms = std::fs::metadata(&path).expect("aws").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("chmod aws");
        let forkserver = support.join("aws_forkserver.py");
        let mut server = Command::new(&python)
            .arg("-I")
            .arg(&forkserver)
            .arg(&socket)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the aws fork server");
        let lifeline = server.stdin.take();
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready", "the aws fork server did not start (its error is above)");
        let cmdline_tail = format!("\0{}\0{}\0", forkserver.display(), socket.display()).into_bytes();
        AwsCli { path, server, lifeline, cmdline_tail, _dir: dir }
    }

    /// How many processes the server is now: itself, one per client it serves and one per
    /// command running (each a fork, so each has the server's command line).
    pub fn processes(&self) -> usize {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|cmdline| cmdline.ends_with(&self.cmdline_tail))
            .count()
    }
}

impl Drop for AwsCli {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
