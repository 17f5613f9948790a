//! `config.json` of a generative model folder (docs/generate-contract.md §2).
//!
//! [`GenerateModelConfig::load`] reads and checks it before anything else of the
//! folder is touched: a model written for another contract, or one whose facts
//! contradict each other, is refused with an error that names the file and field.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// The contract identifier this crate serves.
pub const CONTRACT: &str = "modelplane.generate/v1";

/// The file name of the model configuration inside a model folder.
pub const CONFIG_FILE: &str = "config.json";

/// The KV cache layout the contract defines (§3, `new_cache`).
pub const KV_CACHE_LAYOUT: [&str; 6] = ["layer", "kv", "slot", "kv_head", "position", "head_dim"];

/// The element type of a model's weights, KV cache and activations (`config.json`'s
/// `dtype`); logits are float32 whatever it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// The default and the reference.
    Float32,
    /// Half the memory and bandwidth; where the device computes it natively (CUDA,
    /// x86 with AVX-512 BF16 or AMX), faster.
    BFloat16,
}

impl Dtype {
    /// The `config.json` names, in order.
    pub const NAMES: [&'static str; 2] = ["float32", "bfloat16"];

    /// The type `config.json` names, if the contract defines it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "float32" => Some(Self::Float32),
            "bfloat16" => Some(Self::BFloat16),
            _ => None,
        }
    }

    /// Bytes of one element.
    pub fn bytes(self) -> u64 {
        match self {
            Self::Float32 => 4,
            Self::BFloat16 => 2,
        }
    }
}

/// The facts of a generative model folder, as written in its `config.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct GenerateModelConfig {
    /// Always [`CONTRACT`]; [`load`](Self::load) refuses any other value.
    pub contract: String,
    /// Model name (`smollm2`, `tiny-llama`).
    pub name: String,
    /// Architecture family, informational (`llama`).
    #[serde(default)]
    pub architecture: Option<String>,
    /// TorchScript file, relative to the folder.
    pub model_file: String,
    /// Hugging Face `tokenizers` file, relative to the folder.
    pub tokenizer_file: String,
    /// Element type of weights, KV cache and activations: one of [`Dtype::NAMES`]
    /// (read it as a [`Dtype`] with [`element_type`](Self::element_type)).
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Width of a logits row.
    pub vocab_size: u32,
    /// Informational.
    #[serde(default)]
    pub hidden_size: Option<u32>,
    /// Informational.
    #[serde(default)]
    pub intermediate_size: Option<u32>,
    /// `L`, first dimension of the KV cache.
    pub num_layers: u32,
    /// Query heads, informational.
    #[serde(default)]
    pub num_heads: Option<u32>,
    /// `H`, KV heads (grouped-query attention).
    pub num_kv_heads: u32,
    /// `D`, last dimension of the KV cache.
    pub head_dim: u32,
    /// Most positions one sequence may hold (prompt + output).
    pub max_context: u32,
    /// Informational.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Dimension names of the KV cache; when present it must be [`KV_CACHE_LAYOUT`].
    #[serde(default)]
    pub kv_cache_layout: Option<Vec<String>>,
    /// Memory one cached token takes: `2·L·H·D·4`.
    pub kv_cache_bytes_per_token: u64,
    /// `step` computes only the `lengths[b]` tokens of each row, never the padding
    /// (contract §3): the engine may then mix rows of any lengths in one call.
    #[serde(default)]
    pub packed_rows: bool,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Generation stops when one of these ids is produced.
    pub eos_token_ids: Vec<u32>,
    /// Id to pad `input_ids` with.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence token as text, for the chat template.
    #[serde(default)]
    pub bos_token: Option<String>,
    /// End-of-sequence token as text, for the chat template.
    #[serde(default)]
    pub eos_token: Option<String>,
    /// Jinja template that turns chat messages into the prompt text.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Where the weights came from, kept as written.
    #[serde(default)]
    pub source: Option<serde_json::Value>,
    /// Digest of weights and exporter, kept as written.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

fn default_dtype() -> String {
    "float32".to_owned()
}

/// Why a model folder's `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape (serde names the field).
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error, with the field and position.
        source: serde_json::Error,
    },
    /// The model follows another contract.
    #[error("{}: contract is {found:?}, this runtime serves {CONTRACT:?}", path.display())]
    UnsupportedContract {
        /// The file.
        path: PathBuf,
        /// The contract the file names.
        found: String,
    },
    /// A field has a value the contract does not allow.
    #[error("{}: field `{field}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl GenerateModelConfig {
    /// Reads and checks `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    /// Parses and checks the text of a `config.json`; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.check().map_err(|problem| match problem {
            Problem::Contract => ConfigError::UnsupportedContract {
                path: path.to_owned(),
                found: config.contract.clone(),
            },
            Problem::Field(field, message) => ConfigError::Invalid {
                path: path.to_owned(),
                field,
                message,
            },
        })?;
        Ok(config)
    }

    /// The TorchScript file of the model in folder `dir`.
    pub fn model_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.model_file)
    }

    /// The tokenizer file of the model in folder `dir`.
    pub fn tokenizer_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.tokenizer_file)
    }

    /// The element type; float32 for a `dtype` that [`load`](Self::load) would refuse.
    pub fn element_type(&self) -> Dtype {
        Dtype::from_name(&self.dtype).unwrap_or(Dtype::Float32)
    }

    /// The contract's KV cache size of one token: `2·L·H·D` elements of `dtype`.
    pub fn expected_kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.num_layers)
            * u64::from(self.num_kv_heads)
            * u64::from(self.head_dim)
            * self.element_type().bytes()
    }

    fn check(&self) -> Result<(), Problem> {
        if self.contract != CONTRACT {
            return Err(Problem::Contract);
        }
        check_file_name("model_file", &self.model_file)?;
        check_file_name("tokenizer_file", &self.tokenizer_file)?;
        if Dtype::from_name(&self.dtype).is_none() {
            return Err(Problem::field(
                "dtype",
                format!(
                    "{:?} is not supported, only {}",
                    self.dtype,
                    Dtype::NAMES.map(|name| format!("{name:?}")).join(" or ")
                ),
            ));
        }
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("num_layers", self.num_layers),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_context", self.max_context),
        ] {
            if value == 0 {
                return Err(Problem::field(field, "must be at least 1".to_owned()));
            }
        }
        self.check_kv_cache()?;
        self.check_token_ids()
    }

    fn check_kv_cache(&self) -> Result<(), Problem> {
        if let Some(layout) = &self.kv_cache_layout
            && layout.iter().map(String::as_str).ne(KV_CACHE_LAYOUT)
        {
            return Err(Problem::field(
                "kv_cache_layout",
                format!("is {layout:?}, the contract's layout is {KV_CACHE_LAYOUT:?}"),
            ));
        }
        let expected = self.expected_kv_bytes_per_token();
        if self.kv_cache_bytes_per_token != expected {
            return Err(Problem::field(
                "kv_cache_bytes_per_token",
                format!(
                    "is {}, but 2·num_layers·num_kv_heads·head_dim·{} bytes ({}) = {expected}",
                    self.kv_cache_bytes_per_token,
                    self.element_type().bytes(),
                    self.dtype
                ),
            ));
        }
        Ok(())
    }

    fn check_token_ids(&self) -> Result<(), Problem> {
        if self.eos_token_ids.is_empty() {
            return Err(Problem::field(
                "eos_token_ids",
                "must name at least one id".to_owned(),
            ));
        }
        let ids = self
            .eos_token_ids
            .iter()
            .map(|id| ("eos_token_ids", *id))
            .chain(self.bos_token_id.map(|id| ("bos_token_id", id)))
            .chain(self.pad_token_id.map(|id| ("pad_token_id", id)));
        for (field, id) in ids {
            if id >= self.vocab_size {
                return Err(Problem::field(
                    field,
                    format!(
                        "id {id} is outside the vocabulary (vocab_size {})",
                        self.vocab_size
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What [`GenerateModelConfig::check`] found, before the path is attached.
enum Problem {
    Contract,
    Field(&'static str, String),
}

impl Problem {
    fn field(field: &'static str, message: String) -> Self {
        Self::Field(field, message)
    }
}

/// A file named by the config must stay inside the model folder.
fn check_file_name(field: &'static str, name: &str) -> Result<(), Problem> {
    let path = Path::new(name);
    let inside = !name.is_empty()
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if inside {
        Ok(())
    } else {
        Err(Problem::field(
            field,
            format!("{name:?} must be a relative path inside the model folder"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> serde_json::Value {
        serde_json::json!({
            "contract": "modelplane.generate/v1",
            "name": "tiny",
            "model_file": "model.pt",
            "tokenizer_file": "tokenizer.json",
            "vocab_size": 100,
            "num_layers": 2,
            "num_kv_heads": 2,
            "head_dim": 16,
            "max_context": 64,
            "kv_cache_bytes_per_token": 512,
            "bos_token_id": 1,
            "eos_token_ids": [2],
            "pad_token_id": 2,
            "chat_template": null
        })
    }

    fn parse(value: &serde_json::Value) -> Result<GenerateModelConfig, ConfigError> {
        GenerateModelConfig::parse(&value.to_string(), Path::new("m/config.json"))
    }

    fn invalid_field(value: &serde_json::Value) -> &'static str {
        match parse(value) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn packed_rows_is_read() {
        let mut value = tiny();
        value["packed_rows"] = true.into();
        assert!(parse(&value).expect("valid").packed_rows);
        value["packed_rows"] = "yes".into();
        assert!(parse(&value).is_err(), "packed_rows must be a boolean");
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let config = parse(&tiny()).expect("valid");
        assert_eq!(config.dtype, "float32");
        assert!(
            !config.packed_rows,
            "a model is padded unless it says otherwise"
        );
        assert_eq!(config.chat_template, None);
        assert_eq!(config.expected_kv_bytes_per_token(), 512);
        assert_eq!(
            config.model_path(Path::new("/m")),
            Path::new("/m/model.pt").to_path_buf()
        );
    }

    #[test]
    fn other_contract_is_refused_by_name() {
        let mut value = tiny();
        value["contract"] = "modelplane.generate/v2".into();
        let err = parse(&value).expect_err("refused");
        assert!(
            matches!(err, ConfigError::UnsupportedContract { ref found, .. } if found == "modelplane.generate/v2")
        );
        assert!(err.to_string().contains("m/config.json"), "{err}");
    }

    #[test]
    fn missing_field_error_names_file_and_field() {
        let mut value = tiny();
        value.as_object_mut().expect("object").remove("vocab_size");
        let err = parse(&value).expect_err("refused").to_string();
        assert!(
            err.contains("m/config.json") && err.contains("vocab_size"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_error_names_the_field() {
        let mut value = tiny();
        value["num_layers"] = "two".into();
        let err = parse(&value).expect_err("refused").to_string();
        assert!(
            err.contains("num_layers") || err.contains("invalid type"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_kv_bytes_are_refused() {
        let mut value = tiny();
        value["kv_cache_bytes_per_token"] = 1000.into();
        assert_eq!(invalid_field(&value), "kv_cache_bytes_per_token");
    }

    #[test]
    fn eos_outside_vocabulary_is_refused() {
        let mut value = tiny();
        value["eos_token_ids"] = serde_json::json!([2, 100]);
        assert_eq!(invalid_field(&value), "eos_token_ids");
        let mut value = tiny();
        value["eos_token_ids"] = serde_json::json!([]);
        assert_eq!(invalid_field(&value), "eos_token_ids");
    }

    #[test]
    fn files_outside_the_folder_are_refused() {
        for name in ["../model.pt", "/etc/passwd", ""] {
            let mut value = tiny();
            value["model_file"] = name.into();
            assert_eq!(invalid_field(&value), "model_file", "{name}");
        }
    }

    #[test]
    fn other_layout_and_dtype_are_refused() {
        let mut value = tiny();
        value["kv_cache_layout"] = serde_json::json!(["layer", "slot", "kv"]);
        assert_eq!(invalid_field(&value), "kv_cache_layout");
        let mut value = tiny();
        value["dtype"] = "float16".into();
        assert_eq!(invalid_field(&value), "dtype");
    }

    #[test]
    fn a_bfloat16_model_caches_two_bytes_an_element() {
        let mut value = tiny();
        value["dtype"] = "bfloat16".into();
        // 2 layers x 2 heads x 16 dims, K and V, 2 bytes each.
        value["kv_cache_bytes_per_token"] = 256.into();
        let config = parse(&value).expect("valid");
        assert_eq!(config.element_type(), Dtype::BFloat16);
        assert_eq!(config.expected_kv_bytes_per_token(), 256);
        // The float32 size is a contradiction for a bfloat16 model.
        value["kv_cache_bytes_per_token"] = 512.into();
        assert_eq!(invalid_field(&value), "kv_cache_bytes_per_token");
    }

    #[test]
    fn zero_dimension_is_refused() {
        let mut value = tiny();
        value["head_dim"] = 0.into();
        value["kv_cache_bytes_per_token"] = 0.into();
        assert_eq!(invalid_field(&value), "head_dim");
    }
}
