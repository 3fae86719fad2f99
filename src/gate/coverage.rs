//! Diff coverage: which changed lines the tests executed, from a Cobertura XML report
//! (coverage.py's `coverage xml`, pytest-cov, most JVM and JS tools) or an lcov tracefile.
//! Report paths are mapped onto repository paths by their longest common suffix, so absolute
//! paths from another checkout, relative paths and `<source>` prefixes all resolve.
//!
//! lcov is read here directly: its format is a few line prefixes (`SF:`, `DA:`,
//! `end_of_record`), and no maintained crate reads it.

use crate::usage;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Per file (as the report names it), line → hits.
#[derive(Debug, Default)]
pub struct Coverage {
    files: Vec<(String, BTreeMap<u32, u64>)>,
}

impl Coverage {
    pub fn parse(text: &str, path: &Path) -> Result<Coverage> {
        let head = text.trim_start();
        if head.starts_with('<') {
            parse_cobertura(text, path)
        } else if text.lines().any(|l| l.starts_with("SF:")) {
            parse_lcov(text, path)
        } else {
            Err(usage!("{}: not a coverage report: expected Cobertura XML or lcov (SF:/DA: lines)", path.display()))
        }
    }

    /// The line data of a repository path (relative to the app dir).
    pub fn lookup(&self, repo_path: &str) -> Option<&BTreeMap<u32, u64>> {
        let want = normalize(repo_path);
        self.files
            .iter()
            .filter(|(p, _)| *p == want || p.ends_with(&format!("/{want}")))
            .min_by_key(|(p, _)| p.len())
            .map(|(_, lines)| lines)
    }
}

fn normalize(p: &str) -> String {
    let p = p.replace('\\', "/");
    let p = p.strip_prefix("./").unwrap_or(&p);
    p.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/")
}

fn parse_cobertura(text: &str, path: &Path) -> Result<Coverage> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| usage!("{}: not a valid Cobertura XML report: {e}", path.display()))?;
    if !doc.root_element().has_tag_name("coverage") {
        return Err(usage!(
            "{}: not a Cobertura report: the root element is <{}>, expected <coverage>",
            path.display(),
            doc.root_element().tag_name().name()
        ));
    }
    let sources: Vec<String> =
        doc.descendants().filter(|n| n.has_tag_name("source")).filter_map(|n| n.text()).map(normalize).collect();
    let mut files: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    for class in doc.descendants().filter(|n| n.has_tag_name("class")) {
        let Some(filename) = class.attribute("filename") else { continue };
        // A relative filename is relative to a <source>; keep the first source's join, and the
        // suffix match in `lookup` makes the choice of source unimportant.
        let name = match (filename.starts_with('/'), sources.first()) {
            (false, Some(src)) => normalize(&format!("{src}/{filename}")),
            _ => normalize(filename),
        };
        let lines = files.entry(name).or_default();
        for line in class.descendants().filter(|n| n.has_tag_name("line")) {
            let number = line.attribute("number").and_then(|v| v.parse().ok());
            let hits = line.attribute("hits").and_then(|v| v.parse::<f64>().ok()).map(|h| h as u64);
            match (number, hits) {
                (Some(n), Some(h)) => {
                    let e = lines.entry(n).or_insert(0);
                    *e = (*e).max(h);
                }
                _ => {
                    return Err(usage!(
                        "{}: a <line> element lacks a numeric number or hits attribute",
                        path.display()
                    ));
                }
            }
        }
    }
    Ok(Coverage { files: files.into_iter().collect() })
}

fn parse_lcov(text: &str, path: &Path) -> Result<Coverage> {
    let mut files = vec![];
    let mut current: Option<(String, BTreeMap<u32, u64>)> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(sf) = line.strip_prefix("SF:") {
            current = Some((normalize(sf), BTreeMap::new()));
        } else if let Some(da) = line.strip_prefix("DA:") {
            let mut f = da.split(',');
            let n = f.next().and_then(|v| v.parse::<u32>().ok());
            let h = f.next().and_then(|v| v.parse::<f64>().ok());
            match (n, h, current.as_mut()) {
                (Some(n), Some(h), Some((_, lines))) => {
                    let e = lines.entry(n).or_insert(0);
                    *e = (*e).max(h as u64);
                }
                _ => {
                    return Err(usage!(
                        "{}:{}: invalid lcov line {line:?}: expected DA:LINE,HITS after SF:",
                        path.display(),
                        i + 1
                    ));
                }
            }
        } else if line == "end_of_record" {
            files.extend(current.take());
        }
    }
    if current.is_some() {
        return Err(usage!("{}: truncated lcov report: the last record has no end_of_record", path.display()));
    }
    Ok(Coverage { files })
}

#[derive(Debug, Default, Serialize)]
pub struct DiffCoverage {
    /// Changed lines the report measures (executable lines).
    pub measured: usize,
    pub covered: usize,
    /// `file:line: source` of each measured changed line no test executed.
    pub uncovered: Vec<String>,
    /// Changed files the report does not mention at all.
    pub unmeasured_files: Vec<String>,
}

impl DiffCoverage {
    /// Percentage of measured changed lines covered; `None` when no changed line is measured.
    pub fn percent(&self) -> Option<f64> {
        (self.measured > 0).then(|| 100.0 * self.covered as f64 / self.measured as f64)
    }

    /// Whether the covered share reaches `min` percent. The tolerance for the division's
    /// rounding is relative to `min`, so no minimum above 0 is met by 0 covered lines (an
    /// absolute one let a minimum of 1e-9 % pass a change no test ran).
    pub fn meets(&self, min: f64) -> bool {
        self.percent().is_none_or(|p| p >= min * (1.0 - 1e-9))
    }
}

/// Judges the changed lines of `files` (repo path → added line numbers) against `coverage`;
/// `dir` is where the files are, to quote the uncovered lines.
pub fn diff_coverage(coverage: &Coverage, files: &BTreeMap<String, Vec<u32>>, dir: &Path) -> DiffCoverage {
    let mut d = DiffCoverage::default();
    for (file, lines) in files {
        let Some(data) = coverage.lookup(file) else {
            d.unmeasured_files.push(file.clone());
            continue;
        };
        let source: Vec<String> =
            std::fs::read_to_string(dir.join(file)).unwrap_or_default().lines().map(str::to_string).collect();
        for line in lines {
            match data.get(line) {
                None => {}
                Some(0) => {
                    d.measured += 1;
                    let text = source.get(*line as usize - 1).map(|s| s.trim()).unwrap_or("");
                    d.uncovered.push(format!("{file}:{line}: {text}"));
                }
                Some(_) => {
                    d.measured += 1;
                    d.covered += 1;
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimum_is_met_up_to_rounding_and_never_by_nothing_covered() {
        let d = |covered, measured| DiffCoverage { covered, measured, ..Default::default() };
        // 1 of 3 is 33.333...; a minimum written as the rounded share is met, one above it not.
        assert!(d(1, 3).meets(100.0 / 3.0));
        assert!(!d(1, 3).meets(33.34));
        assert!(d(4, 5).meets(80.0) && !d(4, 5).meets(80.000001));
        assert!(d(3, 10).meets(30.000000000000004), "0.1 * 3 style rounding above the share");
        // Nothing covered fails every minimum above 0, however small.
        for min in [1e-300, 1e-12, 1e-9, 1e-6, 0.1, 1.0, 100.0] {
            assert!(!d(0, 7).meets(min), "0 of 7 met {min}");
        }
        assert!(d(7, 7).meets(100.0));
        assert!(d(0, 0).meets(100.0), "no measured changed line is nothing to fail");
    }

    const COBERTURA: &str = r#"<?xml version="1.0" ?>
<coverage version="7.6" line-rate="0.5"><sources><source>/ci/workspace/app</source></sources>
<packages><package name="."><classes>
<class name="application.py" filename="application.py"><lines>
<line number="1" hits="1"/><line number="66" hits="1"/><line number="67" hits="0"/></lines></class>
</classes></package></packages></coverage>"#;

    #[test]
    fn cobertura_paths_map_by_suffix() {
        let c = Coverage::parse(COBERTURA, Path::new("c.xml")).expect("parses");
        let lines = c.lookup("application.py").expect("found");
        assert_eq!(lines.get(&67), Some(&0));
        assert!(c.lookup("other.py").is_none());
        assert!(c.lookup("./application.py").is_some());
    }

    #[test]
    fn lcov_and_truncated_lcov() {
        let text = "TN:\nSF:/home/dev/app/src/lib.js\nDA:1,3\nDA:2,0\nend_of_record\n";
        let c = Coverage::parse(text, Path::new("lcov.info")).expect("parses");
        assert_eq!(c.lookup("src/lib.js").and_then(|l| l.get(&2)), Some(&0));
        let e = Coverage::parse("SF:/a.js\nDA:1,1\n", Path::new("lcov.info")).expect_err("truncated");
        assert!(e.to_string().contains("truncated lcov report"), "{e}");
        let e = Coverage::parse("SF:/a.js\nDA:x\nend_of_record\n", Path::new("lcov.info")).expect_err("bad");
        assert!(e.to_string().contains("lcov.info:2: invalid lcov line"), "{e}");
    }

    #[test]
    fn truncated_cobertura_is_usage_error() {
        let e = Coverage::parse(&COBERTURA[..200], Path::new("c.xml")).expect_err("truncated");
        assert!(e.to_string().starts_with("c.xml: not a valid Cobertura XML report"), "{e}");
    }

    #[test]
    fn diff_coverage_counts_only_measured_lines() {
        let c = Coverage::parse(COBERTURA, Path::new("c.xml")).expect("parses");
        let mut files = BTreeMap::new();
        files.insert("application.py".to_string(), vec![66, 67, 68]);
        files.insert("README.md".to_string(), vec![1]);
        let d = diff_coverage(&c, &files, Path::new("/nonexistent"));
        assert_eq!((d.measured, d.covered), (2, 1));
        assert_eq!(d.percent(), Some(50.0));
        assert_eq!(d.uncovered, vec!["application.py:67: ".to_string()]);
        assert_eq!(d.unmeasured_files, vec!["README.md".to_string()]);
        let none = diff_coverage(&c, &BTreeMap::new(), Path::new("/"));
        assert_eq!(none.percent(), None, "no measured changed lines is not 100 %");
    }
}
