//! Registry credentials (`.dockerconfigjson`) and `WWW-Authenticate` challenges.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// A username and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (`<token>` for some token-only registries).
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(pair))
    }
}

/// Why a docker config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// Not JSON of the `{"auths": {...}}` shape.
    #[error("docker config is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An `auth` field is not base64 of `user:password`.
    #[error("docker config entry for {registry}: `auth` is not base64 of user:password")]
    BadAuth {
        /// The entry's key.
        registry: String,
    },
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Credentials by registry host, read from a docker `config.json` (the `.dockerconfigjson` key
/// of a `kubernetes.io/dockerconfigjson` Secret).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    by_host: HashMap<String, Credentials>,
}

impl DockerConfig {
    /// Parses the JSON bytes of a docker config.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DockerConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes)?;
        let mut by_host = HashMap::new();
        for (key, entry) in raw.auths {
            let credentials = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => decode_auth(&key, &auth)?,
                (_, Some(username), Some(password)) => Credentials { username, password },
                _ => match entry.identitytoken {
                    Some(token) => Credentials {
                        username: "<token>".to_owned(),
                        password: token,
                    },
                    None => continue,
                },
            };
            by_host.insert(normalize_host(&key), credentials);
        }
        Ok(Self { by_host })
    }

    /// Adds the entries of `other`; its entries win where both name a registry.
    pub fn merge(&mut self, other: Self) {
        self.by_host.extend(other.by_host);
    }

    /// The credentials for `registry` (as written in a reference, e.g. `docker.io`, `host:5000`).
    pub fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        self.by_host.get(&normalize_host(registry))
    }
}

fn decode_auth(registry: &str, auth: &str) -> Result<Credentials, DockerConfigError> {
    let bad = || DockerConfigError::BadAuth {
        registry: registry.to_owned(),
    };
    let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Reduces a config key or registry name to a bare host[:port]: docker accepts
/// `https://index.docker.io/v1/`, `registry.example/v2/` and `registry.example` alike.
fn normalize_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

/// What a registry's `401` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Send `Authorization: Basic` with the registry's credentials.
    Basic,
    /// Get a token from `realm` (Docker/OCI token auth) and send it as a Bearer token.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass to the realm.
        service: Option<String>,
        /// The `scope` the registry asked for, if it named one.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value; `None` for schemes this client cannot answer.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Self::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut params = parse_params(params);
        Some(Self::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        })
    }
}

/// Parses `key="quoted, value",key2=token` auth-params (RFC 7235), keys lowercased.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = input.trim_start();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => take_quoted(quoted),
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// Reads a quoted string (the opening quote already consumed), handling `\"` escapes.
fn take_quoted(input: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = input.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &input[i + 1..]),
            _ => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_reads_auth_and_username_password_entries() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "127.0.0.1:5000": {{"username": "u", "password": "p:with:colons"}},
                "https://reg.example/v2/": {{"identitytoken": "tok"}},
                "empty.example": {{}}
            }}}}"#,
            STANDARD.encode("hub-user:hub-pass")
        );
        let config = DockerConfig::from_json(json.as_bytes()).unwrap();
        let hub = config.credentials_for("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub-user", "hub-pass")
        );
        let local = config.credentials_for("127.0.0.1:5000").unwrap();
        assert_eq!(local.password, "p:with:colons");
        assert_eq!(
            config.credentials_for("reg.example").unwrap().password,
            "tok"
        );
        assert!(config.credentials_for("empty.example").is_none());
        assert!(config.credentials_for("other.example").is_none());
    }

    #[test]
    fn auth_field_keeps_colons_in_the_password() {
        let json = format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
            STANDARD.encode("a:b:c")
        );
        let config = DockerConfig::from_json(json.as_bytes()).unwrap();
        assert_eq!(config.credentials_for("r.io").unwrap().password, "b:c");
    }

    #[test]
    fn malformed_auth_is_an_error_naming_the_registry() {
        let err = DockerConfig::from_json(br#"{"auths":{"r.io":{"auth":"!!"}}}"#).unwrap_err();
        assert!(err.to_string().contains("r.io"), "{err}");
        assert!(DockerConfig::from_json(b"[1]").is_err());
    }

    #[test]
    fn credentials_debug_output_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(
            c.basic_header(),
            format!("Basic {}", STANDARD.encode("u:secret"))
        );
    }

    #[test]
    fn bearer_challenge_yields_realm_service_and_scope() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            Challenge::parse(header),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
    }

    #[test]
    fn challenge_params_tolerate_spacing_unquoted_values_and_escapes() {
        let header = r#"bearer  Realm = "http://127.0.0.1:1/t\"x" , service=reg"#;
        assert_eq!(
            Challenge::parse(header),
            Some(Challenge::Bearer {
                realm: r#"http://127.0.0.1:1/t"x"#.into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
    }
}
