//! Every integration test in one binary, as ripgrep, cargo and uv have: one link instead of
//! one per file. Each file of tests/ is a module (`cargo nextest run -E 'test(/^faults::/)'`
//! runs one); `support` holds what they share.
//!
//! Measured on this 2-core machine (`cargo test --no-run`, warm, one change at a time): a
//! change in `src/` rebuilt the tests in 14–16 s instead of 31–33 s with 26 binaries; a change
//! in one test file in 2.6–2.9 s instead of 1.5 s; the test executables take 48 MB of disk
//! instead of 1.1 GB.
#![allow(dead_code)]

#[path = "support/aws_cli.rs"]
mod aws_cli;
#[path = "support/eb_sim.rs"]
mod eb_sim;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/prom.rs"]
mod prom;
#[path = "support/server.rs"]
mod server;
mod support;

mod adoption;
mod alert;
mod bad_input;
mod canary;
mod cli;
mod collect_logs;
mod config_sweep;
mod dry_run;
mod elasticbeanstalk;
mod faults;
mod first_hour;
mod gate;
mod hostile;
mod jenkins_groovy;
mod metrics;
mod migrations;
mod node_example;
mod pipeline;
mod ports;
mod pre_traffic;
mod report;
mod rollback;
mod secrets;
mod smoke;
mod traces;
mod zero_downtime;
