//! Fair queuing inside the engine: slots go to the tenant with the lowest virtual
//! token counter, a higher band goes first, and a full queue sheds the flood.

mod engine_support;

use std::time::{Duration, Instant};

use engine_support::{Harness, Setup, collect, greedy, long_running_prompt, prompt, take_tokens};
use modelplane_fair::{Fairness, Flow};
use modelplane_generate::engine::{
    EngineError, EngineSettings, GenerateRequest, GenerationStream, StreamEvent,
};

fn one_slot(max_waiting: u32) -> Setup {
    Setup {
        slots: 1,
        delay: Duration::from_millis(1),
        settings: EngineSettings {
            max_waiting,
            ..EngineSettings::default()
        },
        ..Setup::default()
    }
}

fn of(tenant: &str, band: i32, mut request: GenerateRequest) -> GenerateRequest {
    request.fair = Fairness {
        flow: Flow::new(band, tenant, 1),
        input_weight: 1,
        output_weight: 2,
    };
    request
}

/// When each stream finished, in completion order of the tags.
async fn finish_order(streams: Vec<(&'static str, GenerationStream)>) -> Vec<&'static str> {
    let mut done: Vec<(Instant, &'static str)> = Vec::new();
    let handles: Vec<_> = streams
        .into_iter()
        .map(|(tag, stream)| {
            tokio::spawn(async move {
                collect(stream).await;
                (Instant::now(), tag)
            })
        })
        .collect();
    for handle in handles {
        done.push(handle.await.expect("joined"));
    }
    done.sort();
    done.into_iter().map(|(_, tag)| tag).collect()
}

#[tokio::test]
async fn a_tenant_arriving_behind_a_flood_gets_the_next_slot() {
    let harness = Harness::start(one_slot(64)).await;
    let engine = &harness.engine;
    let mut running = engine
        .submit(of("flood", 0, greedy(long_running_prompt(3, 40), 40)))
        .expect("admitted");
    take_tokens(&mut running, 1).await;
    let mut streams = Vec::new();
    for i in 0..6 {
        let stream = engine
            .submit(of("flood", 0, greedy(prompt(10 + i, 30), 8)))
            .expect("queued");
        streams.push(("flood", stream));
    }
    let calm = engine
        .submit(of("calm", 0, greedy(prompt(50, 4), 4)))
        .expect("queued");
    streams.push(("calm", calm));
    drop(running);
    let order = finish_order(streams).await;
    assert_eq!(
        order.iter().position(|t| *t == "calm"),
        Some(0),
        "the calm tenant is served before the flood's queued requests: {order:?}"
    );
}

#[tokio::test]
async fn one_tenant_is_served_first_come_first_served() {
    let harness = Harness::start(one_slot(64)).await;
    let engine = &harness.engine;
    let mut running = engine
        .submit(of("a", 0, greedy(long_running_prompt(3, 40), 40)))
        .expect("admitted");
    take_tokens(&mut running, 1).await;
    let tags = ["first", "second", "third"];
    let streams: Vec<_> = tags
        .iter()
        .zip(0u32..)
        .map(|(tag, i)| {
            let stream = engine
                .submit(of("a", 0, greedy(prompt(20 + i, 3 + 10 * i), 4)))
                .expect("queued");
            (*tag, stream)
        })
        .collect();
    drop(running);
    assert_eq!(finish_order(streams).await, tags);
}

#[tokio::test]
async fn a_full_queue_sheds_the_lowest_band_for_a_higher_one() {
    let harness = Harness::start(one_slot(2)).await;
    let engine = &harness.engine;
    let mut running = engine
        .submit(of("a", 0, greedy(long_running_prompt(3, 200), 200)))
        .expect("admitted");
    take_tokens(&mut running, 1).await;
    let batch1 = engine
        .submit(of("batch", -1, greedy(prompt(2, 3), 2)))
        .expect("queued");
    let mut batch2 = engine
        .submit(of("batch", -1, greedy(prompt(3, 3), 2)))
        .expect("queued");
    let urgent = engine
        .submit(of("b", 0, greedy(prompt(4, 3), 2)))
        .expect("takes the sheddable one's place");
    match batch2.next().await {
        Some(StreamEvent::Failed(EngineError::Shed(message))) => {
            assert!(message.contains("shed"), "{message}");
        }
        other => panic!("the newest of the lowest band is shed: {other:?}"),
    }
    let lower = engine.submit(of("batch", -1, greedy(prompt(5, 3), 2)));
    assert!(
        lower.is_err(),
        "the lowest band cannot push out a higher one"
    );
    drop(running);
    assert!(!collect(urgent).await.tokens.is_empty());
    assert!(!collect(batch1).await.tokens.is_empty());
    assert!(harness.metrics_text().contains(r#"outcome="shed""#));
}
