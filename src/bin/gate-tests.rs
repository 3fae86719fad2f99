//! gate-tests: run the app's tests; pass only on a fresh, green JUnit report.
//! The command line is `safedeploy::tools::gate_tests`.
fn main() -> std::process::ExitCode {
    safedeploy::tools::gate_tests::main()
}
