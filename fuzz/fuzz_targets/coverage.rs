//! Coverage reports: Cobertura XML and lcov.
#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(c) = safedeploy::gate::coverage::Coverage::parse(text, std::path::Path::new("fuzz/coverage.xml")) {
        let _ = c.lookup("application.py");
    }
});
