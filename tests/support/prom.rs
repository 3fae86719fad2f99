//! A real Prometheus server for a test: the binary scripts/setup unpacks from Debian's package
//! into `.tools/bin`, its own storage in a temporary directory, listening on a free port of
//! 127.0.0.1, scraping the targets given every 200 ms, waited on until it answers queries, and
//! stopped when dropped.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

pub struct Prometheus {
    _tmp: tempfile::TempDir,
    child: std::process::Child,
    pub port: u16,
    _lease: crate::support::PortLease,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`).
    pub fn start(targets: &[String]) -> Self {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/prometheus");
        assert!(bin.is_file(), "Prometheus ({}): run scripts/setup, which fetches Debian's package", bin.display());
        let tmp = tempfile::tempdir().expect("tempdir");
        let lease = crate::support::reserve_port();
        let port = lease.port;
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = tmp.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .expect("config");
        let child = std::process::Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tmp.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { _tmp: tmp, child, port, _lease: lease };
        p.wait_until(|| p.query("vector(1)").is_some(), "Prometheus answers queries");
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query's single value, if it has one.
    pub fn query(&self, q: &str) -> Option<f64> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().ok()?;
        let r = client.get(format!("{}/api/v1/query", self.url())).query(&[("query", q)]).send().ok()?;
        let doc: serde_json::Value = r.json().ok()?;
        doc["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits (bounded: a minute) until `cond` holds.
    pub fn wait_until(&self, cond: impl Fn() -> bool, what: &str) {
        let until = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < until, "waited a minute for: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
