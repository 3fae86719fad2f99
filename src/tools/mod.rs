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

/// The tools, as installed: (binary name, its clap command).
pub fn commands() -> Vec<(&'static str, clap::Command)> {
    vec![
        ("gate-tests", crate::cli::command::<gate_tests::Args>()),
        ("deploy-staging", crate::cli::command::<deploy_staging::Args>()),
        ("smoke-check", crate::cli::command::<smoke_check::Args>()),
        ("promote", crate::cli::command::<promote::Args>()),
        ("rollback", crate::cli::command::<rollback::Args>()),
        ("collect-logs", crate::cli::command::<collect_logs::Args>()),
        ("safedeploy", crate::cli::command::<safedeploy::Args>()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every boolean flag of every tool reads as Jenkins writes it: alone is true, `=false`
    /// and `=0` are false, absent is false, and a value after a space is not taken as its.
    #[test]
    fn every_boolean_flag_of_every_tool_is_a_jenkins_boolean() {
        let mut swept = 0;
        for (bin, cmd) in commands() {
            let flags: Vec<String> = cmd
                .get_arguments()
                .filter(|a| a.get_value_names().is_some_and(|v| v == ["BOOL"]))
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect();
            assert!(!flags.is_empty(), "{bin} has no boolean flag (--dry-run is every tool's)");
            for flag in flags {
                // (the tools' required options are not given: only this flag is looked at)
                let value = |argv: &[String]| {
                    let m = cmd.clone().ignore_errors(true).try_get_matches_from(argv);
                    let id = flag.replace('-', "_");
                    m.ok().and_then(|m| {
                        m.subcommand().map_or(m.clone(), |(_, s)| s.clone()).get_one::<bool>(&id).copied()
                    })
                };
                let arg = |a: &str| vec![bin.to_string(), a.to_string()];
                // (the subcommands of `safedeploy` need one named: its flags are global ones)
                let with_sub = |a: &str| {
                    if bin == "safedeploy" { vec![bin.to_string(), "check".into(), a.to_string()] } else { arg(a) }
                };
                assert_eq!(value(&with_sub(&format!("--{flag}"))), Some(true), "{bin} --{flag}");
                assert_eq!(value(&with_sub(&format!("--{flag}=false"))), Some(false), "{bin} --{flag}=false");
                assert_eq!(value(&with_sub(&format!("--{flag}=0"))), Some(false), "{bin} --{flag}=0");
                assert_eq!(value(&with_sub(&format!("--{flag}=off"))), Some(false), "{bin} --{flag}=off");
                let refused = cmd.clone().try_get_matches_from(with_sub(&format!("--{flag}=maybe"))).map(|_| ());
                assert_eq!(
                    refused.map_err(|e| e.kind()),
                    Err(clap::error::ErrorKind::ValueValidation),
                    "{bin} --{flag}=maybe is refused"
                );
                swept += 1;
            }
        }
        assert!(swept >= 16, "{swept} flags");
    }

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
