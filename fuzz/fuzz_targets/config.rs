//! `safedeploy.toml`: any text is parsed and validated without a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = safedeploy::config::Config::parse(text, std::path::Path::new("fuzz/safedeploy.toml"));
});
