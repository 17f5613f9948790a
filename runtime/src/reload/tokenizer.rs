//! Which tokenizer a version reads, and reading it. A configured `tokenizer` (a path in
//! the model's folder) is required: missing, unparsable or not matching its sha256, it
//! fails the load, naming the file. Unset, an embed model reads `tokenizer.json` beside
//! its model file when there is one (without it, it takes token ids only), and a generate
//! model the file its `config.json` names in `tokenizer_file`.

use std::path::{Path, PathBuf};

use modelplane_config::{DEFAULT_TOKENIZER_FILE, ModelConfig, Source, Task, TokenizerConfig};
use modelplane_generate::config::GenerateModelConfig;
use modelplane_generate::text::TextCodec;
use sha2::{Digest, Sha256};

use crate::source::{Artifact, Fetcher};

/// The configured tokenizer of a model whose task reads one (`embed`, `generate`).
pub(super) fn configured(model: &ModelConfig) -> Option<&TokenizerConfig> {
    matches!(model.task, Task::Embed | Task::Generate)
        .then_some(model.tokenizer.as_ref())
        .flatten()
}

/// Brings an `http` embed model's tokenizer into its cache folder: the configured one
/// (a failure fails the load), else `tokenizer.json` beside the model URL when the server
/// has one. Other sources have theirs in the model's folder already.
pub(super) async fn fetch(
    fetcher: &Fetcher,
    model: &ModelConfig,
    source: &Source,
    artifact: &Artifact,
) -> Result<(), String> {
    if model.task != Task::Embed || !matches!(source, Source::Http(_)) {
        return Ok(());
    }
    if let Some(tokenizer) = configured(model) {
        return fetcher
            .fetch_beside(
                source,
                artifact,
                &tokenizer.path,
                tokenizer.sha256.as_deref(),
            )
            .await
            .map(drop)
            .map_err(|err| format!("tokenizer {}: {err}", tokenizer.path));
    }
    if let Err(err) = fetcher
        .fetch_beside(source, artifact, DEFAULT_TOKENIZER_FILE, None)
        .await
    {
        tracing::warn!(model = %model.name, error = %err, "no tokenizer beside the model URL; /v1/embeddings refuses text until one is configured");
    }
    Ok(())
}

/// The tokenizer of an embed model whose file is `model_path` (`None`: no tokenizer,
/// text input is refused).
pub(super) fn embed_codec(
    model: &ModelConfig,
    model_path: &Path,
) -> Result<Option<TextCodec>, String> {
    if model.task != Task::Embed {
        return Ok(None);
    }
    let dir = model_path.parent().unwrap_or(Path::new("."));
    match configured(model) {
        Some(tokenizer) => read(&dir.join(&tokenizer.path), tokenizer.sha256.as_deref()).map(Some),
        None => {
            let path = dir.join(DEFAULT_TOKENIZER_FILE);
            path.is_file().then(|| read(&path, None)).transpose()
        }
    }
}

/// The tokenizer and chat template of the generate model in folder `dir`: the configured
/// tokenizer, else the one its `config.json` names.
pub(super) fn generate_codec(
    model: &ModelConfig,
    dir: &Path,
    config: &GenerateModelConfig,
) -> Result<TextCodec, String> {
    let codec = match configured(model) {
        Some(tokenizer) => read(&dir.join(&tokenizer.path), tokenizer.sha256.as_deref())?,
        None => read(&config.tokenizer_path(dir), None)?,
    };
    match &config.chat_template {
        Some(source) => codec
            .with_chat_template(source, config.bos_token.clone(), config.eos_token.clone())
            .map_err(|err| err.to_string()),
        None => Ok(codec),
    }
}

/// The local tokenizer file a version from `source_path` reads, where no other watched
/// file covers it (a generate folder's own files are watched as a whole).
pub(super) fn watched_file(model: &ModelConfig, source_path: &Path) -> Option<PathBuf> {
    let parent = source_path.parent().unwrap_or(Path::new("."));
    match (model.task, configured(model)) {
        (Task::Embed, Some(tokenizer)) => Some(parent.join(&tokenizer.path)),
        (Task::Embed, None) => Some(parent.join(DEFAULT_TOKENIZER_FILE)),
        (Task::Generate, Some(tokenizer)) if source_path.is_dir() => {
            Some(source_path.join(&tokenizer.path))
        }
        (Task::Generate, Some(tokenizer)) => Some(parent.join(&tokenizer.path)),
        _ => None,
    }
}

/// Reads a tokenizer file, checking its sha256 when pinned; errors name the file.
fn read(path: &Path, sha256: Option<&str>) -> Result<TextCodec, String> {
    let bytes =
        std::fs::read(path).map_err(|err| format!("tokenizer {}: {err}", path.display()))?;
    if let Some(expected) = sha256 {
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != expected {
            return Err(format!(
                "digest mismatch for tokenizer {}: expected sha256:{expected}, got sha256:{actual}",
                path.display()
            ));
        }
    }
    TextCodec::from_tokenizer_json(&bytes)
        .map_err(|err| format!("tokenizer {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKENIZER: &str = "../examples/models/tiny-lm/1/tokenizer.json";

    fn embed(tokenizer: Option<TokenizerConfig>) -> ModelConfig {
        let mut model = modelplane_config::RuntimeConfig::from_yaml(
            "models: [{name: m, task: embed, versions: [{version: '1', source: {path: /m/model.pt}}]}]",
        )
        .expect("config")
        .models
        .remove(0);
        model.tokenizer = tokenizer;
        model
    }

    fn folder_with(name: &str) -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(TOKENIZER)).expect("fixture");
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, &bytes).expect("write");
        let model = dir.path().join("model.pt");
        (dir, model, hex::encode(Sha256::digest(&bytes)))
    }

    fn named(path: &str, sha256: Option<String>) -> Option<TokenizerConfig> {
        Some(TokenizerConfig {
            path: path.into(),
            sha256,
        })
    }

    #[test]
    fn an_embed_model_reads_the_named_tokenizer_checked_against_its_pin() {
        let (_dir, model_path, sha) = folder_with("vocab/minilm.json");
        let model = embed(named("vocab/minilm.json", Some(sha)));
        let codec = embed_codec(&model, &model_path).expect("loads");
        let ids = codec
            .expect("a tokenizer")
            .encode("hello world", false)
            .expect("encodes");
        assert!(!ids.is_empty());
    }

    #[test]
    fn a_named_tokenizer_that_is_missing_or_fails_its_pin_names_the_file() {
        let (_dir, model_path, _) = folder_with("vocab/minilm.json");
        let missing = embed(named("tok.json", None));
        let err = embed_codec(&missing, &model_path).expect_err("missing");
        assert!(err.contains("tok.json"), "{err}");
        let wrong = "0".repeat(64);
        let pinned = embed(named("vocab/minilm.json", Some(wrong.clone())));
        let err = embed_codec(&pinned, &model_path).expect_err("digest mismatch");
        assert!(
            err.contains("vocab/minilm.json") && err.contains(&wrong),
            "{err}"
        );
    }

    #[test]
    fn without_a_configured_tokenizer_an_embed_model_reads_tokenizer_json_when_present() {
        let (_dir, model_path, _) = folder_with("vocab/minilm.json");
        assert!(
            embed_codec(&embed(None), &model_path)
                .expect("optional")
                .is_none()
        );
        let (_dir, model_path, _) = folder_with(DEFAULT_TOKENIZER_FILE);
        assert!(
            embed_codec(&embed(None), &model_path)
                .expect("reads")
                .is_some()
        );
    }

    #[test]
    fn only_embed_and_generate_models_have_a_tokenizer() {
        let mut model = embed(named("tok.json", None));
        model.task = Task::Classify;
        assert_eq!(configured(&model), None);
        assert_eq!(watched_file(&model, Path::new("/m/model.pt")), None);
        model.task = Task::Embed;
        assert_eq!(
            watched_file(&model, Path::new("/m/model.pt")),
            Some(PathBuf::from("/m/tok.json"))
        );
    }
}
