//! collect-logs: fetch, filter, group and report an environment's errors.
//! The command line is `safedeploy::tools::collect_logs`.
fn main() -> std::process::ExitCode {
    safedeploy::tools::collect_logs::main()
}
