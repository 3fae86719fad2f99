//! Each environment runs its own working copy of a version, so staging and production never
//! share the app's working files: a file one writes (a link store beside the code, an upload,
//! a cache) is never seen by the other, nor by a later start of the same version.
//!
//! A copy is made from the built version under `<env>/work/<label>-<millis>/`, cheaply:
//! - the bundle's own files (listed at register, [`MANIFEST`]) are reflinked where the file
//!   system can (btrfs, XFS: copy-on-write, no data copied) and copied where it cannot;
//! - what the build made is hardlinked (a venv's thousands of files cost one link each) and a
//!   directory the build made whole (`.venv/`, `node_modules/`) is linked as one symlink. Build
//!   outputs are the version's, shared read-only by its copies: an app that writes into them
//!   writes into the version.
//!
//! Data meant to outlive a version belongs in the environment's data directory
//! (`$SAFEDEPLOY_DATA_DIR`, `<env>/data/`), as on Elastic Beanstalk, where `/var/app/current`
//! is replaced by every deploy and anything to keep goes to S3, RDS or EFS.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The file in a built version that lists the bundle's own files, one relative path a line.
pub const MANIFEST: &str = ".safedeploy-files";

/// Files of the version directory that are safedeploy's, not the app's.
fn is_ours(name: &std::ffi::OsStr) -> bool {
    name == MANIFEST || name == super::BUILT_MARKER
}

/// Lists the files under `dir` (just unpacked, not yet built) into its manifest.
pub fn write_manifest(dir: &Path) -> Result<()> {
    let mut files = vec![];
    collect(dir, Path::new(""), &mut files)?;
    let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    std::fs::write(dir.join(MANIFEST), text).with_context(|| format!("writing {}", dir.join(MANIFEST).display()))
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(root.join(rel)).with_context(|| format!("reading {}", root.join(rel).display()))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else if !is_ours(&entry.file_name()) {
            out.push(path);
        }
    }
    Ok(())
}

/// The bundle's files of a built version; `None` for a version built before manifests (all
/// its files are then copied).
fn manifest(version: &Path) -> Option<HashSet<PathBuf>> {
    let text = std::fs::read_to_string(version.join(MANIFEST)).ok()?;
    Some(text.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
}

/// What a copy cost, for the console.
#[derive(Debug, Default)]
pub struct Made {
    pub copied: usize,
    pub linked: usize,
}

/// Makes `to` a working copy of the built `version`.
pub fn make(version: &Path, to: &Path) -> Result<Made> {
    let bundle = manifest(version);
    // Directories that hold a bundle file are made; any other is the build's, linked whole.
    let bundle_dirs: Option<HashSet<PathBuf>> =
        bundle.as_ref().map(|b| b.iter().flat_map(|f| f.ancestors().skip(1).map(Path::to_path_buf)).collect());
    let mut made = Made::default();
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    copy_dir(version, to, Path::new(""), &bundle, &bundle_dirs, &mut made)
        .with_context(|| format!("making a working copy of {} in {}", version.display(), to.display()))?;
    Ok(made)
}

fn copy_dir(
    from: &Path,
    to: &Path,
    rel: &Path,
    bundle: &Option<HashSet<PathBuf>>,
    bundle_dirs: &Option<HashSet<PathBuf>>,
    made: &mut Made,
) -> Result<()> {
    for entry in std::fs::read_dir(from.join(rel))? {
        let entry = entry?;
        if is_ours(&entry.file_name()) {
            continue;
        }
        let path = rel.join(entry.file_name());
        let (src, dst) = (from.join(&path), to.join(&path));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            if bundle_dirs.as_ref().is_some_and(|d| !d.contains(&path)) {
                std::os::unix::fs::symlink(&src, &dst)?;
                made.linked += 1;
            } else {
                std::fs::create_dir(&dst)?;
                copy_dir(from, to, &path, bundle, bundle_dirs, made)?;
            }
        } else if bundle.as_ref().is_none_or(|b| b.contains(&path)) {
            reflink_copy::reflink_or_copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
            made.copied += 1;
        } else {
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
            }
            made.linked += 1;
        }
    }
    Ok(())
}

/// A snapshot of a data dir (`from`, which may not exist yet: the snapshot is then empty) in
/// `to`: every file reflinked where the file system can, else copied; symlinks kept as links.
/// A file written while it is copied may be caught part-way (a database without its own backup
/// command, copied as files, is as consistent as a copy taken during a power cut).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    if !from.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            reflink_copy::reflink_or_copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn bundle_files_are_private_and_build_outputs_shared() {
        let tmp = tempfile::tempdir().expect("tmp");
        let v = tmp.path().join("v1");
        std::fs::create_dir_all(v.join("templates")).expect("dir");
        std::fs::write(v.join("application.py"), "app").expect("write");
        std::fs::write(v.join("templates/index.html"), "<html>").expect("write");
        write_manifest(&v).expect("manifest");
        // The build: a directory of its own, and a file beside the bundle's.
        std::fs::create_dir_all(v.join(".venv/bin")).expect("dir");
        std::fs::write(v.join(".venv/bin/gunicorn"), "#!").expect("write");
        std::fs::write(v.join("templates/compiled.css"), "css").expect("write");
        std::fs::write(v.join(super::super::BUILT_MARKER), "sum").expect("write");

        let (a, b) = (tmp.path().join("staging"), tmp.path().join("production"));
        let made = make(&v, &a).expect("copy");
        make(&v, &b).expect("copy");
        assert_eq!((made.copied, made.linked), (2, 2), "{made:?}");
        // A bundle file written in one copy is not seen by the other or by the version.
        std::fs::write(a.join("application.py"), "changed").expect("write");
        assert_eq!(std::fs::read_to_string(b.join("application.py")).expect("read"), "app");
        assert_eq!(std::fs::read_to_string(v.join("application.py")).expect("read"), "app");
        // Build outputs: the same file, no data copied.
        let ino = |p: &Path| std::fs::metadata(p).expect("meta").ino();
        assert_eq!(ino(&a.join("templates/compiled.css")), ino(&v.join("templates/compiled.css")));
        assert!(std::fs::symlink_metadata(a.join(".venv")).expect("meta").file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(a.join(".venv/bin/gunicorn")).expect("read"), "#!");
        // safedeploy's own files stay with the version.
        assert!(!a.join(MANIFEST).exists() && !a.join(super::super::BUILT_MARKER).exists());
    }

    #[test]
    fn a_data_snapshot_is_its_own_and_a_missing_dir_is_an_empty_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("uploads")).expect("dir");
        std::fs::write(data.join("blog.db"), "rows").expect("write");
        std::fs::write(data.join("uploads/a.png"), "png").expect("write");
        std::os::unix::fs::symlink("blog.db", data.join("current.db")).expect("link");
        let copy = tmp.path().join("copy");
        copy_tree(&data, &copy).expect("copy");
        std::fs::write(copy.join("blog.db"), "changed by a check").expect("write");
        assert_eq!(
            std::fs::read_to_string(data.join("blog.db")).expect("read"),
            "rows",
            "the users' data is untouched"
        );
        assert_eq!(std::fs::read_to_string(copy.join("uploads/a.png")).expect("read"), "png");
        assert_eq!(std::fs::read_link(copy.join("current.db")).expect("link"), Path::new("blog.db"));
        copy_tree(&tmp.path().join("nothing"), &tmp.path().join("empty")).expect("copy");
        assert_eq!(std::fs::read_dir(tmp.path().join("empty")).expect("dir").count(), 0);
    }

    #[test]
    fn a_version_built_without_a_manifest_is_copied_whole() {
        let tmp = tempfile::tempdir().expect("tmp");
        let v = tmp.path().join("v1");
        std::fs::create_dir_all(v.join("lib")).expect("dir");
        std::fs::write(v.join("lib/x.py"), "x").expect("write");
        let made = make(&v, &tmp.path().join("c")).expect("copy");
        assert_eq!((made.copied, made.linked), (1, 0));
    }
}
