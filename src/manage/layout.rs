//! What an app's tree says to `init` beyond its web line and build: its name (its own
//! metadata before the directory's), its Python tests in any common layout, the secret-looking
//! variables its code reads, and the lines that add a health route in the framework it uses.

use std::collections::BTreeSet;
use std::path::Path;

/// The app's name and where it was read: pyproject.toml, setup.cfg, package.json, the
/// repository's `origin` remote, then the directory.
pub fn name(dir: &Path) -> (String, String) {
    let read = |f: &str| crate::config::read_file(&dir.join(f), f).ok();
    let from_toml = read("pyproject.toml").and_then(|t| {
        let v: toml::Value = toml::from_str(&t).ok()?;
        v.get("project")
            .and_then(|p| p.get("name"))
            .or_else(|| v.get("tool")?.get("poetry")?.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
    });
    let from_cfg = || {
        let t = read("setup.cfg")?;
        let mut in_metadata = false;
        for line in t.lines().map(str::trim) {
            if line.starts_with('[') {
                in_metadata = line == "[metadata]";
            } else if in_metadata
                && let Some((k, v)) = line.split_once('=')
                && k.trim() == "name"
            {
                return Some(v.trim().to_string());
            }
        }
        None
    };
    let from_package = || {
        let v: serde_json::Value = serde_json::from_str(&read("package.json")?).ok()?;
        // A scoped package (`@team/app`) is named by its last part.
        v["name"].as_str().map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
    };
    let from_remote = || {
        let git = dir.ancestors().find(|d| d.join(".git").is_dir())?.join(".git/config");
        let text = std::fs::read_to_string(git).ok()?;
        let mut in_origin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_origin = line == "[remote \"origin\"]";
            } else if in_origin && let Some(url) = line.strip_prefix("url").map(|r| r.trim_start_matches([' ', '='])) {
                let last = url.trim().trim_end_matches('/').rsplit(['/', ':']).next()?;
                return Some(last.trim_end_matches(".git").to_string());
            }
        }
        None
    };
    let tidy = |n: String| -> Option<String> {
        let n: String = n.chars().map(|c| if c.is_control() { '-' } else { c }).collect::<String>().trim().to_string();
        (!n.is_empty()).then_some(n)
    };
    if let Some(n) = from_toml.and_then(tidy) {
        return (n, "pyproject.toml".into());
    }
    if let Some(n) = from_cfg().and_then(tidy) {
        return (n, "setup.cfg".into());
    }
    if let Some(n) = from_package().and_then(tidy) {
        return (n, "package.json".into());
    }
    if let Some(n) = from_remote().and_then(tidy) {
        return (n, "the repository's origin remote".into());
    }
    let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    match abs.file_name().map(|n| n.to_string_lossy().into_owned()).and_then(tidy) {
        Some(n) => (n, "the directory's name".into()),
        None => ("app".into(), "no name found".into()),
    }
}

/// Python tests, in the layouts people use: `tests/`, `test/`, a flat `tests.py` or `test.py`,
/// `test_*.py` and `*_test.py` beside the app, and Django's per-app `APP/tests.py` or
/// `APP/tests/`. The paths found, relative, directories with a trailing `/`.
pub fn python_tests(dir: &Path) -> Vec<String> {
    let skip = |n: &str| n.starts_with('.') || matches!(n, "venv" | "env" | "node_modules" | "site-packages");
    let test_file = |n: &str| {
        n.ends_with(".py") && (n == "tests.py" || n == "test.py" || n.starts_with("test_") || n.ends_with("_test.py"))
    };
    let mut out = vec![];
    let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let n = e.file_name().to_string_lossy().into_owned();
        if skip(&n) {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if matches!(n.as_str(), "tests" | "test") {
                out.push(format!("{n}/"));
                continue;
            }
            // A Django app (or a package) with its own tests.
            let inner = e.path();
            if inner.join("tests.py").is_file() {
                out.push(format!("{n}/tests.py"));
            } else if inner.join("tests").is_dir() && inner.join("__init__.py").is_file() {
                out.push(format!("{n}/tests/"));
            }
        } else if test_file(&n) {
            out.push(n);
        }
    }
    out
}

/// The found tests pytest's default discovery skips (`tests.py`, `test.py`): when any, the
/// gate names every found path, so pytest runs them all.
pub fn pytest_args(found: &[String]) -> Vec<String> {
    let named = |p: &String| {
        let file = p.trim_end_matches('/').rsplit('/').next().unwrap_or(p);
        matches!(file, "tests.py" | "test.py")
    };
    if found.iter().any(named) { found.to_vec() } else { vec![] }
}

/// Found tests the default `gate.tests` globs do not match, as globs to add.
pub fn uncovered(found: &[String], defaults: &[String]) -> Vec<String> {
    let set = {
        let mut b = globset::GlobSetBuilder::new();
        for g in defaults {
            if let Ok(g) = globset::GlobBuilder::new(g).literal_separator(true).build() {
                b.add(g);
            }
        }
        b.build().unwrap_or_else(|_| globset::GlobSet::empty())
    };
    found
        .iter()
        .filter_map(|p| {
            let probe = if p.ends_with('/') { format!("{p}x.py") } else { p.clone() };
            (!set.is_match(&probe)).then(|| if p.ends_with('/') { format!("{p}**") } else { p.clone() })
        })
        .collect()
}

/// Secret-looking variables the app's Python sources read (`os.environ["SECRET_KEY"]`,
/// `os.getenv("API_TOKEN")`), which it must be handed without committing them.
pub fn secrets_read(sources: &[std::path::PathBuf]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for p in sources {
        let Ok(text) = std::fs::read_to_string(p) else { continue };
        for c in super::appdata::ENV_READ.captures_iter(&text) {
            let name = c.get(1).or(c.get(2)).map(|m| m.as_str()).unwrap_or_default();
            if crate::redact::is_secret_name(name) && !name.starts_with("SAFEDEPLOY_") {
                out.insert(name.to_string());
            }
        }
    }
    out.into_iter().collect()
}

/// The web framework an app is written with, for the health route's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Flask,
    FastApi,
    Django,
    Express,
    NodeHttp,
}

pub fn framework(
    requirements: &BTreeSet<String>,
    node_deps: &BTreeSet<String>,
    node_app: bool,
    dir: &Path,
) -> Option<Framework> {
    if node_app {
        return Some(if node_deps.contains("express") { Framework::Express } else { Framework::NodeHttp });
    }
    if requirements.contains("django") || dir.join("manage.py").is_file() {
        Some(Framework::Django)
    } else if requirements.contains("fastapi") {
        Some(Framework::FastApi)
    } else if requirements.contains("flask") {
        Some(Framework::Flask)
    } else {
        None
    }
}

/// The lines that add `/health` to an app of `fw` (its app object `app` where one is named),
/// and a test for them.
pub fn health_snippet(fw: Framework, app: &str) -> String {
    match fw {
        Framework::Flask => format!(
            "add to the module defining `{app}`:\n\n    @{app}.route(\"/health\")\n    def health():\n        return {{\"status\": \"ok\"}}\n\nand a test:\n\n    def test_health():\n        assert {app}.test_client().get(\"/health\").status_code == 200\n"
        ),
        Framework::FastApi => format!(
            "add to the module defining `{app}`:\n\n    @{app}.get(\"/health\")\n    def health():\n        return {{\"status\": \"ok\"}}\n\nand a test:\n\n    from fastapi.testclient import TestClient\n    def test_health():\n        assert TestClient({app}).get(\"/health\").status_code == 200\n"
        ),
        Framework::Django => "add to urls.py:\n\n    from django.http import JsonResponse\n    urlpatterns += [path(\"health\", lambda request: JsonResponse({\"status\": \"ok\"}))]\n\nand a test:\n\n    from django.test import SimpleTestCase\n    class HealthTest(SimpleTestCase):\n        def test_health(self):\n            self.assertEqual(self.client.get(\"/health\").status_code, 200)\n".into(),
        Framework::Express => "add beside the other routes:\n\n    app.get('/health', (req, res) => res.json({ status: 'ok' }));\n\nand a test (node --test):\n\n    test('health', async () => {\n      const r = await fetch(`http://127.0.0.1:${port}/health`);\n      assert.equal(r.status, 200);\n    });\n".into(),
        Framework::NodeHttp => "add first in the request handler:\n\n    if (req.url === '/health') { res.writeHead(200, { 'content-type': 'application/json' }); return res.end('{\"status\":\"ok\"}'); }\n\nand a test (node --test):\n\n    test('health', async () => {\n      const r = await fetch(`http://127.0.0.1:${port}/health`);\n      assert.equal(r.status, 200);\n    });\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for f in files {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, "").expect("write");
        }
        d
    }

    #[test]
    fn tests_are_found_in_every_common_layout() {
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["app.py", "tests.py"], &["tests.py"], &["tests.py"]),
            (&["app.py", "test.py"], &["test.py"], &["test.py"]),
            (&["app.py", "test_app.py", "util_test.py"], &["test_app.py", "util_test.py"], &[]),
            (&["app.py", "tests/test_a.py"], &["tests/"], &[]),
            (&["src/app.py", "test/test_a.py"], &["test/"], &[]),
            (
                &["manage.py", "polls/tests.py", "polls/models.py", "blog/tests/__init__.py", "blog/__init__.py"],
                &["blog/tests/", "polls/tests.py"],
                &["blog/tests/", "polls/tests.py"],
            ),
            // Not tests: a venv's, a hidden dir's, look-alikes.
            (&["venv/lib/test_x.py", ".tox/tests.py", "latest.py", "contest.py", "testing.py"], &[], &[]),
        ];
        for (files, found, args) in cases {
            let d = tree(files);
            let got = python_tests(d.path());
            assert_eq!(got, *found, "{files:?}");
            assert_eq!(pytest_args(&got), *args, "{files:?}");
        }
    }

    #[test]
    fn found_tests_the_default_globs_miss_are_added() {
        let defaults: Vec<String> = crate::gate::settings::Gate::default().tests.iter().map(|g| g.0.clone()).collect();
        let found: Vec<String> =
            ["tests.py", "test.py", "tests/", "polls/tests.py", "blog/tests/", "test_a.py"].map(String::from).to_vec();
        assert_eq!(uncovered(&found, &defaults), Vec::<String>::new(), "the defaults cover every layout init finds");
        assert_eq!(uncovered(&["checks/".to_string()], &defaults), vec!["checks/**"]);
    }

    #[test]
    fn the_name_comes_from_the_apps_metadata_first() {
        let d = tree(&[]);
        let at = d.path();
        std::fs::create_dir_all(at.join(".git")).expect("git");
        std::fs::write(
            at.join(".git/config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@github.com:team/members-app.git\n",
        )
        .expect("write");
        assert_eq!(name(at), ("members-app".to_string(), "the repository's origin remote".to_string()));
        std::fs::write(at.join("package.json"), r#"{"name": "@team/notes"}"#).expect("write");
        assert_eq!(name(at).0, "notes");
        std::fs::write(at.join("setup.cfg"), "[options]\nname = wrong\n[metadata]\nname = members-cfg\n")
            .expect("write");
        assert_eq!(name(at).0, "members-cfg");
        std::fs::write(at.join("pyproject.toml"), "[project]\nname = \"members\"\n").expect("write");
        assert_eq!(name(at), ("members".to_string(), "pyproject.toml".to_string()));
        std::fs::write(at.join("pyproject.toml"), "[project]\nname = \"  \"\n").expect("write");
        assert_eq!(name(at).0, "members-cfg", "a blank name is no name");
    }

    #[test]
    fn each_framework_gets_a_health_route_and_a_test_in_its_own_words() {
        let reqs = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<String>>();
        let d = tree(&[]);
        let none = BTreeSet::new();
        let cases = [
            (
                framework(&reqs(&["flask", "gunicorn"]), &none, false, d.path()),
                Framework::Flask,
                "@application.route(\"/health\")",
            ),
            (
                framework(&reqs(&["fastapi", "uvicorn"]), &none, false, d.path()),
                Framework::FastApi,
                "@application.get(\"/health\")",
            ),
            (framework(&reqs(&["django"]), &none, false, d.path()), Framework::Django, "path(\"health\""),
            (framework(&none, &reqs(&["express"]), true, d.path()), Framework::Express, "app.get('/health'"),
            (framework(&none, &none, true, d.path()), Framework::NodeHttp, "req.url === '/health'"),
        ];
        for (found, want, route) in cases {
            assert_eq!(found, Some(want));
            let s = health_snippet(want, "application");
            assert!(s.contains(route), "{want:?}: {s}");
            assert!(s.contains("and a test") && s.contains("200"), "{want:?}: {s}");
        }
        assert_eq!(framework(&reqs(&["requests"]), &none, false, d.path()), None, "no framework, no guess");
    }

    #[test]
    fn secret_reads_are_found_and_plain_settings_are_not() {
        let d = tree(&[]);
        let src = d.path().join("app.py");
        std::fs::write(
            &src,
            "import os\nA = os.environ['SECRET_KEY']\nB = os.getenv(\"STRIPE_API_TOKEN\", '')\nC = os.environ.get('DATABASE_URL')\nD = os.environ.get('SAFEDEPLOY_VERSION_KEY')\n",
        )
        .expect("write");
        assert_eq!(secrets_read(&[src]), vec!["SECRET_KEY", "STRIPE_API_TOKEN"]);
    }
}
