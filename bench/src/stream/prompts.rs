//! The prompts a generation run sends, in turn.
//!
//! The default set is `bench/prompts.jsonl` (built in): short questions, a
//! few sentences, and passages of a few hundred tokens with a question, so
//! prefill and decode costs both show. The Python baselines read the same file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Error;

/// `bench/prompts.jsonl`, compiled in.
const BUILTIN: &str = include_str!("../../prompts.jsonl");

/// A non-empty list of prompts handed out round-robin, shared by every worker
/// of a run (cloning shares the position).
#[derive(Debug, Clone)]
pub struct Prompts {
    texts: Arc<[String]>,
    next: Arc<AtomicUsize>,
}

impl Prompts {
    /// The built-in set.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN).expect("bench/prompts.jsonl is a valid prompt file")
    }

    /// Reads a prompt file: one prompt a line, either a JSON string (which may
    /// hold newlines) or plain text; blank lines are skipped.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|why| Error::Prompts(format!("{}: {why}", path.display())))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut texts = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let prompt = if line.starts_with('"') {
                serde_json::from_str::<String>(line).map_err(|e| format!("line {}: {e}", n + 1))?
            } else {
                line.to_owned()
            };
            texts.push(prompt);
        }
        if texts.is_empty() {
            return Err("no prompts".into());
        }
        Ok(Self {
            texts: texts.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// All prompts, in file order.
    pub fn all(&self) -> &[String] {
        &self.texts
    }

    /// The index of the next prompt to send; every caller gets the following
    /// one, wrapping around.
    pub fn take(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.texts.len()
    }

    /// Starts the round over at the first prompt (after a warm-up, so that a
    /// measured run of `n × len` requests sends every prompt `n` times).
    pub fn restart(&self) {
        self.next.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_prompts_vary_in_length() {
        let prompts = Prompts::builtin();
        let lengths: Vec<usize> = prompts.all().iter().map(String::len).collect();
        let shortest = lengths.iter().min().unwrap();
        let longest = lengths.iter().max().unwrap();
        assert!(prompts.all().len() >= 8, "{lengths:?}");
        assert!(*longest > 20 * shortest, "{lengths:?}");
    }

    #[test]
    fn json_lines_may_hold_newlines_and_plain_lines_are_taken_as_they_are() {
        let prompts = Prompts::parse("\"one\\ntwo\"\n\n  plain text  \n").unwrap();
        assert_eq!(prompts.all(), ["one\ntwo", "plain text"]);
    }

    #[test]
    fn an_empty_file_or_a_broken_json_line_is_refused() {
        assert!(Prompts::parse("\n \n").is_err());
        let err = Prompts::parse("ok\n\"unterminated\n").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
    }

    #[test]
    fn clones_share_the_round_robin_position() {
        let a = Prompts::parse("x\ny\nz").unwrap();
        let b = a.clone();
        let order = [a.take(), b.take(), a.take(), b.take()];
        assert_eq!(order, [0, 1, 2, 0]);
    }

    #[test]
    fn restart_goes_back_to_the_first_prompt_for_every_clone() {
        let a = Prompts::parse("x\ny\nz").unwrap();
        let b = a.clone();
        a.take();
        b.take();
        a.restart();
        assert_eq!([b.take(), a.take()], [0, 1]);
    }
}
