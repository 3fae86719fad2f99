//! Log lines into records: prefixes (EB syslog, gunicorn, Flask, nginx) and tracebacks.
#![no_main]
use safedeploy::logs::parse::{Grouper, parse_line};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut g = Grouper::default();
    let mut last = None;
    let mut done = vec![];
    for raw in text.split('\n') {
        let line = parse_line(0, raw, last);
        last = line.at.or(last);
        g.push(line, &mut done);
        for r in done.drain(..) {
            let _ = (r.at(), r.is_traceback(), r.frames.len());
        }
    }
    for r in g.finish() {
        let _ = (r.at(), r.is_traceback());
    }
});
