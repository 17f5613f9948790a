//! Chat templates render exactly what `transformers`' `apply_chat_template` renders
//! (fixtures/chat_templates.json, written by fixtures/make_fixtures.py): the text,
//! the ids once encoded without special tokens, and the refusals.

use std::collections::BTreeMap;
use std::path::Path;

use modelplane_generate::config::GenerateModelConfig;
use modelplane_generate::text::{ChatMessage, TextCodec, TextError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    bos_token: String,
    eos_token: String,
    templates: BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    text: Option<String>,
    ids: Option<Vec<u32>>,
    error: Option<String>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates.json");
    let text = std::fs::read_to_string(&path).expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn smollm2_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/smollm2")
}

/// One codec per template of the fixture, over the SmolLM2 tokenizer.
fn codecs(fixture: &Fixture) -> BTreeMap<String, TextCodec> {
    let tokenizer = smollm2_dir().join("tokenizer.json");
    fixture
        .templates
        .iter()
        .map(|(name, source)| {
            let codec = TextCodec::from_tokenizer_file(&tokenizer)
                .expect("SmolLM2 tokenizer (run examples/make_chat_model.py)")
                .with_chat_template(
                    source,
                    Some(fixture.bos_token.clone()),
                    Some(fixture.eos_token.clone()),
                )
                .expect("template compiles");
            (name.clone(), codec)
        })
        .collect()
}

#[test]
fn templates_render_like_transformers() {
    let fixture = fixture();
    let codecs = codecs(&fixture);
    let mut rendered = 0;
    for case in &fixture.cases {
        let codec = &codecs[&case.template];
        let result = codec.apply_chat_template(&case.messages, case.add_generation_prompt);
        let label = format!(
            "{} {:?} gen={}",
            case.template, case.messages, case.add_generation_prompt
        );
        match (&case.text, &case.error) {
            (Some(text), None) => {
                let prompt = result.unwrap_or_else(|err| panic!("{label}: {err}"));
                assert_eq!(&prompt, text, "{label}");
                let ids = codec.encode(&prompt, false).expect("encodes");
                assert_eq!(Some(&ids), case.ids.as_ref(), "{label}");
                rendered += 1;
            }
            (None, Some(error)) => match result {
                Err(TextError::Render(message)) => {
                    assert!(message.contains(error), "{label}: {message}")
                }
                other => panic!("{label}: expected a render error, got {other:?}"),
            },
            _ => panic!("{label}: fixture case has neither text nor error"),
        }
    }
    assert!(rendered >= 20, "only {rendered} cases rendered");
}

#[test]
fn smollm2_folder_template_matches_the_fixture() {
    let dir = smollm2_dir();
    let config = GenerateModelConfig::load(&dir).expect("SmolLM2 config");
    let codec = TextCodec::load(&dir, &config).expect("codec");
    assert!(codec.has_chat_template());
    let fixture = fixture();
    let case = fixture
        .cases
        .iter()
        .find(|case| case.template == "smollm2" && case.add_generation_prompt)
        .expect("a SmolLM2 case");
    let prompt = codec
        .apply_chat_template(&case.messages, true)
        .expect("renders");
    assert_eq!(Some(&prompt), case.text.as_ref());
}

#[test]
fn codec_without_template_refuses_chat() {
    let codec =
        TextCodec::from_tokenizer_file(&smollm2_dir().join("tokenizer.json")).expect("codec");
    assert!(!codec.has_chat_template());
    let messages = [ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    }];
    assert!(matches!(
        codec.apply_chat_template(&messages, true),
        Err(TextError::NoChatTemplate)
    ));
}
