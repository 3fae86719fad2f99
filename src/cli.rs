//! The command-line surface shared by every binary: the flattened common flags (each with its
//! `SAFEDEPLOY_*` variable), and [`run`], which loads the context, runs one operation, prints the
//! result and maps it to the exit code. This is the only module that knows clap.

use crate::Outcome;
use crate::context::{Ctx, GlobalOptions};
use crate::environ::Environ;
use crate::error::{exit, kind_of};
use crate::ui::Ui;
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Boolean values as Jenkins passes them: `1`/`true`/`yes`/`on` are true; `0`, `false`, `no`,
/// `off` and the empty string are false.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "" | "0" | "false" | "no" | "off" | "n" => Ok(false),
        other => Err(format!("expected true/false/1/0 or empty, got {other:?}")),
    }
}

/// Flags every binary takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// safedeploy.toml to use [default: found in the current dir or its parents]
    #[arg(long, env = "SAFEDEPLOY_CONFIG", value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Ledger and local-platform state; also $SAFEDEPLOY_STATE_DIR (empty: unset) [default:
    /// ~/.local/state/safedeploy/APP, APP the config's app.name]
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Print every command and request a real run would make; change nothing
    #[arg(long, env = "SAFEDEPLOY_DRY_RUN", global = true)]
    pub dry_run: bool,
    /// Machine-readable summary on stdout (diagnostics stay on stderr)
    #[arg(long, env = "SAFEDEPLOY_JSON", global = true)]
    pub json: bool,
    /// More detail: every command and request as it runs
    #[arg(short, long, env = "SAFEDEPLOY_VERBOSE", global = true)]
    pub verbose: bool,
    /// Only errors and the result
    #[arg(short, long, env = "SAFEDEPLOY_QUIET", global = true)]
    pub quiet: bool,
    /// Colour: only on a terminal unless asked; NO_COLOR is honoured
    #[arg(long, env = "SAFEDEPLOY_COLOR", global = true, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}

impl CommonArgs {
    fn ui(&self, tool: &'static str, env: &Environ) -> Ui {
        let mut ui = Ui::new(tool, env);
        ui.json = self.json;
        ui.verbosity = if self.quiet { -1 } else { i8::from(self.verbose) };
        ui
    }

    pub fn options(&self) -> GlobalOptions {
        GlobalOptions {
            config: self.config.clone(),
            state_dir: self.state_dir.clone(),
            dry_run: self.dry_run,
            config_optional: false,
        }
    }
}

fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once, as a person pressing Ctrl-C twice expects.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, exit::INTERRUPTED.into(), flag.clone());
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// Every boolean flag is a Jenkins boolean, declared once here rather than on each flag:
/// `--force` alone is true, and `--force=false`, `--force=0` or `SAFEDEPLOY_FORCE=false` (what
/// a pipeline's boolean parameter expands to) are false; `--force false` stays an error, so a
/// flag never swallows the next argument. In every subcommand too.
fn jenkins_booleans(mut cmd: clap::Command) -> clap::Command {
    use clap::ArgAction;
    let flags: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| matches!(a.get_action(), ArgAction::SetTrue))
        .map(|a| a.get_id().clone())
        .collect();
    for id in flags {
        cmd = cmd.mut_arg(id, |a| {
            a.action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(true)
                .default_value("false")
                .default_missing_value("true")
                .value_parser(parse_bool)
                .value_name("BOOL")
        });
    }
    let subcommands: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, jenkins_booleans);
    }
    cmd
}

/// Jenkins passes a parameter left empty as an empty variable: an option whose `SAFEDEPLOY_*`
/// variable is empty is read as not given (`SAFEDEPLOY_CANARY=` is no canary, not exit 2), in
/// every subcommand too.
fn without_empty_env(mut cmd: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.get_env().and_then(std::env::var_os).is_some_and(|v| v.is_empty()))
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        cmd = cmd.mut_arg(id, |a| a.env(None::<&str>));
    }
    let subcommands: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, without_empty_env);
    }
    cmd
}

/// A tool's command line as it is parsed (and as completions and man pages show it): its clap
/// definition with the rules every tool shares applied.
pub fn command<T: clap::CommandFactory>() -> clap::Command {
    without_empty_env(jenkins_booleans(T::command()))
}

/// Parses the command line. A mistake in it is said like every other error — one line,
/// `tool: error: ...`, a hint, and the JSON error document under `--json` — and is exit 2;
/// `--help` and `--version` print as clap prints them.
pub fn parse<T: clap::Parser>(tool: &'static str) -> T {
    use clap::error::ErrorKind;
    let parsed = command::<T>().try_get_matches().and_then(|m| T::from_arg_matches(&m));
    let e = match parsed {
        Ok(args) => return args,
        Err(e) => e,
    };
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let env = Environ::from_process();
    let mut ui = Ui::new(tool, &env);
    // Whether --json was asked for, as well as it can be told from an argv clap refused.
    ui.json = std::env::args().any(|a| a == "--json" || a == "--json=true" || a == "--json=1")
        || env.get("SAFEDEPLOY_JSON").is_some_and(|v| parse_bool(v) == Ok(true));
    let rendered = e.render().to_string();
    let said: Vec<&str> = rendered.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
    let message = said.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message).to_string();
    let err = crate::error::Error::usage(message).with_hint(format!("see {tool} --help"));
    std::process::exit(finish(&ui, Err(err.into())).into());
}

/// Loads the context, runs `op`, prints its result and returns the exit code.
pub fn run(tool: &'static str, common: &CommonArgs, op: impl FnOnce(&Ctx) -> Result<Outcome>) -> ExitCode {
    run_with(tool, common, common.options(), op)
}

/// [`run`] with options of the tool's own choosing (a config that may be absent).
pub fn run_with(
    tool: &'static str,
    common: &CommonArgs,
    options: GlobalOptions,
    op: impl FnOnce(&Ctx) -> Result<Outcome>,
) -> ExitCode {
    set_color(common);
    let env = Environ::from_process();
    let ui = common.ui(tool, &env);
    let interrupted = interrupt_flag();
    crate::error::quiet_panics();
    match Ctx::load(&options, ui.clone(), interrupted, env) {
        // The context's console knows the config's secrets too: it renders the outcome.
        Ok(ctx) => ExitCode::from(finish(&ctx.ui, guarded(|| op(&ctx)))),
        Err(e) => ExitCode::from(finish(&ui, Err(e))),
    }
}

/// `--color` for everything printed from here on.
fn set_color(common: &CommonArgs) {
    anstream::ColorChoice::write_global(match common.color {
        ColorChoice::Auto => anstream::ColorChoice::Auto,
        ColorChoice::Always => anstream::ColorChoice::Always,
        ColorChoice::Never => anstream::ColorChoice::Never,
    });
}

/// Runs an operation that needs no configuration (`safedeploy init`, `completions`, `man`),
/// with the same console, panic guard and exit codes.
pub fn run_without_config(
    tool: &'static str,
    common: &CommonArgs,
    op: impl FnOnce(&crate::effects::Effects) -> Result<Outcome>,
) -> ExitCode {
    set_color(common);
    let env = Environ::from_process();
    let ui = common.ui(tool, &env);
    crate::error::quiet_panics();
    let fx = crate::effects::Effects::new(ui.clone(), common.dry_run, interrupt_flag(), env);
    ExitCode::from(finish(&ui, guarded(|| op(&fx))))
}

/// Runs an operation; a panic in it (a bug) ends as "could not act" (exit 3), never as a
/// success or a verdict, and is said in the one error format.
fn guarded(op: impl FnOnce() -> Result<Outcome>) -> Result<Outcome> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::failpoint::panic_at("operation");
        op()
    }))
    .unwrap_or_else(|panic| {
        Err(crate::error::Error::could_not_act(format!(
            "internal error: {} (a bug in safedeploy; what the run did before it is in the ledger and above)",
            crate::error::panic_message(&*panic)
        ))
        .into())
    })
}

/// Prints the outcome (`--json` document and/or error lines) and returns the exit code.
pub fn finish(ui: &Ui, result: Result<Outcome>) -> u8 {
    match result {
        Ok(outcome) => {
            let code = if outcome.verdict.is_some() { exit::VERDICT } else { exit::SUCCESS };
            let mut doc = outcome.summary;
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("ok".into(), (code == exit::SUCCESS).into());
                obj.insert("exit_code".into(), code.into());
            }
            ui.json_line(&doc);
            if let Some(v) = outcome.verdict {
                ui.error(&anyhow::Error::from(crate::error::Error::verdict(v)));
            }
            code
        }
        Err(err) => {
            let code = kind_of(&err).exit_code();
            ui.json_line(&serde_json::json!({"ok": false, "exit_code": code, "error": format!("{err:#}")}));
            ui.error(&err);
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jenkins_booleans() {
        for t in ["1", "true", "TRUE", "yes", "on"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["", "0", "false", "no", "off"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("maybe").is_err());
    }
}
