//! Stop sequences over streamed text (OpenAI semantics).
//!
//! Text that might be the start of a stop sequence is held back until the next
//! piece decides it; a completed stop sequence ends the stream and is itself
//! never emitted.

/// What [`StopMatcher::push`] lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// Text safe to send to the client now.
    pub emit: String,
    /// A stop sequence completed: the generation is over.
    pub stopped: bool,
}

/// Finds stop sequences in a stream of text pieces (one matcher per request).
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not emitted: a suffix that may begin a stop sequence.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|stop| !stop.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Adds a piece of text; returns what may be emitted and whether a stop
    /// sequence completed (everything after it is dropped).
    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome {
                emit: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(text);
        if let Some(start) = self.earliest_stop() {
            self.held.truncate(start);
            self.stopped = true;
            return StopOutcome {
                emit: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep = self.possible_stop_start();
        let rest = self.held.split_off(keep);
        StopOutcome {
            emit: std::mem::replace(&mut self.held, rest),
            stopped: false,
        }
    }

    /// Emits the held-back text at the end of the stream (none after a stop).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Whether a stop sequence has completed.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Byte offset of the first complete stop sequence in the held text.
    fn earliest_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min()
    }

    /// Byte offset of the longest held suffix that is a proper prefix of a stop
    /// sequence (the held text's length when there is none).
    fn possible_stop_start(&self) -> usize {
        let held = self.held.as_str();
        // Only suffixes shorter than the longest stop sequence can be a prefix of one.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut first = held.len().saturating_sub(longest.saturating_sub(1));
        while !held.is_char_boundary(first) {
            first += 1;
        }
        held[first..]
            .char_indices()
            .map(|(offset, _)| first + offset)
            .find(|&start| {
                let suffix = &held[start..];
                self.stops
                    .iter()
                    .any(|stop| stop.len() > suffix.len() && stop.starts_with(suffix))
            })
            .unwrap_or(held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|stop| (*stop).to_owned()).collect())
    }

    fn outcome(emit: &str, stopped: bool) -> StopOutcome {
        StopOutcome {
            emit: emit.to_owned(),
            stopped,
        }
    }

    #[test]
    fn text_without_stops_passes_through() {
        let mut stops = matcher(&[]);
        assert_eq!(stops.push("hello"), outcome("hello", false));
        assert_eq!(stops.flush(), "");
    }

    #[test]
    fn stop_inside_one_piece_cuts_before_it() {
        let mut stops = matcher(&["END"]);
        assert_eq!(stops.push("abcENDdef"), outcome("abc", true));
        assert_eq!(stops.push("more"), outcome("", true));
        assert_eq!(stops.flush(), "");
    }

    #[test]
    fn possible_prefix_is_held_until_decided() {
        let mut stops = matcher(&["\n\nUser:"]);
        assert_eq!(stops.push("Hi.\n"), outcome("Hi.", false));
        assert_eq!(stops.push("\nUs"), outcome("", false));
        assert_eq!(stops.push("ually"), outcome("\n\nUsually", false));
        assert_eq!(stops.push("\n\nUse"), outcome("", false));
        assert_eq!(stops.push("r: x"), outcome("", true));
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        let mut stops = matcher(&["STOP"]);
        assert_eq!(stops.push("go ST"), outcome("go ", false));
        assert_eq!(stops.flush(), "ST");
        assert!(!stops.is_stopped());
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut stops = matcher(&["world", "lo w"]);
        assert_eq!(stops.push("hello world"), outcome("hel", true));
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        let mut stops = matcher(&["é!"]);
        assert_eq!(stops.push("café"), outcome("caf", false));
        assert_eq!(stops.push("s"), outcome("és", false));
        assert_eq!(stops.push("😀é"), outcome("😀", false));
        assert_eq!(stops.push("!"), outcome("", true));
    }

    #[test]
    fn long_piece_holds_back_only_a_short_suffix() {
        let mut stops = matcher(&["xyz"]);
        let long = "a".repeat(1000) + "xy";
        assert_eq!(stops.push(&long), outcome(&"a".repeat(1000), false));
        assert_eq!(stops.push("zz"), outcome("", true));
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let mut stops = matcher(&["", "x"]);
        assert_eq!(stops.push("abc"), outcome("abc", false));
    }
}
