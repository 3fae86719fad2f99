//! `safedeploy init`: inspect an app and write a commented `safedeploy.toml` that passes
//! `safedeploy check`, every other field shown commented with its default.
//!
//! What it looks at, and what it concludes:
//! - `Procfile` `web:` line → the web command (else a Python WSGI module → a gunicorn line);
//! - `requirements.txt` / `pyproject.toml` / `package.json` → the build (a venv or
//!   `node_modules`) and its directory on the app's PATH; a web server the Procfile names that
//!   the requirements lack is said, since the app runs on its build only;
//! - the test layout (`tests/`, flat `test_*.py`, `*_test.py`) → the gate, with coverage when
//!   pytest-cov is among the requirements; a Node app (`package.json`, no Python project) whose
//!   tests node's own runner finds (`test/`, `*.test.js`, ...) → `node --test` with its JUnit
//!   and lcov reporters; another runner in the `test` script (jest, mocha, ...) is said, not
//!   guessed at;
//! - routes in the sources (Python's decorators; in JavaScript, the path as a string literal:
//!   `app.get('/health'`, `pathname === '/health'`) → the health path (`/health`, `/healthz`,
//!   `/ping`, `/status`, else `/`) and the version route (`/version`, else none: the proxy's
//!   header is used).
//!
//! Each conclusion is printed, so a person sees why the file says what it says.

use crate::Outcome;
use crate::config::{Config, fields};
use crate::effects::Effects;
use crate::{could_not_act, usage};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub struct InitRequest<'a> {
    pub dir: &'a Path,
    pub force: bool,
    /// The two environments' ports.
    pub ports: (u16, u16),
}

/// What was found in the app, each with the reason it is believed.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    pub name: String,
    pub web: Option<String>,
    pub web_from: String,
    pub build: Option<String>,
    pub build_path: Option<String>,
    pub build_from: String,
    pub tests: Option<String>,
    /// The tests run on node's own runner (`node --test`), not pytest.
    pub node_tests: bool,
    pub coverage: bool,
    pub health_path: String,
    pub version_path: Option<String>,
    /// What the first smoke check asks for: `/`, unless a Node app's sources name no home page
    /// (an API) and a health route is known.
    pub smoke_path: String,
    /// Where the name came from.
    pub name_from: String,
    /// Test files and directories pytest is pointed at by name (ones its default patterns
    /// skip, as `tests.py`); empty: its own discovery finds them all.
    pub test_args: Vec<String>,
    /// Test paths found that the default `gate.tests` globs miss, added to them.
    pub test_globs: Vec<String>,
    /// SQLite databases the app's sources place, moved into the data dir by the variable read.
    #[serde(skip)]
    pub data: Vec<super::appdata::Sqlite>,
    /// Secret-looking variables the app reads, handed to it from the deploying shell.
    pub secrets: Vec<String>,
    /// The lines to add for a health route, when the app has none.
    pub health_snippet: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
struct Written<'a> {
    config: &'a Path,
    written: bool,
    findings: &'a Findings,
}

/// Where the web command came from when the Procfile has one.
const PROCFILE_WEB: &str = "the Procfile's web: line";

pub fn init(fx: &Effects, req: &InitRequest<'_>) -> Result<Outcome> {
    let dir = req.dir;
    if !dir.is_dir() {
        return Err(usage!("--dir {}: not a directory", dir.display()));
    }
    if req.ports.0 == req.ports.1 || req.ports.0 == 0 || req.ports.1 == 0 {
        return Err(usage!("--ports: expected two different ports from 1 to 65535"));
    }
    let out = dir.join(crate::config::FILE_NAME);
    // Never written through a link: --force would replace whatever file it points at.
    if out.symlink_metadata().is_ok_and(|m| !m.is_file()) {
        let what = match std::fs::read_link(&out) {
            Ok(to) => format!("is a symlink to {}", to.display()),
            Err(_) => "is not a regular file".into(),
        };
        return Err(crate::error::Error::usage(format!("{}: {what}; nothing was written", out.display()))
            .with_hint("remove it and run init again, or edit the file it points at")
            .into());
    }
    if out.exists() && !req.force {
        return Err(crate::error::Error::usage(format!("{}: exists; nothing was written", out.display()))
            .with_hint("pass --force to replace it, or `safedeploy check` to validate it")
            .into());
    }
    let found = inspect(dir)?;
    let text = render(&found, req.ports);
    // The file must pass `check`: a failure here is a bug of init, not the user's.
    Config::parse(&text, &out).map_err(|e| could_not_act!("init wrote a configuration check refuses: {e:#}"))?;
    say(fx, &found);
    let written = fx
        .exec
        .effect(
            || format!("write {}", out.display()),
            || std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display())),
        )?
        .is_some();
    if fx.dry_run {
        fx.ui.plan(text.trim_end());
    } else {
        fx.ui.result(format!(
            "wrote {}: check it with `safedeploy check`, then run the pipeline (see its comments)",
            out.display()
        ));
    }
    Outcome::of(&Written { config: &out, written, findings: &found })
}

fn say(fx: &Effects, f: &Findings) {
    let ui = &fx.ui;
    ui.status(format!("web command: {} ({})", f.web.as_deref().unwrap_or("none found"), f.web_from));
    ui.status(format!("build: {} ({})", f.build.as_deref().unwrap_or("none"), f.build_from));
    ui.status(format!("tests: {}", f.tests.as_deref().unwrap_or("none found: no [gate] section")));
    ui.status(format!("health path: {}", f.health_path));
    ui.status(format!(
        "version: {}",
        f.version_path
            .as_deref()
            .map(|p| format!("the app's route {p}"))
            .unwrap_or_else(|| "no version route; smoke-check reads the proxy's X-Safedeploy-Version header".into())
    ));
    ui.status(format!("name: {} ({})", f.name, f.name_from));
    for db in f.data.iter().filter(|d| d.var.is_some()) {
        ui.status(format!(
            "data: {} keeps a SQLite database beside the code ({}): each environment's {} puts it in its data dir",
            db.at,
            db.file,
            db.var.as_deref().unwrap_or_default()
        ));
    }
    if !f.secrets.is_empty() {
        ui.status(format!(
            "secrets the app reads: {}: each environment hands them over from the deploying shell (from_env), never from this file",
            f.secrets.join(", ")
        ));
    }
    for w in &f.warnings {
        ui.warn(w);
    }
    if let Some(snippet) = &f.health_snippet {
        ui.status(format!("a health route: {snippet}"));
    }
}

fn read(dir: &Path, name: &str) -> Option<String> {
    crate::config::read_file(&dir.join(name), name).ok()
}

/// Routes a Flask/FastAPI/Django-style source declares: `"/health"` after `route(`, `get(`, `path(`.
fn routes(sources: &[PathBuf]) -> BTreeSet<String> {
    static ROUTE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"\.(?:route|get|api_route)\(\s*['"](/[A-Za-z0-9_./-]*)['"]|\bpath\(\s*['"]([A-Za-z0-9_./-]*)['"]"#,
        )
        .expect("a valid pattern")
    });
    let mut out = BTreeSet::new();
    for p in sources {
        let Ok(text) = std::fs::read_to_string(p) else { continue };
        for c in ROUTE.captures_iter(&text) {
            if let Some(m) = c.get(1) {
                out.insert(m.as_str().to_string());
            } else if let Some(m) = c.get(2) {
                out.insert(format!("/{}", m.as_str().trim_matches('/')));
            }
        }
    }
    out
}

/// What node's test runner would run (its default patterns: files in a `test` directory, and
/// `*.test.js`, `*-test.js`, `*_test.js`, `test-*.js`, `test.js` with `.cjs`/`.mjs` too), at the
/// top and one level down: the directories or files found, for the console.
fn node_test_files(dir: &Path) -> Vec<String> {
    let js = |n: &str| [".js", ".cjs", ".mjs"].iter().any(|e| n.ends_with(e));
    let test_name = |n: &str| {
        let stem = n.rsplit_once('.').map_or(n, |(s, _)| s);
        js(n)
            && (stem == "test"
                || stem.starts_with("test-")
                || [".test", "-test", "_test"].iter().any(|e| stem.ends_with(e)))
    };
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') || n == "node_modules" {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let inner: Vec<String> = std::fs::read_dir(e.path())
                .map(|d| d.flatten().map(|x| x.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            if n == "test" && inner.iter().any(|x| js(x)) {
                out.push(format!("{n}/"));
            } else if let Some(x) = inner.iter().find(|x| test_name(x)) {
                out.push(format!("{n}/{x}"));
            }
        } else if test_name(&n) {
            out.push(n);
        }
    }
    out
}

/// The well-known routes a JavaScript app names as a string literal (`app.get('/health'`,
/// `url.pathname === '/health'`, `'/'` for a home page), in its sources at the top and one
/// level down.
fn js_routes(dir: &Path) -> BTreeSet<String> {
    static LITERAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        // A well-known path anywhere as a literal; the home page `/` only where it is compared
        // or routed (`=== '/'`, `case '/':`, `.get('/'`), since `split('/')` is everywhere.
        regex::Regex::new(
            r#"['"`](/(?:health|healthz|ping|status|up|version))['"`]|(?:===?|\bcase|\.(?:get|all|route)\()\s*['"`](/)['"`]"#,
        )
        .expect("a valid pattern")
    });
    let js = |n: &str| [".js", ".cjs", ".mjs", ".ts"].iter().any(|e| n.ends_with(e));
    let mut dirs = vec![dir.to_path_buf()];
    let skip = |n: &str| n.starts_with('.') || matches!(n, "node_modules" | "test" | "tests");
    if let Ok(entries) = std::fs::read_dir(dir) {
        dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && !skip(&e.file_name().to_string_lossy()))
                .map(|e| e.path()),
        );
    }
    let mut out = BTreeSet::new();
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            // Sources of a small app only: a bundle of megabytes is not read.
            if !js(&n) || e.metadata().map_or(true, |m| !m.is_file() || m.len() > 4 * 1024 * 1024) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
            out.extend(
                LITERAL.captures_iter(&text).filter_map(|c| c.get(1).or(c.get(2))).map(|m| m.as_str().to_string()),
            );
        }
    }
    out
}

/// A WSGI module and its app object (`application = Flask(...)` in `application.py`).
fn wsgi_app(sources: &[PathBuf], dir: &Path) -> Option<String> {
    static APP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:flask\.)?Flask\(").expect("a valid pattern")
    });
    sources.iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        let var = APP.captures(&text)?.get(1)?.as_str().to_string();
        let rel = p.strip_prefix(dir).ok()?.with_extension("");
        let module = rel.to_string_lossy().replace('/', ".");
        Some(format!("{module}:{var}"))
    })
}

fn requirement_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .map(|l| {
            l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .replace('_', "-")
        })
        .collect()
}

/// What `init` finds in an app's directory: how it starts, builds and is tested, where it keeps
/// its data, and the routes its checks can use.
pub fn inspect(dir: &Path) -> Result<Findings> {
    let (name, name_from) = super::layout::name(dir);
    let mut f = Findings { name, name_from, ..Default::default() };
    let sources = super::appdata::python_sources(dir);
    inspect_web(dir, &sources, &mut f);
    let m = manifests(dir, &mut f);
    inspect_build(dir, &m, &mut f);
    if m.node_app {
        inspect_node_tests(dir, &m, &mut f);
    } else {
        inspect_python_tests(dir, &m, &mut f);
    }
    inspect_data(dir, &sources, &mut f);
    inspect_routes(dir, &sources, &m, &mut f);
    Ok(f)
}

/// What the app declares it needs: its requirements' names (any of its Python manifests) and
/// its package.json.
struct Manifests {
    requirements: BTreeSet<String>,
    package: Option<serde_json::Value>,
    pyproject: bool,
    /// A Node app: a package.json, and no Python manifest.
    node_app: bool,
}

/// How the app starts: the Procfile's web: line, else gunicorn on the Flask app found.
fn inspect_web(dir: &Path, sources: &[PathBuf], f: &mut Findings) {
    let procfile = read(dir, "Procfile");
    let lacking = if procfile.is_some() { "the Procfile has no web: line" } else { "no Procfile" };
    let procfile_web = procfile.and_then(|t| {
        t.lines().filter_map(|l| l.trim().strip_prefix("web:")).map(|c| c.trim().to_string()).find(|c| !c.is_empty())
    });
    if let Some(m) = procfile_web.as_deref().and_then(crate::gate::migrations::migrator_in) {
        f.warnings.push(crate::gate::migrations::migrator_advice(m, "the Procfile's web: line"));
    }
    if let Some(w) = procfile_web.as_deref().and_then(|w| super::appdata::bind_warning(w, "the Procfile's web: line")) {
        f.warnings.push(w);
    }
    match procfile_web {
        Some(w) => {
            f.web = Some(w);
            f.web_from = PROCFILE_WEB.into();
        }
        None => match wsgi_app(sources, dir) {
            Some(app) => {
                f.web = Some(format!("gunicorn --bind 127.0.0.1:$PORT {app}"));
                f.web_from = format!("{lacking}; {app} is a Flask app");
            }
            None => f.web_from = format!("{lacking} and no Flask app found: set deploy.command"),
        },
    }
}

fn manifests(dir: &Path, f: &mut Findings) -> Manifests {
    let mut requirements = BTreeSet::new();
    for file in ["requirements.txt", "requirements-dev.txt", "requirements/dev.txt"] {
        if let Some(t) = read(dir, file) {
            requirements.extend(requirement_names(&t));
        }
    }
    let pyproject = read(dir, "pyproject.toml");
    let package: Option<serde_json::Value> = read(dir, "package.json").map(|t| {
        serde_json::from_str(&t).unwrap_or_else(|e| {
            f.warnings.push(format!(
                "package.json is not JSON ({e}): its dependencies and test script were not read, so no build was written"
            ));
            serde_json::Value::Null
        })
    });
    let node_app = package.is_some() && !dir.join("requirements.txt").is_file() && pyproject.is_none();
    if let Some(t) = &pyproject {
        requirements.extend(requirement_names(&t.replace(['"', '\'', ','], "\n")));
    }
    Manifests { requirements, package, pyproject: pyproject.is_some(), node_app }
}

/// How a version is built: a venv of its own from its Python manifest, or npm from package.json.
fn inspect_build(dir: &Path, m: &Manifests, f: &mut Findings) {
    let Manifests { requirements, package, .. } = m;
    if dir.join("requirements.txt").is_file() {
        f.build = Some(
            "python3 -m venv .venv && .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt"
                .into(),
        );
        f.build_path = Some(".venv/bin".into());
        f.build_from = "requirements.txt: a venv of the version's own".into();
    } else if m.pyproject {
        f.build = Some("python3 -m venv .venv && .venv/bin/pip install --quiet --disable-pip-version-check .".into());
        f.build_path = Some(".venv/bin".into());
        f.build_from = "pyproject.toml: the project installed into a venv of the version's own".into();
    } else if let Some(package) = package {
        let deps = ["dependencies", "optionalDependencies"]
            .iter()
            .any(|k| package[*k].as_object().is_some_and(|m| !m.is_empty()));
        if deps {
            f.build = Some(if dir.join("package-lock.json").is_file() { "npm ci" } else { "npm install" }.into());
            f.build_path = Some("node_modules/.bin".into());
            f.build_from = "package.json".into();
        } else if package.is_null() {
            f.build_from = "package.json is not JSON".into();
        } else {
            f.build_from = "package.json has no dependencies: nothing to install".into();
        }
    } else {
        f.build_from = "no requirements.txt, pyproject.toml or package.json".into();
    }
    let web_program =
        f.web.as_deref().and_then(|w| w.split_whitespace().find(|t| !t.contains('='))).map(str::to_string);
    if let Some(prog) =
        web_program.filter(|p| matches!(p.as_str(), "gunicorn" | "uvicorn" | "waitress-serve" | "hypercorn"))
    {
        let package = if prog == "waitress-serve" { "waitress".to_string() } else { prog.clone() };
        if f.build_path.as_deref() == Some(".venv/bin") && !requirements.contains(&package) {
            f.warnings.push(format!(
                "{prog} starts the app but is not in its requirements: add {package} to requirements.txt, or the deploy fails (the app runs on its own build, never the agent's tools)"
            ));
        }
    }
}

/// A Node app's tests: `node --test` files, unless package.json's test script runs another runner.
fn inspect_node_tests(dir: &Path, m: &Manifests, f: &mut Findings) {
    let script = m.package.as_ref().and_then(|p| p["scripts"]["test"].as_str()).unwrap_or_default().to_string();
    let other = ["jest", "mocha", "vitest", "ava", "tap", "jasmine", "karma"]
        .into_iter()
        .find(|r| script.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == *r));
    let found = node_test_files(dir);
    match other {
        Some(runner) => f.warnings.push(format!(
            "package.json's test script runs {runner}: write gate.command yourself, with a JUnit reporter, and gate.junit (no [gate] section was written)"
        )),
        None if !found.is_empty() => {
            f.tests = Some(format!("node --test: {}", found.join(", ")));
            f.node_tests = true;
            f.coverage = true;
        }
        None => {}
    }
}

/// A Python app's tests, run by pytest, and what its requirements lack to run them.
fn inspect_python_tests(dir: &Path, m: &Manifests, f: &mut Findings) {
    let requirements = &m.requirements;
    let found = super::layout::python_tests(dir);
    if !found.is_empty() {
        f.tests = Some(format!("pytest: {}", found.join(", ")));
        f.test_args = super::layout::pytest_args(&found);
        let defaults: Vec<String> = crate::gate::settings::Gate::default().tests.iter().map(|g| g.0.clone()).collect();
        f.test_globs = super::layout::uncovered(&found, &defaults);
        if !requirements.contains("pytest") {
            f.warnings.push(
                "pytest is not in the app's requirements: the gate runs `python3 -m pytest` (it runs unittest tests too, and writes the JUnit report), so the agent needs it; add pytest to requirements-dev.txt or install it there"
                    .into(),
            );
        }
        if dir.join("manage.py").is_file() && !requirements.contains("pytest-django") {
            f.warnings.push(
                "a Django project: its tests need pytest-django (and DJANGO_SETTINGS_MODULE) to run under pytest; add it to the requirements".into(),
            );
        }
    }
    f.coverage = requirements.contains("pytest-cov");
}

/// Where the app keeps its data, and the secrets it reads: the environments hand it both.
fn inspect_data(dir: &Path, sources: &[PathBuf], f: &mut Findings) {
    f.data = super::appdata::sqlite_in(dir);
    for db in &f.data {
        if db.var.is_none() {
            f.warnings.push(db.unmovable());
        }
    }
    for file in super::appdata::database_files(dir) {
        f.warnings.push(format!(
            "{file} is a database file beside the code: a version would bundle it; keep it out of git (the environments keep their data in $SAFEDEPLOY_DATA_DIR)"
        ));
    }
    f.secrets = super::layout::secrets_read(sources);
}

/// The routes the checks use: a health route, `/version`, and the smoke check's path.
fn inspect_routes(dir: &Path, sources: &[PathBuf], m: &Manifests, f: &mut Findings) {
    let (requirements, package, node_app) = (&m.requirements, &m.package, m.node_app);
    let mut routes = routes(sources);
    if node_app {
        routes.extend(js_routes(dir));
    }
    f.health_path = ["/health", "/healthz", "/ping", "/status", "/up"]
        .into_iter()
        .find(|r| routes.contains(*r))
        .unwrap_or("/")
        .to_string();
    if f.health_path == "/" {
        let node_deps: BTreeSet<String> = package
            .as_ref()
            .and_then(|p| p["dependencies"].as_object())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let app_object = wsgi_app(sources, dir).and_then(|a| a.rsplit(':').next().map(str::to_string));
        f.health_snippet = super::layout::framework(requirements, &node_deps, node_app, dir)
            .map(|fw| super::layout::health_snippet(fw, app_object.as_deref().unwrap_or("app")));
        f.warnings.push(format!(
            "no health route found (/health, /healthz, /ping, /status): deploy.health_path is \"/\", which must answer 2xx (a redirect to a login page does not); {}",
            if f.health_snippet.is_some() {
                "add the route below, run init --force again, and it is used"
            } else {
                "add a route answering 200 and set deploy.health_path to it"
            }
        ));
    }
    f.version_path = routes.contains("/version").then(|| "/version".to_string());
    f.smoke_path =
        if node_app && f.health_path != "/" && !routes.contains("/") { f.health_path.clone() } else { "/".into() };
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A field init writes: its key, its value as TOML, and a comment saying why (or nothing).
type Field = (&'static str, String, String);

/// The file being written, section by section.
struct Sections {
    t: String,
    written: BTreeSet<&'static str>,
    defaults: std::collections::BTreeMap<String, String>,
}

impl Sections {
    /// A section: the fields found, then the rest of its fields commented.
    fn section(&mut self, header: &str, lines: Vec<Field>) {
        let _ = writeln!(self.t, "\n[{header}]");
        for (key, value, why) in lines {
            if !why.is_empty() {
                let _ = writeln!(self.t, "# {why}");
            }
            let _ = writeln!(self.t, "{} = {value}", key.rsplit('.').next().unwrap_or(key));
            self.written.insert(key);
        }
        self.commented(header);
    }

    /// A section of defaults only: all comments, its header too.
    fn defaults_only(&mut self, header: &str) {
        let _ = writeln!(self.t, "\n# [{header}]");
        self.commented(header);
    }

    /// The section's fields not written, commented: what each does and its default.
    fn commented(&mut self, header: &str) {
        for field in fields::FIELDS.iter().filter(|x| {
            x.key.strip_prefix(header).is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.'))
        }) {
            if self.written.contains(field.key) {
                continue;
            }
            let name = field.key.rsplit('.').next().unwrap_or(field.key);
            let _ = match self.defaults.get(field.key) {
                Some(d) => writeln!(self.t, "# {name} = {d}    # {}", field.meaning),
                None => writeln!(self.t, "# {name}: {}", field.meaning),
            };
        }
    }
}

/// The file: what was found, written; every other field, commented with its default.
pub fn render(f: &Findings, ports: (u16, u16)) -> String {
    let mut out = Sections { t: String::new(), written: BTreeSet::new(), defaults: fields::defaults() };
    let _ = writeln!(
        out.t,
        "# safedeploy configuration for {}, written by `safedeploy init`.\n\
         # Every field is shown: those written are what init found; the commented ones carry their\n\
         # default. `safedeploy check` validates this file and prints the effective configuration.",
        f.name
    );
    out.section("app", vec![("app.name", toml_str(&f.name), String::new())]);
    out.section("build", build_fields(f));
    if let Some(gate) = gate_fields(f) {
        out.section("gate", gate);
    }
    out.section("deploy", deploy_fields(f));
    environments(&mut out.t, f, ports);
    let mut smoke = vec![];
    if let Some(v) = &f.version_path {
        smoke.push(("smoke.version_path", toml_str(v), "the app's own version route".into()));
    }
    out.section("smoke", smoke);
    let _ = writeln!(
        out.t,
        "\n# The journey a user walks, checked after every deploy. Add checks: a form posted, a redirect\n\
         # followed (see the README's smoke-check section).\n\
         [[smoke.checks]]\nname = \"{}\"\npath = {}\n{}expect_status = [200]",
        if f.smoke_path == "/" { "the home page answers" } else { "the health route answers (no home page found)" },
        toml_str(&f.smoke_path),
        // As a browser does: a home page that sends visitors to a login page answers there.
        if f.smoke_path == "/" { "follow_redirects = true\n" } else { "" }
    );
    for header in ["platform", "sla", "logs"] {
        out.defaults_only(header);
    }
    out.t
}

fn build_fields(f: &Findings) -> Vec<Field> {
    let mut build = vec![];
    if let Some(b) = &f.build {
        build.push((
            "build.command",
            toml_str(b),
            format!("run once per version, in its own directory ({})", f.build_from),
        ));
    }
    if let Some(p) = &f.build_path {
        build.push((
            "build.path",
            format!("[{}]", toml_str(p)),
            "first on the app's PATH: the app runs on what its build installed".into(),
        ));
    }
    build
}

/// The gate's fields, when tests were found: pytest's or node's command with a JUnit report,
/// the change policy, and coverage where the app has it.
fn gate_fields(f: &Findings) -> Option<Vec<Field>> {
    let tests = f.tests.as_ref()?;
    let mut cmd = vec!["python3", "-m", "pytest", "-q", "--junitxml=reports/junit.xml"];
    let (coverage, source) = if f.node_tests {
        cmd = vec![
            "node",
            "--test",
            "--experimental-test-coverage",
            "--test-reporter=junit",
            "--test-reporter-destination=reports/junit.xml",
            "--test-reporter=lcov",
            "--test-reporter-destination=reports/lcov.info",
        ];
        ("reports/lcov.info", "[\"**/*.js\", \"**/*.cjs\", \"**/*.mjs\"]")
    } else {
        if f.coverage {
            cmd.extend(["--cov=.", "--cov-report=xml:reports/coverage.xml"]);
        }
        cmd.extend(f.test_args.iter().map(String::as_str));
        ("reports/coverage.xml", "[\"**/*.py\"]")
    };
    let argv = format!("[{}]", cmd.iter().map(|a| toml_str(a)).collect::<Vec<_>>().join(", "));
    let named = if f.test_args.is_empty() { "" } else { "; named, since pytest's own discovery skips them" };
    let mut gate = vec![
        ("gate.command", argv, format!("the tests ({tests}{named}); argv, no shell")),
        ("gate.junit", toml_str("reports/junit.xml"), String::new()),
        ("gate.source", source.to_string(), "change policy: a source change must come with a test change".into()),
    ];
    if !f.test_globs.is_empty() {
        let mut globs: Vec<String> = crate::gate::settings::Gate::default().tests.iter().map(|g| g.0.clone()).collect();
        globs.extend(f.test_globs.iter().cloned());
        gate.push((
            "gate.tests",
            format!("[{}]", globs.iter().map(|g| toml_str(g)).collect::<Vec<_>>().join(", ")),
            "what counts as a test change: the defaults and the tests found here".into(),
        ));
    }
    if f.coverage {
        gate.push(("gate.coverage", toml_str(coverage), String::new()));
        gate.push(("gate.min_diff_coverage", "80".into(), "percent of the changed lines the tests must run".into()));
    }
    Some(gate)
}

fn deploy_fields(f: &Findings) -> Vec<Field> {
    let mut deploy = vec![(
        "deploy.health_path",
        toml_str(&f.health_path),
        if f.health_path == "/" {
            "no health route found: the home page must answer 2xx".into()
        } else {
            String::new()
        },
    )];
    if !f.web_from.starts_with(PROCFILE_WEB)
        && let Some(w) = &f.web
    {
        deploy.push(("deploy.command", toml_str(w), f.web_from.clone()));
    }
    deploy
}

/// Each environment: its address, where it keeps the app's data, and the secrets it hands over.
fn environments(t: &mut String, f: &Findings, (staging, production): (u16, u16)) {
    let _ = writeln!(t, "\n# Each environment: plain http on this machine, a port of its own (the local platform).");
    for (env, port) in [("staging", staging), ("production", production)] {
        let _ = writeln!(t, "[environments.{env}]\nurl = \"http://127.0.0.1:{port}\"\n");
        let data: Vec<_> = f.data.iter().filter_map(|d| Some((d.var.as_deref()?, d))).collect();
        if data.is_empty() && f.secrets.is_empty() {
            continue;
        }
        let _ = writeln!(t, "[environments.{env}.env]");
        for (var, db) in data {
            let _ = writeln!(
                t,
                "# The app keeps its SQLite database beside its code ({}); each deploy runs a fresh copy of\n\
                 # the code, so here it lives in the environment's data dir, shared by its versions.\n{var} = {}",
                db.at,
                toml_str(&db.kept_url())
            );
        }
        for secret in &f.secrets {
            let _ = writeln!(
                t,
                "# Read by the app; handed over from the deploying shell, never committed (in Jenkins:\n\
                 # withCredentials([string(credentialsId: '{env}-{}', variable: '{secret}')]) {{ ... }}).\n\
                 {secret} = {{ from_env = {} }}",
                secret.to_ascii_lowercase().replace('_', "-"),
                toml_str(secret)
            );
        }
        t.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_test_files_follow_the_runners_own_patterns() {
        let d = tempfile::tempdir().expect("tempdir");
        let touch = |rel: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, "").expect("write");
        };
        // Not tests: a test directory of no JavaScript, look-alikes, node_modules, hidden dirs.
        for rel in [
            "test/README.md",
            "latest.js",
            "contest.js",
            "test.json",
            "node_modules/x/a.test.js",
            ".cache/a.test.js",
            "src/app.js",
        ] {
            touch(rel);
        }
        assert!(node_test_files(d.path()).is_empty(), "{:?}", node_test_files(d.path()));
        for rel in ["a.test.js", "b-test.mjs", "c_test.cjs", "test-d.js", "test.js", "src/e.test.js", "test/f.js"] {
            touch(rel);
        }
        assert_eq!(
            node_test_files(d.path()),
            ["a.test.js", "b-test.mjs", "c_test.cjs", "src/e.test.js", "test/", "test-d.js", "test.js"]
        );
    }

    #[test]
    fn js_routes_are_string_literals_of_the_well_known_paths() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("server.js"),
            "if (url.pathname === '/healthz') {}\napp.get(\"/version\", f)\nconst x = '/healthcheck';\nconst parts = p.split('/');\n",
        )
        .expect("write");
        std::fs::create_dir_all(d.path().join("test")).expect("mkdir");
        std::fs::write(d.path().join("test/a.js"), "get('/ping')").expect("write");
        let found: Vec<String> = js_routes(d.path()).into_iter().collect();
        assert_eq!(
            found,
            ["/healthz", "/version"],
            "tests are not the app's routes; /healthcheck and split('/') are not"
        );
        for home in
            ["if (url.pathname === '/') {}", "switch (p) { case \"/\": }", "app.get(`/`, home)", "router.route('/')"]
        {
            std::fs::write(d.path().join("server.js"), home).expect("write");
            assert!(js_routes(d.path()).contains("/"), "{home}");
        }
    }

    #[test]
    fn requirement_names_are_normalised() {
        let names = requirement_names("Flask==2.2.2\ngunicorn>=20 # web\n-r base.txt\npytest_cov\n\n");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["flask", "gunicorn", "pytest-cov"]);
    }
}
