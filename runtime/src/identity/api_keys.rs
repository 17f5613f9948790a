//! API keys: `<tenant>:<key>` lines of a mounted Secret file, held in memory only as
//! SHA-256 digests and looked up in constant time.
//!
//! A lookup hashes the presented key and compares the digest with every stored digest
//! (`subtle`'s constant-time equality, no early exit), so neither which bytes differ
//! nor which key matched (or whether one did) shows in how long it takes.

use std::path::Path;
use std::sync::Arc;

use modelplane_config::is_tenant_name;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::IdentityError;

/// The keys of one keys file.
pub(super) struct ApiKeys {
    entries: Vec<Entry>,
}

/// One key: its digest and its tenant.
struct Entry {
    digest: [u8; 32],
    tenant: Arc<str>,
}

impl ApiKeys {
    /// Parses the keys file `path` read as `bytes`: one `<tenant>:<key>` per line,
    /// blank lines and `#` comments skipped, surrounding whitespace trimmed. A line
    /// that is not of that shape, a tenant that is not a tenant name, a key with
    /// whitespace or control characters, or a key listed twice is an error naming the
    /// file and the line (never the key).
    pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Self, IdentityError> {
        let error = |line: usize, message: &str| IdentityError::KeysFile {
            path: path.to_owned(),
            line,
            message: message.to_owned(),
        };
        let text = std::str::from_utf8(bytes).map_err(|err| {
            let line = 1 + bytes[..err.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            error(line, "not UTF-8 text")
        })?;
        let mut entries: Vec<(Entry, usize)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((tenant, key)) = line.split_once(':') else {
                return Err(error(number, "expected <tenant>:<key>"));
            };
            if !is_tenant_name(tenant) {
                return Err(error(
                    number,
                    "the tenant is not a tenant name (1-63 of [a-z0-9-], starting and ending alphanumeric)",
                ));
            }
            if key.is_empty() {
                return Err(error(number, "the key is empty"));
            }
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(error(
                    number,
                    "the key contains whitespace or control characters",
                ));
            }
            let digest = digest(key);
            if let Some((_, first)) = entries.iter().find(|(entry, _)| entry.digest == digest) {
                return Err(error(
                    number,
                    &format!("the key is already listed on line {first}"),
                ));
            }
            let tenant = Arc::from(tenant);
            entries.push((Entry { digest, tenant }, number));
        }
        if entries.is_empty() {
            tracing::warn!(path = %path.display(), "the API keys file lists no key");
        }
        Ok(Self {
            entries: entries.into_iter().map(|(entry, _)| entry).collect(),
        })
    }

    /// How many keys there are.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The tenant of `key`, when it is one of the keys.
    pub(super) fn find(&self, key: &str) -> Option<Arc<str>> {
        let (found, _) = self.scan(&digest(key));
        found.map(|index| Arc::clone(&self.entries[index].tenant))
    }

    /// Compares `digest` with every stored digest in constant time and without
    /// branching on any comparison; returns the index of the match (keys are unique,
    /// so there is at most one) and how many digests were compared.
    fn scan(&self, digest: &[u8; 32]) -> (Option<usize>, usize) {
        let mut matched = Choice::from(0);
        let mut index = 0u64;
        let mut compared = 0;
        for (position, entry) in self.entries.iter().enumerate() {
            let equal = entry.digest.ct_eq(digest);
            index.conditional_assign(&(position as u64), equal);
            matched |= equal;
            compared += 1;
        }
        let found = bool::from(matched).then(|| usize::try_from(index).unwrap_or(usize::MAX));
        (found, compared)
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ApiKeys, IdentityError> {
        ApiKeys::parse(Path::new("/secrets/keys"), text.as_bytes())
    }

    fn line_error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(IdentityError::KeysFile { line, message, .. }) => (line, message),
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("{text:?} parsed"),
        }
    }

    #[test]
    fn keys_map_to_their_tenants_with_comments_and_blank_lines_skipped() {
        let keys = parse("# team keys\n\nteam-a:sk-alpha\r\n  team-b:sk-beta:with-colon  \n")
            .expect("valid");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.find("sk-alpha").as_deref(), Some("team-a"));
        assert_eq!(keys.find("sk-beta:with-colon").as_deref(), Some("team-b"));
        assert_eq!(keys.find("sk-alph"), None);
        assert_eq!(keys.find(""), None);
        assert_eq!(keys.find("team-a:sk-alpha"), None);
    }

    #[test]
    fn bad_lines_are_errors_naming_file_and_line_but_never_the_key() {
        let cases = [
            ("team-a:ok\nno-colon-secret\n", 2, "expected <tenant>:<key>"),
            ("Team_A:secret-1", 1, "not a tenant name"),
            (":secret-1", 1, "not a tenant name"),
            ("team-a:", 1, "the key is empty"),
            ("team-a:sec ret-1", 1, "whitespace"),
            (
                "team-a:secret-1\n# c\nteam-b:secret-1",
                3,
                "already listed on line 1",
            ),
        ];
        for (text, line, message) in cases {
            let (got_line, got) = line_error(text);
            assert_eq!(got_line, line, "{text:?}");
            assert!(got.contains(message), "{text:?}: {got}");
            assert!(!got.contains("secret"), "the key leaked: {got}");
        }
        let err = parse("team-a:ok\nno-colon-secret").err().expect("error");
        assert_eq!(err.to_string(), "/secrets/keys:2: expected <tenant>:<key>");
    }

    #[test]
    fn a_file_that_is_not_utf8_names_its_line() {
        let err = ApiKeys::parse(Path::new("k"), b"team-a:ok\nteam-b:\xff\xfe\n")
            .err()
            .expect("error");
        assert!(
            matches!(&err, IdentityError::KeysFile { line: 2, message, .. } if message == "not UTF-8 text"),
            "{err}"
        );
    }

    #[test]
    fn every_lookup_compares_every_stored_digest() {
        let text: String = (0..50).map(|i| format!("tenant-{i}:key-{i}\n")).collect();
        let keys = parse(&text).expect("valid");
        for (key, expected) in [
            ("key-0", Some(0)),
            ("key-25", Some(25)),
            ("key-49", Some(49)),
            ("nope", None),
        ] {
            let (found, compared) = keys.scan(&digest(key));
            assert_eq!(found, expected, "{key}");
            assert_eq!(compared, 50, "{key}: the scan stopped early");
        }
    }

    #[test]
    fn digests_are_compared_whole_not_by_prefix() {
        let keys = parse("team-a:key").expect("valid");
        let mut near = digest("key");
        near[31] ^= 1;
        assert_eq!(keys.scan(&near).0, None);
        near = digest("key");
        near[0] ^= 0x80;
        assert_eq!(keys.scan(&near).0, None);
        assert_eq!(keys.scan(&digest("key")).0, Some(0));
    }
}
