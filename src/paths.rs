//! Paths built from inputs (a version label, an environment's name, an instance id an API
//! returned, a report path from the config) are proven to stay under their parent before
//! anything is created or removed there: a label of `..` once made a build remove the whole
//! platform state. Every such join goes through here.

use crate::error::Error;
use anyhow::Result;
use std::path::{Component, Path, PathBuf};

/// An output path the user gave must not start with `-`: `--out=-v` is a mistyped option far
/// more often than a file wanted in the working directory. `./-v` says it is meant.
pub fn not_an_option(path: &Path, what: &str) -> Result<()> {
    if path.to_string_lossy().starts_with('-') {
        return Err(Error::usage(format!(
            "{what} {:?}: starts with '-', like an option; write ./{} if a file of that name is meant",
            path.display(),
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// `parent/name`, where `name` must be one ordinary path component: not empty, not `.` or
/// `..`, no `/`, no NUL, no leading `-` (it could reach a command line as an option) and no
/// control characters. `what` names the input for the error (exit 2).
pub fn child(parent: &Path, name: &str, what: &str) -> Result<PathBuf> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.starts_with('-')
        || name.contains(['/', '\0'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(Error::usage(format!(
            "{what} {name:?} cannot name a directory under {}: expected a name without '/', not '.' or '..', not starting with '-'",
            parent.display()
        ))
        .into());
    }
    Ok(parent.join(name))
}

/// `parent/rel`, where `rel` must be relative and must not climb out of `parent` (`..` is
/// refused even where it would come back). `what` names the input for the error (exit 2).
pub fn under(parent: &Path, rel: &Path, what: &str) -> Result<PathBuf> {
    let escapes = rel.as_os_str().is_empty()
        || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        || rel.components().all(|c| c == Component::CurDir);
    if escapes {
        return Err(Error::usage(format!(
            "{what} {:?} must be a relative path inside {} (no '..', not absolute, not empty)",
            rel.display(),
            parent.display()
        ))
        .into());
    }
    Ok(parent.join(rel).components().collect())
}

/// `path` made absolute (against the working directory) with `.` and `..` resolved lexically:
/// `app/..` is the directory above `app`, though `app` may be a symlink (nothing is looked up,
/// and the path need not exist).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let full = std::path::absolute(path)?;
    let mut out = PathBuf::new();
    for c in full.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Where `path` leads: made absolute (as [`absolute`]), then its deepest existing ancestor
/// with its symlinks resolved and the rest appended. Two paths that name the same place
/// compare equal, whether or not it exists yet.
pub fn resolved(path: &Path) -> Result<PathBuf> {
    let full = absolute(path)?;
    let mut rest = vec![];
    let mut at = full.as_path();
    loop {
        if let Ok(real) = at.canonicalize() {
            return Ok(rest.iter().rev().fold(real, |p, name| p.join(name)));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = parent;
            }
            _ => return Ok(full),
        }
    }
}

/// Whether `a` and `b` are the same existing file (device and inode, through symlinks and
/// hard links alike).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_paths_meet_through_symlinks_and_missing_parts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).expect("symlink");
        let want = real.canonicalize().expect("canonical").join("new/report.txt");
        for p in ["link/new/report.txt", "real/./new/report.txt", "real/x/../new/report.txt"] {
            assert_eq!(resolved(&tmp.path().join(p)).expect("resolved"), want, "{p}");
        }
        std::fs::write(real.join("a"), "x").expect("write");
        std::fs::hard_link(real.join("a"), real.join("b")).expect("hard link");
        assert!(same_file(&tmp.path().join("link/a"), &real.join("b")));
        assert!(!same_file(&real.join("a"), &real.join("missing")));
    }

    #[test]
    fn a_child_is_one_ordinary_component() {
        let p = Path::new("/state/local/versions");
        assert_eq!(child(p, "v1.2_rc-3", "version").expect("ok"), p.join("v1.2_rc-3"));
        for bad in ["", ".", "..", "a/b", "../x", "-rf", "--help", "a\0b", "a\nb", "/abs"] {
            let e = child(p, bad, "version").expect_err(bad);
            assert_eq!(crate::error::kind_of(&e), crate::error::Kind::Usage, "{bad}");
            assert!(e.to_string().starts_with(&format!("version {bad:?} cannot name a directory under")), "{e}");
        }
        // Odd but harmless names are kept as they are.
        for odd in ["a b", "é", "x..y", "...", "$HOME", "a;b"] {
            assert_eq!(child(p, odd, "x").expect(odd), p.join(odd));
        }
    }

    #[test]
    fn absolute_paths_resolve_dots_lexically() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(absolute(Path::new("/a/b/../c/./d")).expect("abs"), Path::new("/a/c/d"));
        assert_eq!(absolute(Path::new("/..")).expect("abs"), Path::new("/"));
        assert_eq!(absolute(Path::new("-x")).expect("abs"), cwd.join("-x"));
        assert_eq!(absolute(Path::new("..")).expect("abs"), cwd.parent().unwrap_or(&cwd));
        assert!(absolute(Path::new("")).is_err(), "an empty path has no absolute form");
    }

    #[test]
    fn under_refuses_what_climbs_out() {
        let p = Path::new("/app");
        assert_eq!(under(p, Path::new("reports/junit.xml"), "gate.junit").expect("ok"), p.join("reports/junit.xml"));
        assert_eq!(under(p, Path::new("./reports/x.xml"), "f").expect("ok"), p.join("reports/x.xml"));
        for bad in ["", ".", "..", "../x", "a/../../b", "a/..", "/etc/passwd"] {
            let e = under(p, Path::new(bad), "gate.coverage").expect_err(bad);
            assert!(e.to_string().contains("must be a relative path inside /app"), "{e}");
        }
    }
}
