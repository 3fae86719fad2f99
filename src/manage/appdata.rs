//! What an app's own files say about where it keeps its data and where it listens, read by
//! `init` (to write the config that keeps the data) and `check` (to warn when a config loses
//! it): a SQLite database the sources place beside the code, the variable they read its URL
//! from, database files in the tree, and a web line that binds every interface.
//!
//! On the local platform each deploy starts a fresh working copy of the version, so a file the
//! app writes beside its code is gone at the next deploy: the data must live in
//! `$SAFEDEPLOY_DATA_DIR`, which every version of an environment shares.

use crate::config::Config;
use crate::config::appenv::AppValue;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// A SQLite database the app's sources place somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sqlite {
    /// Where the sources say so, relative to the app (`app.py:12`).
    pub at: String,
    /// The variable the app reads the URL from first, if it reads one.
    pub var: Option<String>,
    /// The database file's name (`app.db`).
    pub file: String,
}

impl Sqlite {
    /// The value that puts the database in the environment's data dir.
    pub fn kept_url(&self) -> String {
        format!("sqlite:///${{SAFEDEPLOY_DATA_DIR}}/{}", self.file)
    }

    /// What init and check say of a database whose place the app reads from no variable.
    pub fn unmovable(&self) -> String {
        format!(
            "{} keeps its SQLite database in the app's directory and reads no variable for it: each deploy starts a fresh working copy, so the data would start empty every time; read the URL from a variable (os.environ.get(\"DATABASE_URL\") or ...) and set it to {} in each environment",
            self.at,
            self.kept_url()
        )
    }
}

/// A Python read of an environment variable (`os.environ.get("X"`, `os.getenv("X"`,
/// `os.environ["X"]`): the name in group 1 or 2.
pub(super) static ENV_READ: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r#"(?:environ\.get|getenv|environ\.setdefault)\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]|environ\[\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\]"#)
        .expect("a valid pattern")
});
static DB_FILE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r#"['"/]([A-Za-z0-9_.-]+\.(?:db|sqlite3?|sqlite))['"]"#).expect("a valid pattern")
});

/// The Python sources of the app: the top and one level down (where a small app keeps them),
/// not its venvs, dependencies, migrations or tests (a test configures throwaway databases and
/// declares no routes), each at most 1 MiB.
pub(super) fn python_sources(dir: &Path) -> Vec<PathBuf> {
    let skip = |n: &str| {
        n.starts_with('.')
            || matches!(n, "venv" | "env" | "node_modules" | "tests" | "test" | "migrations" | "site-packages")
    };
    let test_file = |n: &str| matches!(n, "tests.py" | "test.py") || n.starts_with("test_") || n.ends_with("_test.py");
    let mut dirs = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_dir()) && !skip(&n) {
            dirs.push(e.path());
        }
    }
    let mut out = vec![];
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let small = e.metadata().is_ok_and(|m| m.is_file() && m.len() <= 1024 * 1024);
            if n.ends_with(".py") && !test_file(&n) && small {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The SQLite databases the sources place (a `sqlite:` URL, or a `*.db` / `*.sqlite3` name in a
/// database setting), each with the variable read on the same line. `:memory:` is no data.
pub fn sqlite_in(dir: &Path) -> Vec<Sqlite> {
    let mut out: Vec<Sqlite> = vec![];
    for path in python_sources(dir) {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
        for (i, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or_default();
            let lower = code.to_ascii_lowercase();
            let sqlite = lower.contains("sqlite:") || (lower.contains("name") && DB_FILE.is_match(code));
            if !sqlite || lower.contains(":memory:") {
                continue;
            }
            let var = ENV_READ.captures(code).and_then(|c| c.get(1).or(c.get(2))).map(|m| m.as_str().to_string());
            let file = DB_FILE
                .captures(code)
                .map(|c| c[1].to_string())
                .or_else(|| {
                    let after = code.split("sqlite:///").nth(1)?;
                    let name: String = after.chars().take_while(|c| !matches!(c, '\'' | '"' | ' ' | ')')).collect();
                    let base = name.rsplit('/').next()?.to_string();
                    (!base.is_empty()).then_some(base)
                })
                .unwrap_or_else(|| "app.db".into());
            let found = Sqlite { at: format!("{rel}:{}", i + 1), var, file };
            if !out.iter().any(|s| s.var == found.var && s.file == found.file) {
                out.push(found);
            }
        }
    }
    out
}

/// Database files in the tree beside the code (the top and one level down).
pub fn database_files(dir: &Path) -> Vec<String> {
    let db = |n: &str| [".db", ".sqlite", ".sqlite3"].iter().any(|e| n.ends_with(e));
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') || matches!(n.as_str(), "venv" | "node_modules") {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            for inner in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let m = inner.file_name().to_string_lossy().into_owned();
                if db(&m) && inner.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(format!("{n}/{m}"));
                }
            }
        } else if db(&n) {
            out.push(n);
        }
    }
    out.sort();
    out
}

/// Whether a web line listens on every interface (`0.0.0.0`, `[::]`, gunicorn's `:PORT`), not
/// only on loopback behind the proxy.
pub fn binds_everywhere(web: &str) -> bool {
    let words: Vec<&str> = web.split_whitespace().collect();
    words.iter().enumerate().any(|(i, w)| {
        let value = w.split_once('=').map_or(*w, |(_, v)| v).trim_matches(['"', '\'']);
        let after_flag = i > 0 && matches!(words[i - 1], "-b" | "--bind" | "--host" | "-H" | "--listen");
        value.starts_with("0.0.0.0")
            || value.starts_with("[::]")
            || (value == "::" && after_flag)
            || (after_flag && value.starts_with(':'))
    })
}

/// The warning for a web line that binds every interface, naming where it is written.
pub fn bind_warning(web: &str, from: &str) -> Option<String> {
    binds_everywhere(web).then(|| {
        format!(
            "{from} binds every interface ({web}): the app answers on this machine's network beside nginx, around the proxy's switch and canary; bind 127.0.0.1:$PORT"
        )
    })
}

/// What a configuration loses or exposes, read from the app's files: a SQLite database left in
/// the version's working copy, a database file committed beside the code.
pub fn warnings(config: &Config) -> Vec<String> {
    if config.platform.kind != crate::config::PlatformKind::Local {
        return vec![];
    }
    let dir = config.source_dir();
    let mut out = vec![];
    for db in sqlite_in(&dir) {
        let Some(var) = &db.var else {
            out.push(db.unmovable());
            continue;
        };
        for env in config.environments.values() {
            match env.env.get(var) {
                None => out.push(format!(
                    "environments.{}.env.{var} is not set, so the app's default ({}) keeps its SQLite database in the version's working copy: every deploy starts with an empty database; set {var} = \"{}\"",
                    env.name,
                    db.at,
                    db.kept_url()
                )),
                Some(v) if in_working_copy(v) => out.push(format!(
                    "environments.{}.env.{var} = {:?} is a path in the version's working copy: every deploy starts with an empty database; set it to \"{}\"",
                    env.name,
                    v.text().unwrap_or_default(),
                    db.kept_url()
                )),
                Some(_) => {}
            }
        }
    }
    for file in database_files(&dir) {
        out.push(format!(
            "{file} is a database file beside the code: a version bundles it and each deploy starts from that copy; keep data in $SAFEDEPLOY_DATA_DIR and the file out of git"
        ));
    }
    out
}

/// A SQLite URL with a relative path (`sqlite:///app.db`): relative to the working copy the app
/// runs in. `${SAFEDEPLOY_DATA_DIR}`, an absolute path and other URLs are kept.
fn in_working_copy(v: &AppValue) -> bool {
    let Some(t) = v.text() else { return false };
    let Some(path) = t.strip_prefix("sqlite:///").or_else(|| t.strip_prefix("sqlite+pysqlite:///")) else {
        return false;
    };
    !(path.starts_with('/') || path.starts_with("${SAFEDEPLOY_DATA_DIR}") || path.starts_with(":memory:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_defaults_are_found_with_the_variable_they_read() {
        let d = tempfile::tempdir().expect("tempdir");
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "SQLALCHEMY_DATABASE_URI = os.environ.get('DATABASE_URL') or 'sqlite:///' + os.path.join(basedir, 'app.db')",
                Some(("DATABASE_URL", "app.db")),
            ),
            (r#"uri = os.getenv("DB_URL", "sqlite:///blog.sqlite3")"#, Some(("DB_URL", "blog.sqlite3"))),
            (
                r#"uri = os.environ["DATABASE_URI"] if x else "sqlite:///data/main.db""#,
                Some(("DATABASE_URI", "main.db")),
            ),
            (r#"SQLALCHEMY_DATABASE_URI = "sqlite:///site.db""#, Some(("", "site.db"))),
            (r#"'NAME': BASE_DIR / 'db.sqlite3',"#, Some(("", "db.sqlite3"))),
            (r#"engine = create_engine("sqlite:///:memory:")"#, None),
            (r#"# uri = "sqlite:///commented.db""#, None),
            (r#"NAME = "not-a-database.txt""#, None),
        ];
        for (line, want) in cases {
            std::fs::write(d.path().join("config.py"), format!("import os\n{line}\n")).expect("write");
            let found = sqlite_in(d.path());
            match want {
                None => assert!(found.is_empty(), "{line}: {found:?}"),
                Some((var, file)) => {
                    assert_eq!(found.len(), 1, "{line}: {found:?}");
                    assert_eq!(found[0].var.as_deref().unwrap_or(""), *var, "{line}");
                    assert_eq!(found[0].file, *file, "{line}");
                    assert_eq!(found[0].at, "config.py:2");
                }
            }
        }
        // A test's own database is not the app's.
        std::fs::write(d.path().join("config.py"), "").expect("write");
        std::fs::write(d.path().join("tests.py"), "URI = 'sqlite:///test.db'\n").expect("write");
        assert!(sqlite_in(d.path()).is_empty());
    }

    #[test]
    fn a_web_line_binding_every_interface_is_told_from_loopback() {
        for (line, everywhere) in [
            ("gunicorn --bind 0.0.0.0:$PORT app:app", true),
            ("gunicorn -b 0.0.0.0:$PORT app:app", true),
            ("gunicorn --bind=0.0.0.0:$PORT app:app", true),
            ("gunicorn -b :$PORT app:app", true),
            ("gunicorn --bind [::]:$PORT app:app", true),
            ("uvicorn main:app --host 0.0.0.0 --port $PORT", true),
            ("uvicorn main:app --host :: --port $PORT", true),
            ("flask run --host=0.0.0.0", true),
            ("gunicorn --bind 127.0.0.1:$PORT app:app", false),
            ("node server.js", false),
            ("uvicorn main:app --port $PORT", false),
            ("", false),
        ] {
            assert_eq!(binds_everywhere(line), everywhere, "{line}");
        }
    }

    #[test]
    fn only_relative_sqlite_paths_are_in_the_working_copy() {
        for (v, inside) in [
            ("sqlite:///app.db", true),
            ("sqlite:///data/app.db", true),
            ("sqlite+pysqlite:///app.db", true),
            ("sqlite:///${SAFEDEPLOY_DATA_DIR}/app.db", false),
            ("sqlite:////var/lib/app/app.db", false),
            ("sqlite:///:memory:", false),
            ("postgresql://db/app", false),
        ] {
            assert_eq!(in_working_copy(&AppValue::Text(v.into())), inside, "{v}");
        }
        assert!(!in_working_copy(&AppValue::FromEnv("X".into())));
    }
}
