//! The `pods` metric source: the operator scrapes every runtime pod's `/metrics`.
//!
//! Two scrapes an interval apart give the interval through [`super::series::delta`].

use std::time::Duration;

use futures::StreamExt;

use super::exposition;
use super::series::{PodScrape, Snapshot};
use super::source::{SourceError, body, describe, url};

/// Pods scraped at the same time.
const CONCURRENCY: usize = 32;

/// Scrapes `GET <base url>/metrics` of every pod, concurrently, each within `timeout`,
/// and keeps the series of `model`. `pods` are `(pod name, base url)` pairs, the base
/// url as `http://<pod IP>:<port>`. Any pod failing (unreachable, timed out, an HTTP
/// status other than 2xx, an unreadable exposition) fails the scrape with a
/// [`SourceError::Pod`] naming it, and the others that failed too.
pub async fn scrape(
    http: &reqwest::Client,
    pods: &[(String, String)],
    model: &str,
    timeout: Duration,
) -> Result<PodScrape, SourceError> {
    // Owned items: a future borrowing the closure's argument is not general enough for
    // the controller's `Send` bound.
    let results: Vec<(String, Result<Snapshot, String>)> =
        futures::stream::iter(pods.iter().cloned())
            .map(|(pod, base)| async move {
                let result = one(http, &base, model, timeout).await;
                (pod, result)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
    let mut scrape = PodScrape::default();
    let mut failed: Option<(String, String)> = None;
    let mut others = Vec::new();
    for (pod, result) in results {
        match result {
            Ok(snapshot) => {
                scrape.pods.insert(pod, snapshot);
            }
            Err(reason) if failed.is_none() => failed = Some((pod, reason)),
            Err(_) => others.push(pod),
        }
    }
    match failed {
        Some((pod, reason)) => Err(SourceError::Pod {
            pod,
            reason,
            others,
        }),
        None => Ok(scrape),
    }
}

async fn one(
    http: &reqwest::Client,
    base: &str,
    model: &str,
    timeout: Duration,
) -> Result<Snapshot, String> {
    let url = url(base, "/metrics");
    let response = http
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| describe(&error, timeout))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered {status}"));
    }
    let bytes = body(response, timeout).await?;
    let text = std::str::from_utf8(&bytes).map_err(|error| format!("GET {url}: {error}"))?;
    exposition::parse(text, model).map_err(|error| error.to_string())
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
