//! Every query of the runtime's Grafana dashboard (charts/modelplane/dashboards/runtime.json)
//! names a metric a running runtime exports: scraped from one serving a tensor model and a
//! generate model. A cgroup series appears only where its cgroup file exists; one absent
//! here must at least be one the cgroup collector writes.

mod common;
mod generate_support;

use std::collections::BTreeSet;

use common::*;
use generate_support::*;

const DASHBOARD: &str = include_str!("../../charts/modelplane/dashboards/runtime.json");
const CGROUP_COLLECTOR: &str = include_str!("../src/cgroup/metrics.rs");

/// The metric names the dashboard's queries read (every runtime query selects its series).
fn dashboard_metrics() -> BTreeSet<String> {
    let board: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut names = BTreeSet::new();
    let panels = board["panels"].as_array().expect("panels");
    for expr in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
    {
        for prefix in ["modelplane_", "gen_ai_"] {
            let mut rest = expr;
            while let Some(at) = rest.find(prefix) {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                // A metric is followed by its selector or range; a label name (such as
                // `gen_ai_token_type` in `by (…)`) is not.
                if rest.starts_with('{') || rest.starts_with('[') {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// The series the cgroup collector documents it writes (its module's table, with
/// `{a,b}` alternatives expanded).
fn collector_series() -> BTreeSet<String> {
    fn expand(pattern: &str) -> Vec<String> {
        let Some(open) = pattern.find('{') else {
            return vec![pattern.to_owned()];
        };
        let close = open + pattern[open..].find('}').expect("closing brace");
        pattern[open + 1..close]
            .split(',')
            .flat_map(|choice| {
                expand(&format!(
                    "{}{choice}{}",
                    &pattern[..open],
                    &pattern[close + 1..]
                ))
            })
            .collect()
    }
    CGROUP_COLLECTOR
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .filter_map(|line| line.split('`').next())
        .flat_map(|name| expand(name.split_once("{state}").map_or(name, |(base, _)| base)))
        .collect()
}

#[tokio::test]
async fn every_runtime_dashboard_query_names_a_metric_the_runtime_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let affine = dir.path().join("affine/1/model.pt");
    std::fs::create_dir_all(affine.parent().expect("parent")).expect("dir");
    make_affine_models(&[(&affine, 2.0)]);
    let generate = tiny_config(
        dir.path(),
        &tiny_llama(),
        "generation: {slots: 2, context: 64}",
    );
    let tensor = affine_config(&affine, "");
    let tensor_model = tensor.split_once("models:\n").expect("models").1;
    let yaml = format!("{generate}{tensor_model}");
    let running = start_inline(&yaml).await;
    // Families show once they have series: serve one request of each kind first.
    let url = format!("http://{}/v2/models/affine/infer", running.http_addr);
    let (status, _) = post_json(&url, &json_body(&[[1.0, 2.0, 3.0, 4.0]])).await;
    assert_eq!(status, 200);
    let tokens = generate_ids(&running, "tiny", &[1, 2, 3], 2).await;
    assert!(!tokens.is_empty());
    let used = dashboard_metrics();
    assert!(used.len() >= 25, "{used:?}");
    // A request's outcome is counted just after its last event: scrape until it shows.
    let mut text = String::new();
    let mut missing = Vec::new();
    for _ in 0..100 {
        text = reqwest::get(format!("http://{}/metrics", running.http_addr))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        missing = not_exported(&used, &text);
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");
}

/// The names of `used` that `text` (an exposition) has no family for and that the cgroup
/// collector does not write either.
fn not_exported(used: &BTreeSet<String>, text: &str) -> Vec<String> {
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let family = |name: &str| -> String {
        ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| exported.contains(base))
            .unwrap_or(name)
            .to_owned()
    };
    let collector = collector_series();
    used.iter()
        .filter(|name| !exported.contains(family(name).as_str()) && !collector.contains(*name))
        .cloned()
        .collect()
}
