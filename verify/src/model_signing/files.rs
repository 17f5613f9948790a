//! Hashing a model's files the way model-signing's `files` serialization does, and comparing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// How the model on disk differs from what was signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileMismatch {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {detail}")]
    Unreadable {
        /// The path.
        path: String,
        /// The I/O error.
        detail: String,
    },
    /// A symlink where the signer did not allow them.
    #[error("{path} is a symlink and the signature does not allow symlinks")]
    Symlink {
        /// The path relative to the model root.
        path: String,
    },
    /// A signed file is absent.
    #[error("signed file {name} is missing")]
    Missing {
        /// The path relative to the model root.
        name: String,
    },
    /// A file that was not signed is present.
    #[error("file {name} is not covered by the signature")]
    Unexpected {
        /// The path relative to the model root.
        name: String,
    },
    /// A file's content differs from what was signed.
    #[error("file {name} hashes to {actual}, signed as {expected}")]
    Changed {
        /// The path relative to the model root.
        name: String,
        /// The signed digest.
        expected: Digest,
        /// The digest of the file now.
        actual: Digest,
    },
}

impl FileMismatch {
    /// Whether the files could not be read at all (rather than differing).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::Unreadable { .. })
    }
}

/// sha256 of every regular file under `root` by `/`-separated relative path (`.` when `root` is
/// a file), skipping `ignores` (relative paths, each also covering everything below it).
pub fn hash_model_files(
    root: &Path,
    ignores: &[String],
    allow_symlinks: bool,
) -> Result<BTreeMap<String, Digest>, FileMismatch> {
    let mut files = BTreeMap::new();
    if !metadata(root, true)?.is_dir() {
        files.insert(".".to_owned(), hash_file(root)?);
        return Ok(files);
    }
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let entries = std::fs::read_dir(&dir).map_err(|e| unreadable(&dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| unreadable(&dir, &e))?;
            let child = relative.join(entry.file_name());
            let name = slash_path(&child);
            if is_ignored(&name, ignores) {
                continue;
            }
            let full = root.join(&child);
            if metadata(&full, false)?.is_symlink() && !allow_symlinks {
                return Err(FileMismatch::Symlink { path: name });
            }
            if metadata(&full, true)?.is_dir() {
                pending.push(child);
            } else {
                files.insert(name, hash_file(&full)?);
            }
        }
    }
    Ok(files)
}

/// Compares signed file digests with the files found, naming the first difference.
pub(crate) fn compare(
    signed: &BTreeMap<String, Digest>,
    actual: &BTreeMap<String, Digest>,
) -> Result<(), FileMismatch> {
    for (name, expected) in signed {
        match actual.get(name) {
            None => return Err(FileMismatch::Missing { name: name.clone() }),
            Some(found) if found != expected => {
                return Err(FileMismatch::Changed {
                    name: name.clone(),
                    expected: expected.clone(),
                    actual: found.clone(),
                });
            }
            Some(_) => {}
        }
    }
    match actual.keys().find(|name| !signed.contains_key(*name)) {
        Some(name) => Err(FileMismatch::Unexpected { name: name.clone() }),
        None => Ok(()),
    }
}

fn is_ignored(name: &str, ignores: &[String]) -> bool {
    ignores.iter().any(|ignore| {
        let ignore = ignore.trim_end_matches('/');
        name == ignore
            || name
                .strip_prefix(ignore)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn metadata(path: &Path, follow: bool) -> Result<std::fs::Metadata, FileMismatch> {
    let result = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    result.map_err(|e| unreadable(path, &e))
}

fn hash_file(path: &Path) -> Result<Digest, FileMismatch> {
    let mut file = File::open(path).map_err(|e| unreadable(path, &e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| unreadable(path, &e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(Digest::from_raw(hasher.finalize().into()))
}

fn unreadable(path: &Path, error: &std::io::Error) -> FileMismatch {
    FileMismatch::Unreadable {
        path: path.display().to_string(),
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, content: &str) {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn directory_files_are_hashed_by_slash_relative_path_minus_ignores() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.bin", "hello\n");
        write(dir.path(), "sub/b.txt", "world\n");
        write(dir.path(), ".git/HEAD", "ref");
        write(dir.path(), "model.sig", "{}");
        let ignores = [".git".to_owned(), "model.sig".to_owned()];
        let files = hash_model_files(dir.path(), &ignores, false).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["a.bin", "sub/b.txt"]);
        // sha256("hello\n"), as model-signing records it.
        assert_eq!(
            files["a.bin"].hex(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }

    #[test]
    fn a_single_file_model_is_named_dot() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "model.pt", "hello\n");
        let files = hash_model_files(&dir.path().join("model.pt"), &[], false).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["."]);
    }

    #[test]
    fn ignore_matches_whole_components_only() {
        assert!(is_ignored(".git/config", &[".git".into()]));
        assert!(is_ignored(".git", &[".git/".into()]));
        assert!(!is_ignored(".github/x", &[".git".into()]));
    }

    #[test]
    fn symlinks_are_refused_unless_the_signer_allowed_them() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "real", "x");
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        assert!(matches!(
            hash_model_files(dir.path(), &[], false),
            Err(FileMismatch::Symlink { path }) if path == "link"
        ));
        assert_eq!(hash_model_files(dir.path(), &[], true).unwrap().len(), 2);
    }

    #[test]
    fn compare_names_missing_changed_and_unexpected_files() {
        let d = |b| Digest::from_raw([b; 32]);
        let signed: BTreeMap<_, _> = [("a".to_owned(), d(1)), ("b".to_owned(), d(2))].into();
        assert_eq!(compare(&signed, &signed.clone()), Ok(()));
        let mut changed = signed.clone();
        changed.insert("b".into(), d(3));
        assert!(
            matches!(compare(&signed, &changed), Err(FileMismatch::Changed { name, .. }) if name == "b")
        );
        let mut missing = signed.clone();
        missing.remove("a");
        assert!(
            matches!(compare(&signed, &missing), Err(FileMismatch::Missing { name }) if name == "a")
        );
        let mut extra = signed.clone();
        extra.insert("c".into(), d(4));
        assert!(
            matches!(compare(&signed, &extra), Err(FileMismatch::Unexpected { name }) if name == "c")
        );
    }

    #[test]
    fn missing_model_path_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let err = hash_model_files(&dir.path().join("nope"), &[], false).unwrap_err();
        assert!(err.is_unreadable());
    }
}
