//! smoke-check: wait until an environment serves the expected version, then run the checks.
//! The command line is `safedeploy::tools::smoke_check`.
fn main() -> std::process::ExitCode {
    safedeploy::tools::smoke_check::main()
}
