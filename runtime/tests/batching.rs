//! Dynamic batching through the REST front end: concurrent requests share forwards
//! and each still gets exactly its own rows back.

mod common;

use common::*;

#[tokio::test]
async fn concurrent_requests_are_batched_and_answered_like_single_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 5.0)]);
    let running = start_inline(&affine_config(
        &path,
        "batching: {maxBatchSize: 8, maxQueueDelay: 20ms}",
    ))
    .await;
    let url = format!("http://{}/v2/models/affine/infer", running.http_addr);

    let requests = (0..16).map(|i| {
        let url = url.clone();
        let rows: Vec<[f32; 4]> = (0..1 + i % 2)
            .map(|r| [i as f32, r as f32, -1.0, 0.5])
            .collect();
        async move {
            let (status, body) = post_json(&url, &json_body(&rows)).await;
            (rows, status, body)
        }
    });
    let results = futures::future::join_all(requests).await;
    let mut total_rows = 0;
    for (rows, status, body) in results {
        assert_eq!(status, 200, "{body}");
        assert_eq!(output_f32(&body, "y"), affine(&rows, 5.0));
        let sums: Vec<f32> = rows.iter().map(|r| r.iter().sum()).collect();
        assert_eq!(output_f32(&body, "s"), sums);
        total_rows += rows.len();
    }

    let labels = r#"{model="affine",version="1"}"#;
    let forwards = metric(&running, &format!("modelplane_batch_size_count{labels}"))
        .await
        .expect("batch count");
    let rows = metric(&running, &format!("modelplane_batch_size_sum{labels}"))
        .await
        .expect("batch rows");
    assert_eq!(rows, total_rows as f64);
    assert!(
        forwards < 16.0,
        "16 concurrent requests ran in {forwards} forwards: nothing was batched"
    );
    running.shutdown().await;
}
