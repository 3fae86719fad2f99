//! A real PostgreSQL server for a test: Debian's server binaries (scripts/setup installs the
//! `postgresql` package), a cluster of its own in a temporary directory, listening on a free
//! port of 127.0.0.1, waited on until it accepts connections, and stopped when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    _lease: crate::support::PortLease,
}

/// The newest `/usr/lib/postgresql/VERSION/bin` that holds the server's tools.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// PostgreSQL's tools refuse to run as root: as root they run as `nobody`.
fn as_server_user(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    pub fn start() -> Self {
        let bin = bin_dir().expect("PostgreSQL's server (/usr/lib/postgresql/*/bin/initdb): run scripts/setup, which installs Debian's postgresql package");
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // The server user (nobody, under root) owns its cluster and socket directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let data = dir.join("data");
        let mut init = as_server_user(&bin.join("initdb"));
        init.args(["-D"]).arg(&data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-locale"]);
        run(init, "initdb");
        let lease = crate::support::reserve_port();
        let port = lease.port;
        let mut start = as_server_user(&bin.join("pg_ctl"));
        start
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "120", "-o"])
            .arg(format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
                dir.display()
            ))
            .arg("start");
        run(start, "pg_ctl start");
        Postgres { tmp, bin, port, _lease: lease }
    }

    /// Runs SQL as the superuser on `db`; its output, unaligned.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn create_db(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// The SQLAlchemy URL of database `db` (psycopg 3).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql+psycopg://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = as_server_user(&self.bin.join("pg_ctl"));
        stop.args(["-D"]).arg(self.tmp.path().join("data")).args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
    }
}
