use super::*;

fn version(success: u64, internal: u64, latency: &[(f64, u64)]) -> VersionSeries {
    let mut series = VersionSeries::default();
    series.requests.insert("success".into(), success);
    series.requests.insert("internal".into(), internal);
    series.latency = Histogram::from_buckets(latency.iter().copied(), 0.0, None);
    series
}

fn scrape(pods: &[(&str, &str, VersionSeries)]) -> PodScrape {
    let mut scrape = PodScrape::default();
    for (pod, v, series) in pods {
        scrape
            .pods
            .entry((*pod).to_owned())
            .or_default()
            .versions
            .insert((*v).to_owned(), series.clone());
    }
    scrape
}

#[test]
fn the_interval_is_now_minus_before_summed_over_pods() {
    let before = scrape(&[
        (
            "a",
            "1",
            version(100, 1, &[(0.1, 90), (f64::INFINITY, 101)]),
        ),
        ("b", "1", version(50, 0, &[(0.1, 50), (f64::INFINITY, 50)])),
    ]);
    let now = scrape(&[
        (
            "a",
            "1",
            version(150, 3, &[(0.1, 130), (f64::INFINITY, 153)]),
        ),
        ("b", "1", version(60, 0, &[(0.1, 55), (f64::INFINITY, 60)])),
        ("b", "2", version(10, 5, &[(0.1, 2), (f64::INFINITY, 15)])),
    ]);
    let interval = delta(&now, &before);
    let stable = interval.version("1");
    assert_eq!(stable.requests["success"], 60);
    assert_eq!(stable.errors(), 2);
    assert_eq!(stable.latency.buckets, vec![(0.1, 45), (f64::INFINITY, 62)]);
    // A version first seen in this interval counts whole.
    let candidate = interval.version("2");
    assert_eq!((candidate.judged_requests(), candidate.errors()), (15, 5));
    assert!(restarted_pods(&now, &before).is_empty());
}

#[test]
fn a_restarted_pod_counts_its_whole_new_series() {
    let before = scrape(&[("a", "1", version(1000, 10, &[(f64::INFINITY, 1010)]))]);
    let now = scrape(&[("a", "1", version(30, 2, &[(f64::INFINITY, 32)]))]);
    let interval = delta(&now, &before);
    assert_eq!(interval.version("1").judged_requests(), 32);
    assert_eq!(
        restarted_pods(&now, &before)
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["a".to_owned()]
    );
}

#[test]
fn new_pods_count_whole_and_gone_pods_nothing() {
    let before = scrape(&[("gone", "1", version(500, 0, &[]))]);
    let now = scrape(&[("new", "1", version(20, 1, &[]))]);
    assert_eq!(delta(&now, &before).version("1").judged_requests(), 21);
}

#[test]
fn from_buckets_sorts_merges_and_completes() {
    let histogram =
        Histogram::from_buckets([(1.0, 5), (0.5, 7), (0.5, 1), (f64::NAN, 9)], 2.0, None);
    // 0.5 merged to 8; 1.0 raised to 8 (monotonic); +Inf appended.
    assert_eq!(
        histogram.buckets,
        vec![(0.5, 8), (1.0, 8), (f64::INFINITY, 8)]
    );
    assert_eq!(histogram.count, 8);
    let with_count = Histogram::from_buckets([(1.0, 5)], 0.0, Some(9));
    assert_eq!(with_count.buckets.last(), Some(&(f64::INFINITY, 9)));
    assert!(Histogram::from_buckets([], 0.0, None).buckets.is_empty());
}

#[test]
fn histograms_of_different_layouts_add_without_inventing_observations() {
    let mut a = Histogram::from_buckets([(0.1, 5), (f64::INFINITY, 10)], 1.0, None);
    let b = Histogram::from_buckets([(0.5, 3), (f64::INFINITY, 4)], 1.0, None);
    a.add(&b);
    assert_eq!(a.buckets, vec![(0.1, 5), (0.5, 8), (f64::INFINITY, 14)]);
    assert_eq!((a.count, a.sum), (14, 2.0));
}

#[test]
fn a_changed_bucket_layout_is_a_reset() {
    let before = scrape(&[("a", "1", version(10, 0, &[(0.1, 5), (f64::INFINITY, 10)]))]);
    let now = scrape(&[("a", "1", version(20, 0, &[(0.2, 5), (f64::INFINITY, 20)]))]);
    assert!(restarted_pods(&now, &before).contains("a"));
    assert_eq!(delta(&now, &before).version("1").latency.observations(), 20);
}
