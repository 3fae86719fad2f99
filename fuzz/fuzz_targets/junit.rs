//! JUnit XML reports (pytest, nextest, jest-junit, surefire shapes).
#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = safedeploy::gate::junit::parse_junit(text, std::path::Path::new("fuzz/junit.xml"));
});
