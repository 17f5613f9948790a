//! Which versions need a load: what each configured version is loaded from (its config
//! and the stamps of its local files), and the decision, per version, over what serves,
//! what failed and what is loading. The reloader only calls [`step`].

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use modelplane_config::{
    Batching, Generation, ModelConfig, ModelFormat, Source, Task, TensorSpec, TokenizerConfig,
    VersionConfig,
};

use super::tokenizer;
use crate::model::SIGNATURE_FILE;

/// A configured version: model name and version label.
pub(super) type Key = (String, String);

/// What a version was (or is to be) loaded from; a change triggers a reload.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Wanted {
    version: VersionConfig,
    task: Task,
    generation: Generation,
    format: ModelFormat,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    batching: Batching,
    tokenizer: Option<TokenizerConfig>,
    files: Option<FileStamp>,
}

/// Identity of a local model file, its signature and tokenizer files (or of every file in
/// a generate model's folder): a rewrite, a rename over it or a symlink swap all change it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    model: Option<Stamp>,
    signature: Option<Stamp>,
    /// The tokenizer, where the folder's stamps do not cover it.
    tokenizer: Option<Stamp>,
    /// The model-signing bundle, when the version's signature check reads a local one.
    bundle: Option<Stamp>,
    folder: Vec<(PathBuf, Option<Stamp>)>,
}

/// Inode, length and modification time of a file.
type Stamp = (u64, u64, i64, i64);

/// Most files of a model folder watched for changes.
const MAX_FOLDER_FILES: usize = 64;

/// What every configured version is to be loaded from. Stats files: call it on the
/// blocking pool.
pub(super) fn wanted_all(models: &[ModelConfig]) -> HashMap<Key, Wanted> {
    models
        .iter()
        .flat_map(|model| {
            model.versions.iter().map(move |version| {
                let key = (model.name.clone(), version.version.clone());
                (key, Wanted::of(model, version))
            })
        })
        .collect()
}

/// Stamps of the files in a folder, by name (empty for an unreadable folder).
fn folder_stamps(dir: &Path) -> Vec<(PathBuf, Option<Stamp>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .take(MAX_FOLDER_FILES)
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let stamp = stamp(&path);
            (path, stamp)
        })
        .collect()
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec()))
}

impl Wanted {
    fn of(model: &ModelConfig, version: &VersionConfig) -> Self {
        let files = match &version.source {
            Source::Path(path) => {
                let path = Path::new(path);
                let signature = path.parent().map(|dir| dir.join(SIGNATURE_FILE));
                // A generate model is its whole folder (config.json, tokenizer.json, ...).
                let folder = match path.parent() {
                    _ if model.task != Task::Generate => Vec::new(),
                    Some(parent) if !path.is_dir() => folder_stamps(parent),
                    _ => folder_stamps(path),
                };
                Some(FileStamp {
                    model: stamp(path),
                    signature: signature.as_deref().and_then(stamp),
                    tokenizer: tokenizer::watched_file(model, path)
                        .as_deref()
                        .and_then(stamp),
                    bundle: crate::signing::local_bundle(version, path)
                        .as_deref()
                        .and_then(stamp),
                    folder,
                })
            }
            Source::Http(_) | Source::Oci(_) => None,
        };
        Self {
            version: version.clone(),
            task: model.task,
            generation: model.generation.clone(),
            format: model.format,
            inputs: model.inputs.clone(),
            outputs: model.outputs.clone(),
            batching: model.batching.clone(),
            tokenizer: tokenizer::configured(model).cloned(),
            files,
        }
    }
}

/// What one configured version needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The serving instance was loaded from what is wanted: it serves, state ready.
    Serve,
    /// What is wanted already failed to load: not retried until it changes.
    KeepFailed,
    /// A load of exactly what is wanted is under way.
    Wait,
    /// A (re)load is needed; any load under way is for something older.
    Load,
}

/// What a version last loaded, failed on and is loading (each: what it was loaded from).
#[derive(Clone, Copy, Default)]
pub(super) struct Known<'a> {
    /// What the serving instance was loaded from (`None`: nothing serves).
    pub serving: Option<&'a Wanted>,
    /// What the latest failed load was for.
    pub failed: Option<&'a Wanted>,
    /// What the load under way is for.
    pub loading: Option<&'a Wanted>,
}

/// The next step of a version. A load under way for anything but `wanted` is superseded
/// by every answer but [`Step::Wait`].
pub(super) fn step(wanted: &Wanted, known: Known<'_>) -> Step {
    if known.loading == Some(wanted) {
        Step::Wait
    } else if known.serving == Some(wanted) {
        Step::Serve
    } else if known.failed == Some(wanted) {
        Step::KeepFailed
    } else {
        Step::Load
    }
}

#[cfg(test)]
mod tests {
    use modelplane_config::RuntimeConfig;

    use super::*;

    fn wanted(source: &str) -> Wanted {
        let yaml = format!("models: [{{name: m, versions: [{{version: '1', source: {source}}}]}}]");
        let config = RuntimeConfig::from_yaml(&yaml).expect("config");
        let model = &config.models[0];
        Wanted::of(model, &model.versions[0])
    }

    #[test]
    fn the_next_step_follows_what_serves_failed_and_loads() {
        let (a, b) = (
            wanted("{path: /nowhere/a.pt}"),
            wanted("{path: /nowhere/b.pt}"),
        );
        let none = Known::default();
        let known = |serving, failed, loading| Known {
            serving,
            failed,
            loading,
        };
        let table: [(&str, Known<'_>, Step); 9] = [
            ("never seen", none, Step::Load),
            ("serves it", known(Some(&a), None, None), Step::Serve),
            (
                "serves an older one",
                known(Some(&b), None, None),
                Step::Load,
            ),
            ("it failed", known(None, Some(&a), None), Step::KeepFailed),
            (
                "it failed, an older one serves",
                known(Some(&b), Some(&a), None),
                Step::KeepFailed,
            ),
            ("another failed", known(None, Some(&b), None), Step::Load),
            (
                "it is loading",
                known(Some(&b), Some(&b), Some(&a)),
                Step::Wait,
            ),
            (
                "an older one is loading",
                known(None, None, Some(&b)),
                Step::Load,
            ),
            // Back to what serves while a newer load runs: the load is superseded.
            (
                "reverted while loading",
                known(Some(&a), None, Some(&b)),
                Step::Serve,
            ),
        ];
        for (case, known, expected) in table {
            assert_eq!(step(&a, known), expected, "{case}");
        }
    }

    #[test]
    fn a_canary_change_reloads_no_version() {
        let wanted = |canary: &str| {
            let yaml = format!(
                "models: [{{name: m, defaultVersion: '1', versions: [{{version: '1', source: \
                 {{path: /nowhere/1.pt}}}}, {{version: '2', source: {{path: /nowhere/2.pt}}}}]{canary}}}]"
            );
            wanted_all(&RuntimeConfig::from_yaml(&yaml).expect("config").models)
        };
        let before = wanted(", canary: {candidate: '2', weight: 10}");
        for canary in [
            ", canary: {candidate: '2', weight: 50}",
            ", canary: {candidate: '2', weight: 0, match: [{tenants: [beta]}], stickyBy: x-user}",
            "",
        ] {
            let after = wanted(canary);
            assert_eq!(after, before, "{canary:?}");
            for (key, wanted) in &after {
                let serving = Known {
                    serving: before.get(key),
                    ..Known::default()
                };
                assert_eq!(step(wanted, serving), Step::Serve, "{key:?} {canary:?}");
            }
        }
    }

    #[test]
    fn a_local_file_that_changes_is_wanted_anew() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.pt");
        std::fs::write(&path, b"one").expect("write");
        let source = format!("{{path: '{}'}}", path.display());
        let before = wanted(&source);
        assert_eq!(wanted(&source), before, "unchanged files stamp the same");
        let staged = dir.path().join("staged");
        std::fs::write(&staged, b"two!").expect("write");
        std::fs::rename(&staged, &path).expect("rename");
        assert_ne!(wanted(&source), before, "a rename over the file is seen");
    }
}
