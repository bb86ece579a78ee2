//! Files written whole or not at all: [`write_atomic`], used for every output of the workspace
//! (checkpoints, `config.json`, metrics, plots, figures, benchmark rows).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a hidden temporary file in the same directory
/// (`.<name>.tmp-<pid>-<random>`) that is flushed, synced and renamed over `path`, creating the
/// parent directories. On any error (a full disk, a read-only folder) the temporary file is
/// removed and `path` is left as it was: a reader never sees a partial file. The new file's
/// mode follows the process's umask, as a plain `File::create` does (0644 under umask 022).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (dir, file_name) = place(path)?;
    let mut tmp = temp_file_in(&dir, &file_name)?;
    tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all())?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Best effort: make the rename durable where directories can be synced.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Checks that `path` can be written (its folder exists or can be made, and takes a new
/// file) before work whose result goes there, so a read-only or missing place fails first.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is a directory",
            path.display()
        )));
    }
    let (dir, file_name) = place(path)?;
    // Created and removed at once (dropped).
    temp_file_in(&dir, &file_name).map(drop)
}

/// The folder of `path` (created if missing; `.` for a bare name) and its file name.
fn place(path: &Path) -> std::io::Result<(PathBuf, String)> {
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    Ok((dir, file_name))
}

/// A new hidden temporary file `.<file_name>.tmp-<pid>-<random>` in `dir`, removed when
/// dropped unless persisted.
fn temp_file_in(dir: &Path, file_name: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let prefix = format!(".{file_name}.tmp-{}-", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).rand_bytes(8);
    // tempfile creates its files 0600; 0666 here goes through the umask like File::create.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn new_files_follow_the_umask_not_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // Whatever the umask, a plain File::create gives the same mode.
        let plain = dir.path().join("plain.txt");
        File::create(&plain).unwrap();
        let expected = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected);
    }

    #[test]
    fn a_directory_or_a_missing_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(dir.path()).is_err());
        assert!(write_atomic(Path::new("/"), b"x").is_err());
        check_writable(&dir.path().join("new").join("rows.csv")).unwrap();
    }
}
