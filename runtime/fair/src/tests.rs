use super::*;

fn flow(key: &str) -> Flow {
    Flow::new(0, key, 1)
}

/// Pops everything, charging each item's cost, and returns the items in order.
fn serve<T: Copy>(queue: &mut FairQueue<(T, u64)>) -> Vec<T> {
    let mut order = Vec::new();
    while let Some((key, (item, cost))) = queue.pop() {
        queue.charge(&key, cost);
        order.push(item);
    }
    order
}

#[test]
fn one_flow_is_served_first_in_first_out() {
    let mut queue = FairQueue::new(16);
    for i in 0..5 {
        assert_eq!(
            queue.push(&Flow::single(), (i, 10 * (5 - i))),
            Pushed::Queued
        );
    }
    assert_eq!(serve(&mut queue), [0, 1, 2, 3, 4]);
}

#[test]
fn two_backlogged_flows_of_equal_weight_alternate_by_tokens() {
    let mut queue = FairQueue::new(64);
    for i in 0..4 {
        queue.push(&flow("a"), (("a", i), 100));
    }
    for i in 0..8 {
        queue.push(&flow("b"), (("b", i), 50));
    }
    let order = serve(&mut queue);
    // b's requests cost half as much: it gets two for each of a's.
    let firsts: Vec<&str> = order.iter().take(6).map(|(f, _)| *f).collect();
    assert_eq!(firsts, ["a", "b", "b", "a", "b", "b"]);
}

#[test]
fn weight_is_the_share_of_tokens() {
    let mut queue = FairQueue::new(64);
    for i in 0..20 {
        queue.push(&Flow::new(0, "heavy", 3), (("heavy", i), 10));
        queue.push(&Flow::new(0, "light", 1), (("light", i), 10));
    }
    let order = serve(&mut queue);
    let heavy = order.iter().take(16).filter(|(f, _)| *f == "heavy").count();
    assert_eq!(heavy, 12, "weight 3 against 1: three of every four");
}

#[test]
fn an_idle_flow_earns_no_credit() {
    let mut queue = FairQueue::new(64);
    for i in 0..10 {
        queue.push(&flow("a"), (("a", i), 10));
    }
    for _ in 0..5 {
        let (key, _) = queue.pop().expect("queued");
        queue.charge(&key, 10);
    }
    // b arrives after a was served 50 tokens: lifted to a's counter, not to zero,
    // so a is not starved for five turns.
    for i in 0..5 {
        queue.push(&flow("b"), (("b", i), 10));
    }
    let order = serve(&mut queue);
    let firsts: Vec<&str> = order.iter().take(4).map(|(f, _)| *f).collect();
    assert!(
        firsts.contains(&"a") && firsts.contains(&"b"),
        "they alternate: {firsts:?}"
    );
}

#[test]
fn a_flow_coming_back_to_an_empty_queue_starts_from_the_last_served_counter() {
    let mut queue = FairQueue::new(8);
    queue.push(&flow("a"), 1);
    let (key, _) = queue.pop().expect("queued");
    queue.charge(&key, 500);
    queue.push(&flow("a"), 2);
    let (key, _) = queue.pop().expect("queued");
    queue.charge(&key, 500);
    let a = queue.counter(&key).expect("a");
    assert_eq!(a, 1000 * SCALE);
    queue.push(&flow("b"), 3);
    let b = queue
        .counter(&FlowKey {
            band: 0,
            key: "b".into(),
        })
        .expect("b");
    assert_eq!(b, a, "b is lifted to the floor a left, not left at zero");
}

#[test]
fn a_higher_band_is_served_first() {
    let mut queue = FairQueue::new(8);
    queue.push(&Flow::new(0, "a", 1), ("low", 1));
    queue.push(&Flow::new(5, "b", 1), ("high", 1));
    queue.push(&Flow::new(-1, "c", 1), ("sheddable", 1));
    assert_eq!(serve(&mut queue), ["high", "low", "sheddable"]);
}

#[test]
fn a_full_queue_sheds_the_lowest_band_first_then_the_longest_flow() {
    let mut queue = FairQueue::new(3);
    queue.push(&Flow::new(-1, "batch", 1), "batch-1");
    queue.push(&Flow::new(-1, "batch", 1), "batch-2");
    queue.push(&Flow::new(0, "a", 1), "a-1");
    // A higher band takes the place of the lowest band's newest.
    assert_eq!(
        queue.push(&Flow::new(0, "b", 1), "b-1"),
        Pushed::Shed("batch-2")
    );
    // The lowest band cannot push out anything above it.
    assert_eq!(
        queue.push(&Flow::new(-1, "batch", 1), "batch-3"),
        Pushed::Refused("batch-3")
    );
    assert_eq!(queue.len(), 3);
}

#[test]
fn within_a_band_the_flood_gives_up_its_newest_and_a_lone_flow_is_refused() {
    let mut queue = FairQueue::new(4);
    for i in 0..4 {
        assert_eq!(queue.push(&flow("flood"), i), Pushed::Queued);
    }
    assert_eq!(
        queue.push(&flow("flood"), 4),
        Pushed::Refused(4),
        "one flow: FIFO bound"
    );
    assert_eq!(queue.push(&flow("calm"), 10), Pushed::Shed(3));
    assert_eq!(queue.push(&flow("calm"), 11), Pushed::Shed(2));
    // Now 2 against 2: nobody gains by trading places.
    assert_eq!(queue.push(&flow("calm"), 12), Pushed::Refused(12));
}

#[test]
fn pop_where_takes_the_oldest_acceptable_item_of_the_first_flow_in_service_order() {
    let mut queue = FairQueue::new(8);
    queue.push(&flow("a"), ("a", 2));
    queue.push(&flow("b"), ("b", 3));
    queue.push(&flow("a"), ("a", 4));
    queue.push(&flow("a"), ("a", 3));
    // a is first in service order (same counter, older head): its oldest width-3 item.
    let (key, item) = queue.pop_where(|(_, width)| *width == 3).expect("fits");
    assert_eq!((key.key.as_str(), item), ("a", ("a", 3)));
    let (key, item) = queue
        .pop_where(|(_, width)| *width == 4)
        .expect("behind a's head");
    assert_eq!((key.key.as_str(), item), ("a", ("a", 4)));
    assert!(queue.pop_where(|(_, width)| *width == 5).is_none());
    assert_eq!(queue.len(), 2);
}

#[test]
fn drain_where_takes_out_matching_items_and_keeps_counts() {
    let mut queue = FairQueue::new(8);
    for i in 0..6 {
        queue.push(&flow(if i % 2 == 0 { "a" } else { "b" }), i);
    }
    let removed = queue.drain_where(|i| *i >= 4);
    assert_eq!(removed.len(), 2);
    assert_eq!(queue.len(), 4);
    assert_eq!(queue.iter().count(), 4);
    let mut rest: Vec<i32> = std::iter::from_fn(|| queue.pop().map(|(_, i)| i)).collect();
    rest.sort_unstable();
    assert_eq!(rest, [0, 1, 2, 3]);
}

#[test]
fn idle_flows_beyond_the_cap_are_forgotten_without_changing_what_they_are_owed() {
    let mut queue = FairQueue::new(4);
    for i in 0..(MAX_IDLE_FLOWS + 10) {
        queue.push(&flow(&format!("f{i}")), i);
        let (key, _) = queue.pop().expect("queued");
        queue.charge(&key, 1);
    }
    let band = &queue.bands[&0];
    assert!(
        band.flows.len() <= MAX_IDLE_FLOWS + 1,
        "{}",
        band.flows.len()
    );
    // A forgotten flow charged again starts from the floor.
    let key = FlowKey {
        band: 0,
        key: "f0".into(),
    };
    queue.charge(&key, 0);
    assert!(queue.counter(&key).expect("recreated") >= SCALE);
}
