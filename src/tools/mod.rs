//! The command lines of the six step binaries and of `safedeploy`: their clap definitions and
//! `main`s live here, so each binary is one call, and `safedeploy completions` / `safedeploy
//! man` are generated from the very definitions the binaries parse.

pub mod collect_logs;
pub mod deploy_staging;
pub mod gate_tests;
pub mod promote;
pub mod rollback;
pub mod safedeploy;
pub mod smoke_check;

use clap::CommandFactory;

/// The tools, as installed: (binary name, its clap command).
pub fn commands() -> Vec<(&'static str, clap::Command)> {
    vec![
        ("gate-tests", gate_tests::Args::command()),
        ("deploy-staging", deploy_staging::Args::command()),
        ("smoke-check", smoke_check::Args::command()),
        ("promote", promote::Args::command()),
        ("rollback", rollback::Args::command()),
        ("collect-logs", collect_logs::Args::command()),
        ("safedeploy", safedeploy::Args::command()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A variable read by several binaries means the same in each: a Jenkins job sets it once
    /// for all its steps (`SAFEDEPLOY_TO` was once promote's environment and rollback's label).
    #[test]
    fn each_environment_variable_means_one_thing_in_every_binary() {
        let mut seen: BTreeMap<String, (String, String, &str)> = BTreeMap::new();
        for (bin, cmd) in commands() {
            let mut cmds = vec![cmd];
            while let Some(c) = cmds.pop() {
                cmds.extend(c.get_subcommands().cloned());
                for a in c.get_arguments() {
                    let Some(var) = a.get_env().map(|v| v.to_string_lossy().into_owned()) else { continue };
                    let meaning = (
                        a.get_long().unwrap_or_default().to_string(),
                        a.get_value_names()
                            .map(|v| v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "))
                            .unwrap_or_default(),
                    );
                    match seen.get(&var) {
                        Some((long, value, first)) => assert_eq!(
                            (long, value),
                            (&meaning.0, &meaning.1),
                            "{var} is --{long} {value} in {first} but --{} {} in {bin}",
                            meaning.0,
                            meaning.1
                        ),
                        None => {
                            seen.insert(var, (meaning.0, meaning.1, bin));
                        }
                    }
                }
            }
        }
        assert!(seen.contains_key("SAFEDEPLOY_RESTORE_LABEL") && seen.contains_key("SAFEDEPLOY_TO"));
    }
}
