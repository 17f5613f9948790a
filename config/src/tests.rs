use super::*;

const MINIMAL: &str = "
models:
  - name: mlp
    versions:
      - version: '1'
        source: {path: /models/mlp.pt}
";

fn minimal() -> RuntimeConfig {
    RuntimeConfig::from_yaml(MINIMAL).expect("minimal config parses")
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let config = minimal();
    assert_eq!(config.server.http, "0.0.0.0:8080");
    assert_eq!(config.server.grpc, "0.0.0.0:8081");
    let model = &config.models[0];
    assert_eq!(model.task, Task::Tensor);
    assert_eq!(model.batching.max_batch_size, 1);
    assert_eq!(
        model.limits.request_timeout.get(),
        std::time::Duration::from_secs(30)
    );
    assert_eq!(model.versions[0].device, Device::Cpu);
    assert_eq!(model.default_version(), Some("1"));
}

#[test]
fn yaml_round_trips() {
    let mut config = minimal();
    config.models[0].batching.max_queue_delay = Duration::from_millis(2);
    let text = config.to_yaml().expect("renders");
    assert!(text.contains("maxQueueDelay: 2ms"), "{text}");
    assert_eq!(
        RuntimeConfig::from_yaml(&text).expect("parses back"),
        config
    );
}

#[test]
fn unknown_fields_are_refused() {
    let text = MINIMAL.replace("name: mlp", "name: mlp\n    replicas: 3");
    let err = RuntimeConfig::from_yaml(&text).expect_err("unknown field");
    assert!(err.to_string().contains("replicas"), "{err}");
}

#[test]
fn duplicate_versions_are_refused() {
    let mut config = minimal();
    let again = config.models[0].versions[0].clone();
    config.models[0].versions.push(again);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::DuplicateVersion { .. })
    ));
}

#[test]
fn duplicate_models_are_refused() {
    let mut config = minimal();
    let again = config.models[0].clone();
    config.models.push(again);
    assert!(matches!(config.validate(), Err(ConfigError::DuplicateModel(name)) if name == "mlp"));
}

#[test]
fn names_that_break_url_paths_are_refused() {
    let mut config = minimal();
    config.models[0].name = "a/b".to_owned();
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidName { what: "model", .. })
    ));
}

#[test]
fn oci_sources_must_be_pinned_by_digest() {
    let mut config = minimal();
    let oci = |reference: &str| {
        Source::Oci(OciSource {
            reference: reference.to_owned(),
            plain_http: false,
        })
    };
    config.models[0].versions[0].source = oci("registry.local/models/mlp:v1");
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidSource { .. })
    ));
    let pinned = format!("registry.local/models/mlp@sha256:{}", "a".repeat(64));
    config.models[0].versions[0].source = oci(&pinned);
    config.validate().expect("pinned reference is valid");
}

#[test]
fn http_sources_need_a_sha256() {
    let mut config = minimal();
    config.models[0].versions[0].source = Source::Http(HttpSource {
        url: "https://x/m.pt".to_owned(),
        sha256: "abc".to_owned(),
    });
    let err = config.validate().expect_err("short sha256");
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn batching_requires_a_variable_batch_dimension() {
    let mut config = minimal();
    let model = &mut config.models[0];
    model.batching.max_batch_size = 8;
    model.inputs = vec![TensorSpec {
        name: "x".to_owned(),
        datatype: "FP32".to_owned(),
        shape: vec![1, 4],
    }];
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidTensors { .. })
    ));
    config.models[0].inputs[0].shape[0] = -1;
    config
        .validate()
        .expect("variable batch dimension is valid");
}

#[test]
fn zero_limits_are_refused_with_the_field_name() {
    let mut config = minimal();
    config.models[0].limits.max_queue = 0;
    let err = config.validate().expect_err("zero queue");
    assert!(err.to_string().contains("limits.maxQueue"), "{err}");
}

#[test]
fn default_version_must_exist() {
    let mut config = minimal();
    config.models[0].default_version = Some("9".to_owned());
    assert!(matches!(
        config.validate(),
        Err(ConfigError::UnknownDefaultVersion { .. })
    ));
}

#[test]
fn a_tokenizer_round_trips_and_its_path_defaults_to_tokenizer_json() {
    let text = MINIMAL.replace(
        "name: mlp",
        &format!(
            "name: mlp\n    task: embed\n    tokenizer: {{path: vocab/minilm.json, sha256: {}}}",
            "a".repeat(64)
        ),
    );
    let config = RuntimeConfig::from_yaml(&text).expect("parses");
    assert_eq!(
        config.models[0].tokenizer,
        Some(TokenizerConfig {
            path: "vocab/minilm.json".into(),
            sha256: Some("a".repeat(64)),
        })
    );
    let rendered = config.to_yaml().expect("renders");
    assert!(rendered.contains("path: vocab/minilm.json"), "{rendered}");
    assert_eq!(
        RuntimeConfig::from_yaml(&rendered).expect("parses back"),
        config
    );
    let bare = MINIMAL.replace("name: mlp", "name: mlp\n    tokenizer: {}");
    let tokenizer = RuntimeConfig::from_yaml(&bare).expect("parses").models[0]
        .tokenizer
        .clone();
    assert_eq!(
        tokenizer.map(|t| t.path),
        Some(DEFAULT_TOKENIZER_FILE.into())
    );
    assert!(!minimal().to_yaml().expect("renders").contains("tokenizer"));
}

#[test]
fn a_tokenizer_outside_the_model_folder_or_with_a_bad_sha256_is_refused() {
    let cases = [
        ("{path: /etc/tokenizer.json}", "tokenizer.path"),
        ("{path: ../other/tokenizer.json}", "tokenizer.path"),
        ("{path: 'a//b.json'}", "tokenizer.path"),
        ("{path: ''}", "tokenizer.path"),
        ("{sha256: ABC}", "tokenizer.sha256"),
        ("{path: t.json, url: 'http://x/t.json'}", "url"),
    ];
    for (block, field) in cases {
        let text = MINIMAL.replace("name: mlp", &format!("name: mlp\n    tokenizer: {block}"));
        let err = RuntimeConfig::from_yaml(&text).expect_err(block);
        assert!(err.to_string().contains(field), "{block}: {err}");
    }
}

#[test]
fn a_file_beside_an_http_model_is_resolved_against_the_url_folder() {
    let http = |url: &str| HttpSource {
        url: url.to_owned(),
        sha256: "a".repeat(64),
    };
    let cases = [
        (
            "https://m.example/minilm/1/model.pt",
            "tokenizer.json",
            "https://m.example/minilm/1/tokenizer.json",
        ),
        (
            "https://m.example/minilm/1/model.pt?sig=x#y",
            "vocab/t.json",
            "https://m.example/minilm/1/vocab/t.json",
        ),
        (
            "https://m.example",
            "tokenizer.json",
            "https://m.example/tokenizer.json",
        ),
    ];
    for (url, relative, expected) in cases {
        assert_eq!(http(url).url_beside(relative), expected, "{url}");
    }
}

mod tenancy {
    use super::super::*;

    const TENANTS: &str = r#"
identity:
  apiKeys: {file: /etc/modelplane/api-keys}
  jwt:
    audiences: [modelplane]
    keys: [{algorithm: RS256, file: /etc/jwt/rs.pem, id: k1}, {algorithm: HS256, file: /etc/jwt/secret}]
  gateway: {trustHeaders: true, objectives: {critical: 10, sheddable: -1}}
tenants:
  - name: team-a
    priority: 10
    requests: {perSecond: 200, burst: 400, tokensPerMinute: 500000, maxConcurrent: 64}
    cgroup: {cpuWeight: 200, cpuMax: "2 cores"}
  - name: team-b
fairness: {inputTokenWeight: 1, outputTokenWeight: 3}
"#;

    #[test]
    fn tenants_identity_and_fairness_parse_and_round_trip() {
        let config = RuntimeConfig::from_yaml(TENANTS).expect("valid");
        assert_eq!(config.tenants.len(), 2);
        assert_eq!(config.tenants[0].priority, 10);
        assert_eq!(config.tenants[1].priority, 1, "priority defaults to 1");
        assert_eq!(config.tenants[0].requests.max_concurrent, Some(64));
        assert!(
            !config.identity.anonymous_allowed(),
            "keys configured: no anonymous by default"
        );
        assert_eq!(
            config
                .identity
                .jwt
                .as_ref()
                .map(|j| j.tenant_claim.as_str()),
            Some("tenant")
        );
        assert_eq!(config.fairness.output_token_weight, 3);
        let again = RuntimeConfig::from_yaml(&config.to_yaml().expect("renders")).expect("parses");
        assert_eq!(again, config);
    }

    #[test]
    fn without_credentials_anonymous_requests_are_allowed() {
        let config = RuntimeConfig::from_yaml("models: []").expect("valid");
        assert!(config.identity.anonymous_allowed());
        assert_eq!(config.identity.anonymous_tenant(), ANONYMOUS_TENANT);
        assert!(!config.to_yaml().expect("renders").contains("identity"));
    }

    #[test]
    fn malformed_tenancy_is_refused_naming_the_field() {
        let cases = [
            ("tenants: [{name: Team_A}]", "not a tenant name"),
            ("tenants: [{name: a}, {name: a}]", "declared twice"),
            ("tenants: [{name: a, priority: 0}]", "tenants[a].priority"),
            (
                "tenants: [{name: a, requests: {burst: 5}}]",
                "needs requests.perSecond",
            ),
            (
                "tenants: [{name: a, requests: {perSecond: 10, burst: 5}}]",
                "at least requests.perSecond",
            ),
            (
                "tenants: [{name: a, cgroup: {cpuWeight: 0}}]",
                "cgroup.cpuWeight",
            ),
            (
                "tenants: [{name: a, cgroup: {cpuMax: lots}}]",
                "cgroup.cpuMax",
            ),
            ("identity: {jwt: {keys: []}}", "lists no key"),
            ("identity: {anonymousTenant: 'A B'}", "anonymousTenant"),
            ("fairness: {inputTokenWeight: 0}", "token weights"),
        ];
        for (yaml, expected) in cases {
            let err = RuntimeConfig::from_yaml(yaml).expect_err(yaml).to_string();
            assert!(err.contains(expected), "{yaml}: {err}");
        }
        let err = RuntimeConfig::from_yaml("identity: {jwt: {keys: [{algorithm: none, file: x}]}}")
            .expect_err("alg none is no algorithm");
        assert!(err.to_string().contains("none"), "{err}");
    }
}
