//! The Datadog webhook payload, read against a config with two environments.
#![no_main]
use std::sync::OnceLock;

static CONFIG: OnceLock<safedeploy::config::Config> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|text: &str| {
    let config = CONFIG.get_or_init(|| {
        let toml = "[app]\nname = \"fuzz\"\n[environments.staging]\nurl = \"http://127.0.0.1:8101\"\n\
                    [environments.production]\nurl = \"http://127.0.0.1:8102\"\n\
                    [logs]\ndatadog_environments = { prod = \"production\" }\n\
                    [[smoke.checks]]\nname = \"home\"\npath = \"/\"\n";
        safedeploy::config::Config::parse(toml, std::path::Path::new("fuzz.toml")).expect("config")
    });
    let _ = safedeploy::alert::parse(text, "fuzz.json", config);
});
