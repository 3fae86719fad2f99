//! The Jenkinsfile composes the real binaries: every `sh` step that calls one runs, in stage
//! order, against the local platform — then the `post { failure }` steps — so a flag renamed in
//! a binary but not in the Jenkinsfile fails here.

mod support;
use support::Project;

/// The Jenkinsfile's steps, split into (stages, post-failure).
fn steps() -> (Vec<String>, Vec<String>) {
    let text = support::repo_file("Jenkinsfile");
    let (main, post) = text.split_once("post {\n        failure").expect("a post { failure } block");
    (support::jenkins_steps(main), support::jenkins_steps(post))
}

fn run(p: &Project, step: &str) -> std::process::Output {
    p.sh_step(step)
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
    assert_eq!(post.len(), 3, "rollback, collect-logs, the report: {post:?}");

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
    let page = std::fs::read_to_string(p.app.join("safedeploy-report/index.html")).expect("the report page");
    assert!(page.contains("data-key=\"deployments.count\" data-value=\"2\""), "{page}");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
    assert_eq!(p.served_version("production").as_deref(), Some("build-7"));
}

/// A team's Jenkinsfile (installed tools) and the shared library's step: their safedeploy
/// steps run, in order, against an app whose config sits at its root.
#[test]
fn the_team_jenkinsfile_and_the_shared_library_step_run_their_steps_in_order() {
    for file in ["examples/team-app/Jenkinsfile", "vars/safedeployPipeline.groovy"] {
        let text = support::repo_file(file);
        let (main, post) = text.rsplit_once("failure {").expect("a post { failure } block");
        let (main, post) = (support::jenkins_steps(main), support::jenkins_steps(post));
        let names: Vec<&str> = main.iter().map(|s| s.split_whitespace().next().unwrap_or_default()).collect();
        assert_eq!(
            names,
            ["safedeploy", "gate-tests", "deploy-staging", "smoke-check", "promote", "smoke-check"],
            "{file}"
        );
        assert_eq!(post.len(), 2, "{file}: {post:?}");
        let p = Project::new();
        for step in main.iter().chain(&post) {
            let out = p
                .sh_step(step)
                .env("SAFEDEPLOY_DRY_RUN", "false")
                .env("VERSION_LABEL", "build-9")
                .env("BUILD_TAG", "jenkins-team-9")
                .env("SAFEDEPLOY_FROM", "staging")
                .env("SAFEDEPLOY_TO", "production")
                .output()
                .expect("sh");
            assert!(out.status.success(), "{file}: `{step}` failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        assert_eq!(p.served_version("production").as_deref(), Some("build-9"), "{file}");
        assert!(p.app.join("error_hunt.txt").exists(), "{file}");
    }
}
