//! `GET /v1/models` and `GET /v1/models/{model}`: the generate and embed models that
//! serve right now, by name (the default version) and by `name:version`.

use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use modelplane_config::Task;
use serde::Serialize;

use super::{ApiError, model_id, split_model};
use crate::catalog::{Catalog, ModelEntry};
use crate::server::AppState;

/// Unix seconds when the API first answered, reported as every model's `created`.
static STARTED: LazyLock<u64> = LazyLock::new(|| {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
});

/// One entry of the model list.
#[derive(Debug, PartialEq, Serialize)]
pub struct ModelCard {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl ModelCard {
    fn new(id: String) -> Self {
        Self {
            id,
            object: "model",
            created: *STARTED,
            owned_by: "modelplane",
        }
    }
}

/// `{"object": "list", "data": [...]}`.
#[derive(Debug, Serialize)]
pub struct ModelList {
    object: &'static str,
    data: Vec<ModelCard>,
}

/// Lists every ready generate or embed model.
pub async fn list(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: cards(&state.catalog.load()),
    })
}

/// Describes one model, or 404.
pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    let catalog = state.catalog.load();
    let (name, version) = split_model(&model);
    let (entry, _) = catalog.resolve(name, version)?;
    if !serves_openai(&entry.config.task) {
        return Err(ApiError::from(crate::error::InferError::NotFound(format!(
            "model {model:?} is not served on the OpenAI API (only generate and embed models are)"
        ))));
    }
    Ok(Json(ModelCard::new(model)))
}

fn serves_openai(task: &Task) -> bool {
    matches!(task, Task::Generate | Task::Embed)
}

/// The ids of every ready model: `name` when its default serves, `name:version` for
/// each serving version; sorted.
fn cards(catalog: &Catalog) -> Vec<ModelCard> {
    let mut ids: Vec<String> = catalog
        .models
        .values()
        .filter(|entry| serves_openai(&entry.config.task))
        .flat_map(entry_ids)
        .collect();
    ids.sort();
    ids.into_iter().map(ModelCard::new).collect()
}

fn entry_ids(entry: &ModelEntry) -> Vec<String> {
    let name = &entry.config.name;
    let default = entry.default_serving().map(|_| name.clone());
    let versions = entry
        .versions
        .iter()
        .filter(|(_, slot)| slot.serving.is_some())
        .map(|(label, _)| model_id(name, label));
    default.into_iter().chain(versions).collect()
}
