//! The Rust tokenizer gives the ids and texts Python's `tokenizers` gives for the
//! SmolLM2 and MiniLM tokenizer files (fixtures/smollm2_tokenizer.json, written by
//! fixtures/make_fixtures.py).

use std::path::{Path, PathBuf};

use modelplane_generate::config::GenerateModelConfig;
use modelplane_generate::text::{TextCodec, TextError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<EncodeCase>,
    decodes: Vec<DecodeCase>,
    minilm: Vec<DecodeCase>,
}

#[derive(Deserialize)]
struct EncodeCase {
    text: String,
    ids: Vec<u32>,
    ids_with_special_tokens: Vec<u32>,
    decoded: String,
}

#[derive(Deserialize)]
struct DecodeCase {
    ids: Vec<u32>,
    text: String,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_tokenizer.json");
    let text = std::fs::read_to_string(&path).expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn smollm2() -> TextCodec {
    let dir = examples().join("smollm2");
    let config = GenerateModelConfig::load(&dir)
        .expect("examples/models/smollm2 (run examples/make_chat_model.py)");
    TextCodec::load(&dir, &config).expect("SmolLM2 tokenizer and template")
}

#[test]
fn encode_matches_python_tokenizers() {
    let codec = smollm2();
    for case in fixture().cases {
        assert_eq!(
            codec.encode(&case.text, false).expect("encodes"),
            case.ids,
            "{:?}",
            case.text
        );
        assert_eq!(
            codec.encode(&case.text, true).expect("encodes"),
            case.ids_with_special_tokens,
            "{:?} with special tokens",
            case.text
        );
    }
}

#[test]
fn decode_matches_python_tokenizers() {
    let codec = smollm2();
    let fixture = fixture();
    for case in &fixture.cases {
        assert_eq!(
            codec.decode(&case.ids).expect("decodes"),
            case.decoded,
            "{:?}",
            case.text
        );
    }
    for case in &fixture.decodes {
        assert_eq!(
            codec.decode(&case.ids).expect("decodes"),
            case.text,
            "{:?}",
            case.ids
        );
    }
}

#[test]
fn minilm_wordpiece_matches_python_with_truncation() {
    let codec = TextCodec::from_tokenizer_file(&examples().join("minilm/1/tokenizer.json"))
        .expect("MiniLM tokenizer");
    assert!(!codec.has_chat_template());
    for case in fixture().minilm {
        assert_eq!(
            codec.encode(&case.text, true).expect("encodes"),
            case.ids,
            "{:?}",
            case.text
        );
    }
}

#[test]
fn padded_batch_pads_right_with_mask() {
    let codec = TextCodec::from_tokenizer_file(&examples().join("minilm/1/tokenizer.json"))
        .expect("MiniLM tokenizer");
    let fixture = fixture();
    let (short, long) = (&fixture.minilm[0], &fixture.minilm[1]);
    let batch = codec
        .encode_batch_padded(&[&short.text, &long.text], 0)
        .expect("encodes");
    assert_eq!((batch.rows, batch.width), (2, long.ids.len()));
    let padding = long.ids.len() - short.ids.len();
    let mut expected_ids = short.ids.clone();
    expected_ids.extend(std::iter::repeat_n(0, padding));
    expected_ids.extend(&long.ids);
    assert_eq!(batch.ids, expected_ids);
    let ones = |n| std::iter::repeat_n(1, n);
    let expected_mask: Vec<u32> = ones(short.ids.len())
        .chain(std::iter::repeat_n(0, padding))
        .chain(ones(long.ids.len()))
        .collect();
    assert_eq!(batch.attention_mask, expected_mask);
}

#[test]
fn codec_builds_from_json_bytes() {
    let bytes = std::fs::read(examples().join("smollm2/tokenizer.json")).expect("tokenizer file");
    let codec = TextCodec::from_tokenizer_json(&bytes).expect("parses");
    assert_eq!(codec.vocab_size(), 49152);
    assert_eq!(codec.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(
        codec.encode("Hello, world!", false).expect("encodes"),
        [19556, 28, 905, 17]
    );
}

#[test]
fn unreadable_tokenizer_is_a_load_error_naming_the_file() {
    let err = TextCodec::from_tokenizer_file(Path::new("/nonexistent/tokenizer.json"))
        .expect_err("missing file");
    assert!(matches!(err, TextError::LoadTokenizer { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/tokenizer.json"),
        "{err}"
    );
    let err = TextCodec::from_tokenizer_json(b"{\"model\": 1}").expect_err("bad JSON");
    assert!(matches!(err, TextError::LoadTokenizer { .. }), "{err}");
}

#[test]
fn decode_skips_ids_outside_the_vocabulary() {
    let codec = smollm2();
    let known = codec.decode(&[19556, 28]).expect("decodes");
    assert_eq!(
        codec.decode(&[19556, u32::MAX, 28]).expect("decodes"),
        known
    );
}
