//! safedeploy: what people do by hand — check a configuration, and more to come — beside the
//! The command line is `safedeploy::tools::safedeploy`.
fn main() -> std::process::ExitCode {
    safedeploy::tools::safedeploy::main()
}
