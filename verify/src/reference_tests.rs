use super::*;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn parse(s: &str) -> Reference {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn bare_name_defaults_to_docker_hub_library_and_latest() {
    let r = parse("nginx");
    assert_eq!(r.registry(), "docker.io");
    assert_eq!(r.api_host(), "registry-1.docker.io");
    assert_eq!(r.repository(), "library/nginx");
    assert_eq!(r.tag(), Some("latest"));
    assert_eq!(r.digest(), None);
    assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
}

#[test]
fn user_repository_on_docker_hub_keeps_its_namespace() {
    let r = parse("bitnami/redis:7.2");
    assert_eq!(r.registry(), "docker.io");
    assert_eq!(r.repository(), "bitnami/redis");
    assert_eq!(r.tag(), Some("7.2"));
}

#[test]
fn index_docker_io_is_normalized_to_docker_io() {
    assert_eq!(
        parse("index.docker.io/library/busybox:1").to_string(),
        "docker.io/library/busybox:1"
    );
    assert_eq!(parse("docker.io/busybox").repository(), "library/busybox");
}

#[test]
fn first_component_with_dot_colon_or_localhost_is_a_registry() {
    let r = parse("127.0.0.1:5000/models/resnet18:v3");
    assert_eq!(r.registry(), "127.0.0.1:5000");
    assert_eq!(r.api_host(), "127.0.0.1:5000");
    assert_eq!(r.repository(), "models/resnet18");
    assert_eq!(r.tag(), Some("v3"));
    assert_eq!(parse("localhost/a/b").registry(), "localhost");
    assert_eq!(
        parse("ghcr.io/modelplane/runtime:0.1.0").registry(),
        "ghcr.io"
    );
    // Without a dot, colon or `localhost` the first component is a Docker Hub namespace.
    assert_eq!(parse("myhost/app").registry(), "docker.io");
    assert_eq!(parse("myhost/app").repository(), "myhost/app");
}

#[test]
fn digest_only_reference_has_no_tag_and_asks_for_the_digest() {
    let r = parse(&format!("ghcr.io/a/b@sha256:{HEX}"));
    assert_eq!(r.tag(), None);
    assert_eq!(r.digest().unwrap().hex(), HEX);
    assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
}

#[test]
fn tag_and_digest_are_both_kept_and_the_digest_wins_for_fetching() {
    let r = parse(&format!("ghcr.io/a/b:v1@sha256:{HEX}"));
    assert_eq!(r.tag(), Some("v1"));
    assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
    assert_eq!(r.to_string(), format!("ghcr.io/a/b:v1@sha256:{HEX}"));
}

#[test]
fn port_is_not_mistaken_for_a_tag() {
    let r = parse("registry.local:8443/team/model");
    assert_eq!(r.registry(), "registry.local:8443");
    assert_eq!(r.tag(), Some("latest"));
}

/// Whether an error is the expected kind.
type Check = fn(&ReferenceError) -> bool;

#[test]
fn invalid_references_are_refused_with_the_part_at_fault() {
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, ReferenceError::Empty)),
        ("Upper/case", |e| {
            matches!(e, ReferenceError::InvalidRepository(_))
        }),
        ("ghcr.io/a//b", |e| {
            matches!(e, ReferenceError::InvalidRepository(_))
        }),
        ("ghcr.io/a-/b", |e| {
            matches!(e, ReferenceError::InvalidRepository(_))
        }),
        ("ghcr.io/a...b", |e| {
            matches!(e, ReferenceError::InvalidRepository(_))
        }),
        ("ghcr.io/", |e| {
            matches!(e, ReferenceError::InvalidRepository(_))
        }),
        ("a:-bad", |e| matches!(e, ReferenceError::InvalidTag(_))),
        ("a:", |e| matches!(e, ReferenceError::InvalidTag(_))),
        ("host:port/a", |e| {
            matches!(e, ReferenceError::InvalidRegistry(_))
        }),
        ("-bad.io/a", |e| {
            matches!(e, ReferenceError::InvalidRegistry(_))
        }),
        ("a@sha256:abc", |e| {
            matches!(e, ReferenceError::InvalidDigest(_))
        }),
        ("a@md5:abc", |e| {
            matches!(e, ReferenceError::InvalidDigest(_))
        }),
    ];
    for (input, expected) in cases {
        let err = input.parse::<Reference>().expect_err(input);
        assert!(expected(&err), "{input:?} gave {err:?}");
    }
    let long_tag = format!("a:{}", "t".repeat(129));
    assert!(matches!(
        long_tag.parse::<Reference>(),
        Err(ReferenceError::InvalidTag(_))
    ));
}

#[test]
fn separators_inside_path_components_follow_distribution_rules() {
    for ok in ["a/b.c", "a/b_c", "a/b__c", "a/b---c", "a0/9z"] {
        parse(ok);
    }
    for bad in ["a/b___c", "a/b._c", "a/_b", "a/b."] {
        assert!(bad.parse::<Reference>().is_err(), "{bad}");
    }
}

/// A small deterministic generator so the property test is reproducible without extra crates.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, options: &'a [&'a str]) -> &'a str {
        options[self.below(options.len())]
    }

    /// A word of `min + below(spread)` characters from `alphabet`.
    fn word(&mut self, alphabet: &[u8], min: usize, spread: usize) -> String {
        let len = min + if spread == 0 { 0 } else { self.below(spread) };
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_component(rng: &mut SplitMix) -> String {
    let mut component = rng.word(LOWER, 1, 6);
    for _ in 0..rng.below(3) {
        component.push_str(rng.pick(&[".", "_", "__", "-", "--"]));
        component.push_str(&rng.word(LOWER, 1, 4));
    }
    component
}

#[test]
fn random_valid_references_round_trip_through_display() {
    let mut rng = SplitMix(0x5EED_2026);
    for _ in 0..2000 {
        let registry = rng.pick(&[
            "",
            "ghcr.io/",
            "127.0.0.1:5000/",
            "localhost/",
            "r.example:443/",
        ]);
        let mut path: Vec<String> = (0..1 + rng.below(3))
            .map(|_| random_component(&mut rng))
            .collect();
        if registry.is_empty() {
            // A dotted first component would be read as a registry host (Docker's rule).
            path[0] = path[0].replace('.', "_");
        }
        let path = path.join("/");
        let tag = match rng.below(3) {
            0 => String::new(),
            _ => format!(
                ":{}{}",
                rng.word(b"abcXYZ019_", 1, 0),
                rng.word(b"abcXYZ019_.-", 0, 10)
            ),
        };
        let digest = match rng.below(2) {
            0 => String::new(),
            _ => format!("@sha256:{}", rng.word(b"0123456789abcdef", 64, 0)),
        };
        let input = format!("{registry}{path}{tag}{digest}");
        let parsed = parse(&input);
        assert_eq!(parse(&parsed.to_string()), parsed, "{input}");
        if let Some(tag) = tag.strip_prefix(':') {
            assert_eq!(parsed.tag(), Some(tag), "{input}");
        }
        assert_eq!(parsed.digest().is_some(), !digest.is_empty(), "{input}");
        if registry.is_empty() {
            assert_eq!(parsed.registry(), DOCKER_HUB);
        } else {
            assert_eq!(format!("{}/", parsed.registry()), registry);
            assert_eq!(parsed.repository(), path);
        }
    }
}

#[test]
fn random_garbage_never_panics_and_accepted_input_is_normalized() {
    let mut rng = SplitMix(42);
    for _ in 0..5000 {
        let input = rng.word(b"aZ09:/@._-sha256 ", 0, 24);
        if let Ok(parsed) = input.parse::<Reference>() {
            assert_eq!(parse(&parsed.to_string()), parsed, "{input:?}");
        }
    }
}
