//! What the metric sources share: their error, and reading a bounded response body.

use std::time::Duration;

/// Largest response body read from a pod or from Prometheus.
pub(crate) const BODY_LIMIT: usize = 32 << 20;

/// A metric source could not deliver the interval's data (not a verdict on the
/// candidate: the controller counts these apart from failed analyses).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Scraping a runtime pod's `/metrics` failed.
    #[error("scraping pod {pod} failed: {reason}{}", others_suffix(.others))]
    Pod {
        /// The pod that failed first (in the order given).
        pod: String,
        /// Why: unreachable, timed out, an HTTP status, or an unreadable exposition.
        reason: String,
        /// The other pods that failed too in the same scrape.
        others: Vec<String>,
    },
    /// A Prometheus query failed.
    #[error("Prometheus query {query:?} failed: {reason}")]
    Prometheus {
        /// The PromQL query.
        query: String,
        /// Why: unreachable, timed out, Prometheus's own error, or an unexpected answer.
        reason: String,
    },
}

fn others_suffix(others: &[String]) -> String {
    match others.len() {
        0 => String::new(),
        n => format!(" (and {n} more: {})", others.join(", ")),
    }
}

/// Why a request failed, in words: the error and its causes.
pub(crate) fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let mut words = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_words = cause.to_string();
        if !words.contains(&cause_words) {
            words.push_str(": ");
            words.push_str(&cause_words);
        }
        source = cause.source();
    }
    words
}

/// Reads a response body of at most [`BODY_LIMIT`] bytes.
pub(crate) async fn body(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| describe(&error, timeout))?
    {
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(format!("response body larger than {BODY_LIMIT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `base` without trailing slashes, then `path`.
pub(crate) fn url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}
