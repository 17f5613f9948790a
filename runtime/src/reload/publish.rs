//! The catalog the reloader publishes: built from the config and each version's slot,
//! keeping what served before a config change until a configured version serves, and
//! compared with the one serving so that a pass that changed nothing swaps nothing.

use std::collections::HashMap;
use std::sync::Arc;

use modelplane_config::RuntimeConfig;

use super::plan::Key;
use crate::catalog::{Catalog, LoadState, ModelEntry, VersionSlot};

/// The catalog for `config`, each configured version showing `slot_of` its key (a version
/// not seen yet: loading). Once `initialized`, a model new to the catalog appears when one
/// of its versions has finished loading, so that adding a model does not make the server
/// unready while it loads.
pub(super) fn catalog_of(
    config: &RuntimeConfig,
    slot_of: impl Fn(&Key) -> Option<VersionSlot>,
    before: &Catalog,
    initialized: bool,
) -> Catalog {
    let mut models = HashMap::with_capacity(config.models.len());
    for model in &config.models {
        let old = before.models.get(&model.name);
        let mut versions: Vec<(String, VersionSlot)> = model
            .versions
            .iter()
            .map(|version| {
                let key = (model.name.clone(), version.version.clone());
                let slot = slot_of(&key).unwrap_or_else(loading);
                (version.version.clone(), slot)
            })
            .collect();
        let unfinished = versions
            .iter()
            .all(|(_, slot)| slot.serving.is_none() && slot.state == LoadState::Loading);
        if old.is_none() && initialized && unfinished {
            continue;
        }
        if let Some(entry) = old {
            keep_serving_until_replaced(&model.name, &mut versions, entry, &slot_of);
        }
        let config = match old {
            Some(entry) if *entry.config == *model => Arc::clone(&entry.config),
            _ => Arc::new(model.clone()),
        };
        // The entry continues the old one's canary counter: a weight change reloads
        // nothing and keeps the split exact.
        let entry = ModelEntry::new(config, versions, old);
        models.insert(model.name.clone(), entry);
    }
    Catalog {
        models,
        initialized,
    }
}

/// The slot of a version that has not finished its first load.
pub(super) fn loading() -> VersionSlot {
    VersionSlot {
        serving: None,
        state: LoadState::Loading,
    }
}

/// A model whose configured versions all failed to load (a new model under Enforce that does
/// not verify, a corrupt file, a missing folder) keeps the versions that served before the
/// config changed, so that replacing a version never takes the model down: they stay until a
/// configured version serves.
fn keep_serving_until_replaced(
    model: &str,
    versions: &mut Vec<(String, VersionSlot)>,
    before: &ModelEntry,
    slot_of: impl Fn(&Key) -> Option<VersionSlot>,
) {
    if versions.iter().any(|(_, slot)| slot.serving.is_some()) {
        return;
    }
    for (label, slot) in &before.versions {
        if slot.serving.is_some() && !versions.iter().any(|(l, _)| l == label) {
            // Logged once: when the version leaves the config, not on every pass after.
            if before.config.versions.iter().any(|v| v.version == *label) {
                tracing::warn!(
                    model,
                    version = %label,
                    "keeps serving a version that is no longer configured: no configured version serves"
                );
            }
            let now = slot_of(&(model.to_owned(), label.clone()));
            versions.push((label.clone(), now.unwrap_or_else(|| slot.clone())));
        }
    }
}

/// Whether two catalogs serve the same: same models, configs, versions, instances, states.
pub(super) fn same_catalog(a: &Catalog, b: &Catalog) -> bool {
    a.initialized == b.initialized
        && a.models.len() == b.models.len()
        && a.models.iter().all(|(name, entry)| {
            b.models
                .get(name)
                .is_some_and(|other| same_entry(entry, other))
        })
}

fn same_entry(a: &ModelEntry, b: &ModelEntry) -> bool {
    Arc::ptr_eq(&a.config, &b.config)
        && a.versions.len() == b.versions.len()
        && a.versions
            .iter()
            .zip(&b.versions)
            .all(|((la, sa), (lb, sb))| la == lb && same_slot(sa, sb))
}

fn same_slot(a: &VersionSlot, b: &VersionSlot) -> bool {
    let same_instance = match (&a.serving, &b.serving) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => true,
        _ => false,
    };
    same_instance && a.state == b.state
}

/// One line per model that has no serving version, with the load failures behind it.
pub(super) fn unservable(catalog: &Catalog) -> Vec<String> {
    let mut lines: Vec<String> = catalog
        .models
        .values()
        .filter(|entry| entry.default_serving().is_none())
        .flat_map(|entry| {
            entry
                .versions
                .iter()
                .filter_map(|(label, slot)| match &slot.state {
                    LoadState::Failed(reason) => Some(format!(
                        "model {} version {label} failed to load: {reason}",
                        entry.config.name
                    )),
                    _ => None,
                })
        })
        .collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(models: &str) -> RuntimeConfig {
        RuntimeConfig::from_yaml(&format!("models: [{models}]")).expect("config")
    }

    const ONE: &str = "{name: a, versions: [{version: '1', source: {path: /a.pt}}]}";
    const TWO: &str = "{name: b, versions: [{version: '1', source: {path: /b.pt}}]}";

    fn failed(reason: &str) -> VersionSlot {
        VersionSlot {
            serving: None,
            state: LoadState::Failed(reason.into()),
        }
    }

    #[test]
    fn a_model_added_after_the_first_pass_appears_once_a_load_finished() {
        let before = catalog_of(
            &config(ONE),
            |_| Some(failed("x")),
            &Catalog::default(),
            true,
        );
        let both = config(&format!("{ONE}, {TWO}"));
        let loading_b = |key: &Key| (key.0 == "a").then(|| failed("x"));
        let next = catalog_of(&both, loading_b, &before, true);
        assert!(!next.models.contains_key("b"), "b is still loading");
        assert!(same_catalog(&before, &next), "nothing to publish");
        let first_pass = catalog_of(&both, loading_b, &Catalog::default(), false);
        assert!(
            first_pass.models.contains_key("b"),
            "the first pass shows it loading"
        );
        let done = catalog_of(&both, |_| Some(failed("y")), &before, true);
        assert_eq!(
            done.models["b"].slot("1").map(|s| &s.state),
            Some(&LoadState::Failed("y".into()))
        );
        assert!(!same_catalog(&next, &done));
    }

    #[test]
    fn only_a_changed_slot_or_config_is_a_change() {
        let one = config(ONE);
        let before = catalog_of(&one, |_| Some(failed("x")), &Catalog::default(), true);
        let again = catalog_of(&one, |_| Some(failed("x")), &before, true);
        assert!(same_catalog(&before, &again));
        assert!(Arc::ptr_eq(
            &before.models["a"].config,
            &again.models["a"].config
        ));
        let reloading = catalog_of(&one, |_| Some(loading()), &before, true);
        assert!(!same_catalog(&before, &reloading));
        let mut limits = one.clone();
        limits.models[0].default_version = Some("1".into());
        assert!(!same_catalog(
            &before,
            &catalog_of(&limits, |_| Some(failed("x")), &before, true)
        ));
        assert!(!same_catalog(
            &before,
            &catalog_of(&one, |_| Some(failed("x")), &before, false)
        ));
    }
}
