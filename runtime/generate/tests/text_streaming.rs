//! Streaming text: pieces from the incremental decoder, passed through the stop
//! matcher, add up to the full decode (cut before the first stop sequence), never
//! split a character, and never show a stop sequence, for real texts and for
//! random token sequences over the SmolLM2 vocabulary.

use std::path::Path;

use modelplane_generate::text::{IncrementalDecoder, StopMatcher, TextCodec};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const SAMPLES: &[&str] = &[
    "What is the capital of France? The capital of France is Paris.",
    "café naïve résumé Ünïcödé",
    "日本語のテキストと中文文本",
    "emoji: 😀👍🏽 🇫🇷 and a family 👨‍👩‍👧",
    "def add(a, b):\n    return a + b  # sum\n",
];

fn codec() -> TextCodec {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/smollm2/tokenizer.json");
    TextCodec::from_tokenizer_file(&path)
        .expect("SmolLM2 tokenizer (run examples/make_chat_model.py)")
}

/// The pieces the decoder emits for `ids`, the last one from `finish`.
fn stream(codec: &TextCodec, ids: &[u32]) -> Vec<String> {
    let mut decoder = IncrementalDecoder::new();
    let mut pieces: Vec<String> = ids.iter().map(|&id| decoder.push(codec, id)).collect();
    pieces.push(decoder.finish(codec));
    pieces
}

/// What a request streams: decoder pieces through the stop matcher, as the engine
/// does; returns the emitted text and whether a stop sequence ended it.
fn stream_with_stops(codec: &TextCodec, ids: &[u32], stops: &[String]) -> (String, bool) {
    let mut decoder = IncrementalDecoder::new();
    let mut matcher = StopMatcher::new(stops.to_vec());
    let mut out = String::new();
    for &id in ids {
        let outcome = matcher.push(&decoder.push(codec, id));
        out.push_str(&outcome.emit);
        if outcome.stopped {
            return (out, true);
        }
    }
    let outcome = matcher.push(&decoder.finish(codec));
    out.push_str(&outcome.emit);
    if outcome.stopped {
        return (out, true);
    }
    out.push_str(&matcher.flush());
    (out, false)
}

#[test]
fn pieces_of_real_text_add_up_to_the_full_decode_without_broken_characters() {
    let codec = codec();
    for text in SAMPLES {
        let ids = codec.encode(text, false).expect("encodes");
        let pieces = stream(&codec, &ids);
        assert_eq!(pieces.concat(), *text, "{text:?}");
        for piece in &pieces {
            assert!(
                !piece.contains('\u{FFFD}'),
                "{text:?}: broken piece {piece:?} in {pieces:?}"
            );
        }
    }
}

#[test]
fn emoji_split_over_byte_tokens_is_emitted_once_complete() {
    let codec = codec();
    let ids = codec.encode("😀", false).expect("encodes");
    assert!(ids.len() > 1, "the emoji should span byte tokens: {ids:?}");
    let pieces = stream(&codec, &ids);
    let (last, held) = pieces[..ids.len()].split_last().expect("pieces");
    assert!(held.iter().all(String::is_empty), "{pieces:?}");
    assert_eq!(last, "😀");
}

#[test]
fn special_tokens_emit_nothing() {
    let codec = codec();
    let mut ids = codec.encode("Hi there", false).expect("encodes");
    ids.insert(1, 2);
    ids.push(0);
    assert_eq!(stream(&codec, &ids).concat(), "Hi there");
}

#[test]
fn stop_sequence_across_tokens_cuts_the_stream() {
    let codec = codec();
    let ids = codec
        .encode("The capital of France is Paris. It is lovely.", false)
        .expect("encodes");
    let stops = vec!["Paris.".to_owned(), "nowhere".to_owned()];
    assert_eq!(
        stream_with_stops(&codec, &ids, &stops),
        ("The capital of France is ".to_owned(), true)
    );
    let stops = vec!["lovely!".to_owned()];
    assert_eq!(
        stream_with_stops(&codec, &ids, &stops),
        (
            "The capital of France is Paris. It is lovely.".to_owned(),
            false
        )
    );
}

/// Ids a model may produce, weighted toward the hard cases: byte tokens that
/// split characters (from multi-byte texts), special tokens, and any id.
fn token_pool(codec: &TextCodec) -> Vec<u32> {
    let mut pool: Vec<u32> = SAMPLES
        .iter()
        .flat_map(|text| codec.encode(text, false).expect("encodes"))
        .collect();
    pool.extend(0..17);
    pool
}

fn random_ids(rng: &mut ChaCha8Rng, pool: &[u32], vocab: u32) -> Vec<u32> {
    let len = rng.random_range(1..40);
    (0..len)
        .map(|_| {
            if rng.random_bool(0.2) {
                rng.random_range(0..vocab)
            } else {
                pool[rng.random_range(0..pool.len())]
            }
        })
        .collect()
}

/// A stop sequence cut from `text` at character boundaries (1 to 4 characters).
fn random_stop(rng: &mut ChaCha8Rng, text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return None;
    }
    let start = rng.random_range(0..chars.len());
    let end = (start + rng.random_range(1..5)).min(chars.len());
    Some(chars[start..end].iter().collect())
}

#[test]
fn random_token_sequences_stream_exactly_the_full_decode() {
    let codec = codec();
    let pool = token_pool(&codec);
    let vocab = codec.vocab_size() as u32;
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for _ in 0..300 {
        let ids = random_ids(&mut rng, &pool, vocab);
        let full = codec.decode(&ids).expect("decodes");
        assert_eq!(stream(&codec, &ids).concat(), full, "{ids:?}");
    }
}

#[test]
fn random_token_sequences_stop_at_the_first_occurrence() {
    let codec = codec();
    let pool = token_pool(&codec);
    let vocab = codec.vocab_size() as u32;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..300 {
        let ids = random_ids(&mut rng, &pool, vocab);
        let full = codec.decode(&ids).expect("decodes");
        // A stop that never occurs but shares prefixes with the text keeps some
        // text held back; the one cut from the text must end the stream.
        let mut stops = vec![format!("{full}\u{0}")];
        stops.extend(random_stop(&mut rng, &full));
        let (emitted, stopped) = stream_with_stops(&codec, &ids, &stops);
        match stops.get(1).and_then(|stop| full.find(stop.as_str())) {
            Some(start) => {
                assert!(stopped, "{ids:?} {stops:?}");
                assert_eq!(emitted, full[..start], "{ids:?} {stops:?}");
            }
            None => {
                assert!(!stopped, "{ids:?} {stops:?}");
                assert_eq!(emitted, full, "{ids:?} {stops:?}");
            }
        }
    }
}
