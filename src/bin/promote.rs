//! promote: deploy to production the very bundle that passed in staging.
//! The command line is `safedeploy::tools::promote`.
fn main() -> std::process::ExitCode {
    safedeploy::tools::promote::main()
}
