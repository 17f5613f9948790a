use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;

use super::*;
use crate::analysis::test_server::{closed_port, serve};

const TIMEOUT: Duration = Duration::from_secs(2);

/// A fake Prometheus: answers each query with the answer of the first rule whose key the
/// query contains, and records the queries.
async fn prometheus(
    rules: Vec<(&'static str, StatusCode, String)>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = Router::new().route(
        "/api/v1/query",
        get(move |Query(params): Query<HashMap<String, String>>| {
            let rules = rules.clone();
            let log = log.clone();
            async move {
                let query = params.get("query").cloned().unwrap_or_default();
                log.lock().unwrap().push(query.clone());
                rules
                    .iter()
                    .find(|(key, _, _)| query.contains(key))
                    .map(|(_, status, body)| (*status, body.clone()))
                    .unwrap_or((StatusCode::OK, vector(&[])))
            }
        }),
    );
    (format!("http://{}/", serve(router).await), seen)
}

fn vector(samples: &[(&[(&str, &str)], &str)]) -> String {
    let result: Vec<serde_json::Value> = samples
        .iter()
        .map(|(labels, value)| {
            let metric: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
                .collect();
            serde_json::json!({"metric": metric, "value": [1733300000.0, value]})
        })
        .collect();
    serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
        .to_string()
}

#[tokio::test]
async fn a_query_returns_its_single_value() {
    let (base, seen) = prometheus(vec![
        ("one", StatusCode::OK, vector(&[(&[], "0.25")])),
        ("nan", StatusCode::OK, vector(&[(&[], "NaN")])),
        (
            "scalar",
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#.into(),
        ),
    ])
    .await;
    let http = reqwest::Client::new();
    assert_eq!(
        query(&http, &base, "one", TIMEOUT).await.unwrap(),
        Some(0.25)
    );
    assert_eq!(query(&http, &base, "nan", TIMEOUT).await.unwrap(), None);
    assert_eq!(query(&http, &base, "empty", TIMEOUT).await.unwrap(), None);
    assert_eq!(
        query(&http, &base, "scalar", TIMEOUT).await.unwrap(),
        Some(3.0)
    );
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn query_errors_say_what_went_wrong() {
    let (base, _) = prometheus(vec![
        (
            "two",
            StatusCode::OK,
            vector(&[(&[("version", "1")], "1"), (&[("version", "2")], "2")]),
        ),
        (
            "bad",
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#.into(),
        ),
        (
            "html",
            StatusCode::BAD_GATEWAY,
            "<html>proxy down</html>".into(),
        ),
        ("garbage", StatusCode::OK, "not json".into()),
        ("word", StatusCode::OK, vector(&[(&[], "many")])),
    ])
    .await;
    let http = reqwest::Client::new();
    let cases = [
        ("two", "2 series"),
        ("bad", "bad_data: parse error at char 4"),
        ("html", "502"),
        ("garbage", "unreadable answer"),
        ("word", "not a number"),
    ];
    for (promql, words) in cases {
        let error = query(&http, &base, promql, TIMEOUT)
            .await
            .expect_err(promql);
        let text = error.to_string();
        assert!(text.contains(words), "{promql}: {text}");
        assert!(text.contains(promql), "{text}");
    }
    let down = format!("http://{}", closed_port().await);
    let error = query(&http, &down, "up", TIMEOUT).await.expect_err("down");
    assert!(matches!(error, SourceError::Prometheus { .. }), "{error:?}");
}

#[tokio::test]
async fn window_builds_the_interval_from_increases() {
    let (base, seen) = prometheus(vec![
        (
            "increase(modelplane_requests_total",
            StatusCode::OK,
            vector(&[
                (&[("version", "1"), ("outcome", "success")], "990.4"),
                (&[("version", "1"), ("outcome", "internal")], "9.6"),
                (&[("version", "2"), ("outcome", "success")], "50"),
            ]),
        ),
        (
            "increase(modelplane_request_duration_seconds_bucket",
            StatusCode::OK,
            vector(&[
                (&[("version", "1"), ("le", "+Inf")], "1000"),
                (&[("version", "1"), ("le", "0.1")], "980"),
                // increase() extrapolation can break monotonicity: repaired.
                (&[("version", "1"), ("le", "0.5")], "979.6"),
            ]),
        ),
        (
            "increase(modelplane_request_duration_seconds_count",
            StatusCode::OK,
            vector(&[(&[("version", "1")], "1000")]),
        ),
    ])
    .await;
    let snapshot = window(
        &reqwest::Client::new(),
        &base,
        r#"namespace="team-a",model="m""#,
        Duration::from_secs(60),
        TIMEOUT,
    )
    .await
    .expect("window");
    let stable = snapshot.version("1");
    assert_eq!((stable.judged_requests(), stable.errors()), (1000, 10));
    assert_eq!(
        stable.latency.buckets,
        vec![(0.1, 980), (0.5, 980), (f64::INFINITY, 1000)]
    );
    assert_eq!(snapshot.version("2").judged_requests(), 50);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 12);
    assert!(
        seen.iter().any(|q| q
            == r#"sum by (version, outcome) (increase(modelplane_requests_total{namespace="team-a",model="m"}[60s]))"#),
        "{seen:?}"
    );
}

#[tokio::test]
async fn one_failing_query_fails_the_window() {
    let (base, _) = prometheus(vec![(
        "gen_ai_server_time_to_first_token_seconds_sum",
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"status":"error","errorType":"unavailable","error":"too many queries"}"#.into(),
    )])
    .await;
    let error = window(
        &reqwest::Client::new(),
        &base,
        "model=\"m\"",
        Duration::from_millis(1500),
        TIMEOUT,
    )
    .await
    .expect_err("fails");
    let text = error.to_string();
    assert!(
        text.contains("too many queries") && text.contains("[1500ms]"),
        "{text}"
    );
}
