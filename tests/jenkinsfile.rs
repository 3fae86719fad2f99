//! The Jenkinsfile composes the real binaries: every `sh` step that calls one runs, in stage
//! order, against the local platform — then the `post { failure }` steps — so a flag renamed in
//! a binary but not in the Jenkinsfile fails here.

mod support;
use support::{BINARIES, Project};

/// The `sh '...'` steps of the Jenkinsfile, in order, split into (stages, post-failure).
fn steps() -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Jenkinsfile"))
        .expect("Jenkinsfile");
    let (main, post) = text.split_once("post {\n        failure").expect("a post { failure } block");
    let extract = |s: &str| -> Vec<String> {
        s.lines()
            .filter_map(|l| l.trim().strip_prefix("sh '").and_then(|r| r.strip_suffix('\'')))
            .filter(|cmd| BINARIES.iter().any(|b| cmd.starts_with(&format!("{b} ")) || cmd == b))
            .map(str::to_string)
            .collect()
    };
    (extract(main), extract(post))
}

fn run(p: &Project, step: &str) -> std::process::Output {
    let bin_dir = assert_cmd::cargo::cargo_bin("gate-tests").parent().expect("dir").to_path_buf();
    std::process::Command::new("sh")
        .args(["-c", step])
        .current_dir(&p.app)
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .env("SAFEDEPLOY_STATE_DIR", &p.state)
        .env("SAFEDEPLOY_CONFIG", p.config_path())
        .env("SAFEDEPLOY_DRY_RUN", "false")
        .env("VERSION_LABEL", "build-7")
        .env("BUILD_TAG", "jenkins-url-shortener-7")
        .output()
        .expect("sh")
}

#[test]
fn every_jenkinsfile_step_runs_in_order_and_the_failure_path_is_safe() {
    let (main, post) = steps();
    let names: Vec<&str> = main.iter().map(|s| s.split_whitespace().next().unwrap_or_default()).collect();
    assert_eq!(names, ["gate-tests", "deploy-staging", "smoke-check", "promote", "smoke-check"]);
    assert_eq!(post.len(), 2, "{post:?}");

    let p = Project::new();
    for step in &main {
        let out = run(&p, step);
        assert!(out.status.success(), "`{step}` failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(p.served_version("production").as_deref(), Some("build-7"));
    // In post { failure } after a good build, rollback is a no-op and the report still comes.
    for step in &post {
        let out = run(&p, step);
        assert!(out.status.success(), "`{step}` failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(p.app.join("error_hunt.txt").exists());
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
    assert_eq!(p.served_version("production").as_deref(), Some("build-7"));
}
