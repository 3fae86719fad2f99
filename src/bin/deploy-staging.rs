//! deploy-staging: build a version from a commit, register it, deploy it, wait until healthy.
//! The command line is `safedeploy::tools::deploy_staging`.
fn main() -> std::process::ExitCode {
    safedeploy::tools::deploy_staging::main()
}
