//! Ports on the local platform: an app is never handed an environment's port, a port another
//! process takes before the app binds it is picked again (never taken for the version's own
//! answer), and an environment's port held by something else is exit 3 naming the holder.
//!
//! `SAFEDEPLOY_FAILPOINT_PORTS` offers the platform's port picker chosen ports first, so each
//! race here is certain rather than hoped for.

use crate::server::{Resp, Server};
use crate::support::{Project, output};

/// The port `state.json` records for the version serving `env`.
fn app_port(p: &Project, env: &str) -> u16 {
    let text = std::fs::read_to_string(p.state.join(format!("local/envs/{env}/state.json"))).expect("state.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["port"].as_u64().expect("port") as u16
}

#[test]
fn an_app_is_never_given_an_environments_port() {
    let p = Project::new();
    // The picker is offered both environments' ports first, as the kernel may offer them
    // before production's nginx has bound its port.
    let offered = format!("{},{}", p.production_port, p.staging_port);
    p.cmd("deploy-staging").args(["--version", "v1"]).env("SAFEDEPLOY_FAILPOINT_PORTS", &offered).assert().success();
    let staging_app = app_port(&p, "staging");
    assert!(![p.staging_port, p.production_port].contains(&staging_app), "staging's app got {staging_app}");
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    // Production's nginx can still take its port.
    p.cmd("promote").env("SAFEDEPLOY_FAILPOINT_PORTS", &offered).assert().success();
    let production_app = app_port(&p, "production");
    assert!(![p.staging_port, p.production_port].contains(&production_app), "production's app got {production_app}");
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
}

#[test]
fn a_port_taken_before_the_app_binds_it_is_picked_again_not_trusted() {
    let p = Project::new();
    // Another process got the port first, and it answers every health check with 200.
    let impostor = Server::start(|_, _| Resp::new(200, "ok"));
    let a = p
        .cmd("deploy-staging")
        .args(["--version", "v1"])
        .env("SAFEDEPLOY_FAILPOINT_PORTS", impostor.port.to_string())
        .assert()
        .success();
    let (_, err) = output(&a);
    let me = std::process::id();
    assert!(
        err.contains(&format!("port {} was taken by pid {me} (", impostor.port))
            && err.contains("before v1 could listen on it"),
        "{err}"
    );
    assert!(err.contains("starting it again on another port (try 2 of 3)"), "{err}");
    assert!(impostor.hits("/health") >= 1, "the impostor answered a health check");
    assert_ne!(app_port(&p, "staging"), impostor.port);
    // What staging serves is the version itself, not the impostor.
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
    assert!(!p.state.join("local/envs/staging/starting.json").exists());
}

#[test]
fn a_version_that_never_gets_a_port_of_its_own_is_exit_3_never_a_verdict() {
    let p = Project::new();
    let impostor = Server::start(|_, _| Resp::new(200, "ok"));
    let taken = impostor.port.to_string();
    let a = p
        .cmd("deploy-staging")
        .args(["--version", "v1"])
        .env("SAFEDEPLOY_FAILPOINT_PORTS", [taken.as_str(); 3].join(","))
        .assert()
        .code(3);
    let (_, err) = output(&a);
    assert!(err.contains("deploy-staging: error: v1 could not get a port of its own in staging in 3 tries"), "{err}");
    assert_eq!(err.matches("starting it again on another port").count(), 2, "{err}");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0, "v1 is not marked bad");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM verifications"), 0);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments WHERE outcome = 'in_progress'"), 0);
    assert!(p.get("staging", "/health").is_none(), "nothing serves staging");
    assert!(!p.state.join("local/envs/staging/starting.json").exists());
    assert!(!p.state.join("local/envs/staging/state.json").exists());
}

#[test]
fn an_environment_port_held_by_another_process_is_exit_3_naming_it() {
    let p = Project::new();
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", p.production_port)).expect("hold production's port");
    let a = p.cmd("promote").assert().code(3);
    let (_, err) = output(&a);
    let me = std::process::id();
    assert!(
        err.contains(&format!(
            "nginx cannot listen on 127.0.0.1:{}: the port is held by pid {me} (",
            p.production_port
        )),
        "{err}"
    );
    assert!(err.contains("nginx did not start, so v1 took no traffic and was stopped"), "{err}");
    // Nothing was judged, nothing is left running, the record is as it was.
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0);
    assert!(!p.state.join("local/envs/production/state.json").exists());
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments WHERE outcome = 'in_progress'"), 0);
    // Once the port is free, the same promote goes through.
    drop(squatter);
    p.cmd("promote").assert().success();
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
}
