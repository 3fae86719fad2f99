//! rollback: restore the last known good version and record the incident.
//! The command line is `safedeploy::tools::rollback`.
fn main() -> std::process::ExitCode {
    safedeploy::tools::rollback::main()
}
