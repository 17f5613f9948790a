use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use super::*;
use crate::analysis::test_server::{closed_port, serve};

const TIMEOUT: Duration = Duration::from_secs(2);

fn metrics(success: u64, internal: u64) -> String {
    format!(
        "modelplane_requests_total{{model=\"m\",version=\"1\",outcome=\"success\"}} {success}\n\
         modelplane_requests_total{{model=\"m\",version=\"1\",outcome=\"internal\"}} {internal}\n"
    )
}

async fn pod(text: String) -> String {
    let address = serve(Router::new().route("/metrics", get(move || async move { text }))).await;
    format!("http://{address}")
}

#[tokio::test]
async fn scrapes_every_pod() {
    let pods = vec![
        ("a".to_owned(), pod(metrics(10, 1)).await),
        ("b".to_owned(), pod(metrics(5, 0)).await),
    ];
    let scrape = scrape(&reqwest::Client::new(), &pods, "m", TIMEOUT)
        .await
        .expect("scrapes");
    assert_eq!(scrape.pods.len(), 2);
    assert_eq!(scrape.pods["a"].version("1").errors(), 1);
    assert_eq!(scrape.pods["b"].version("1").judged_requests(), 5);
}

#[tokio::test]
async fn a_failing_pod_is_named_with_the_others() {
    let broken = serve(Router::new().route(
        "/metrics",
        get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "starting") }),
    ))
    .await;
    let pods = vec![
        ("good".to_owned(), pod(metrics(1, 0)).await),
        ("broken".to_owned(), format!("http://{broken}")),
        (
            "closed".to_owned(),
            format!("http://{}", closed_port().await),
        ),
        (
            "garbled".to_owned(),
            pod("modelplane_requests_total{model=\"m\" 1\n".into()).await,
        ),
    ];
    let error = scrape(&reqwest::Client::new(), &pods, "m", TIMEOUT)
        .await
        .expect_err("fails");
    match &error {
        SourceError::Pod {
            pod,
            reason,
            others,
        } => {
            assert_eq!(pod, "broken");
            assert!(reason.contains("503"), "{reason}");
            assert_eq!(others, &vec!["closed".to_owned(), "garbled".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("and 2 more"), "{error}");
}

#[tokio::test]
async fn a_slow_pod_times_out() {
    let slow = serve(Router::new().route(
        "/metrics",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            String::new()
        }),
    ))
    .await;
    let pods = vec![("slow".to_owned(), format!("http://{slow}"))];
    let error = scrape(
        &reqwest::Client::new(),
        &pods,
        "m",
        Duration::from_millis(200),
    )
    .await
    .expect_err("times out");
    assert!(error.to_string().contains("timed out"), "{error}");
}
