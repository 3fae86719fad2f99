//! safedeploy-supervisor: the local platform's process supervisor (started by the platform, not
//! by people): runs the web command and timestamps every line of its output.
use clap::Parser;
use safedeploy::ui::Ui;

/// Run CMD, writing each output line to stdout with a UTC timestamp. Started by the local platform.
#[derive(Parser)]
#[command(name = "safedeploy-supervisor", version)]
struct Args {
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let env = safedeploy::environ::Environ::from_process();
    let ui = Ui::new("safedeploy-supervisor", &env);
    let exec = safedeploy::exec::Exec { dry_run: false, ui: ui.clone(), interrupted: Default::default(), env };
    match safedeploy::platform::local::supervise(args.command, &exec) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            ui.error(&e);
            std::process::ExitCode::from(safedeploy::error::exit::COULD_NOT_ACT)
        }
    }
}
