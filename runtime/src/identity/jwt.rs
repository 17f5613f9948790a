//! Bearer JSON Web Tokens, verified with `jsonwebtoken` (RustCrypto backend).
//!
//! Each configured key accepts exactly one algorithm (HS256, RS256 or ES256): the
//! header's `alg` must be that key's, so an RS256 public key can never be used as an
//! HS256 secret, and `alg: none` is refused before any key is looked at. A token's
//! `kid` picks the key with that id; a token without one is tried against the keys
//! without an id. `exp` is required; `exp` and `nbf` are checked with the configured
//! leeway, `iss` when an issuer is configured and `aud` when audiences are (both then
//! required). The tenant is the configured claim; a valid token whose claim is
//! missing or not a tenant name is a 403, not a 401.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use modelplane_config::{JwtAlgorithm, JwtConfig, is_tenant_name};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{AuthError, IdentityError, TokenError};

/// The shortest HS256 secret accepted: RFC 7518 §3.2 requires a key at least as long
/// as the hash (256 bits).
pub const MIN_HS256_SECRET: usize = 32;

/// The verifier of one `identity.jwt` config.
pub(super) struct JwtVerifier {
    keys: Vec<Key>,
    tenant_claim: String,
}

/// One verification key and the validation it is used with.
struct Key {
    id: Option<String>,
    algorithm: JwtAlgorithm,
    decoding: DecodingKey,
    validation: Validation,
}

/// The header fields looked at before verification.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl JwtVerifier {
    /// The verifier of `config`, with each key's file read as `files[i]`. A key that
    /// does not parse as its algorithm's key, a short HS256 secret or a repeated `id`
    /// is an error naming the key and its file.
    pub(super) fn new(config: &JwtConfig, files: &[Vec<u8>]) -> Result<Self, IdentityError> {
        let mut keys: Vec<Key> = Vec::with_capacity(config.keys.len());
        for (index, (key, bytes)) in config.keys.iter().zip(files).enumerate() {
            let error = |message: String| IdentityError::JwtKey {
                index,
                path: key.file.clone().into(),
                message,
            };
            if let Some(id) = &key.id
                && keys.iter().any(|k| k.id.as_ref() == Some(id))
            {
                return Err(error(format!("the key id {id:?} is used twice")));
            }
            let decoding = decoding_key(key.algorithm, bytes).map_err(error)?;
            keys.push(Key {
                id: key.id.clone(),
                algorithm: key.algorithm,
                decoding,
                validation: validation(config, key.algorithm),
            });
        }
        Ok(Self {
            keys,
            tenant_claim: config.tenant_claim.clone(),
        })
    }

    /// How many keys there are.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Verifies `token` and returns its tenant.
    pub(super) fn verify(&self, token: &str) -> Result<Arc<str>, AuthError> {
        let header = header(token)?;
        let algorithm = algorithm(&header.alg)?;
        let claims = match &header.kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|key| key.id.as_deref() == Some(kid.as_str()))
                    .ok_or_else(|| TokenError::UnknownKey(clip(kid)))?;
                key.check_algorithm(algorithm)?;
                key.decode(token)?
            }
            None => self.decode_without_kid(token, algorithm)?,
        };
        self.tenant(&claims)
    }

    /// Tries the keys without an id that accept `algorithm`: the first whose
    /// signature matches decides.
    fn decode_without_kid(
        &self,
        token: &str,
        algorithm: JwtAlgorithm,
    ) -> Result<Map<String, Value>, TokenError> {
        let unnamed: Vec<&Key> = self.keys.iter().filter(|key| key.id.is_none()).collect();
        let Some(first) = unnamed.first() else {
            return Err(TokenError::NoKid);
        };
        let mut candidates = unnamed.iter().filter(|key| key.algorithm == algorithm);
        let Some(key) = candidates.next() else {
            return Err(TokenError::WrongAlgorithm {
                key: first.algorithm,
                token: algorithm,
            });
        };
        let mut outcome = key.decode(token);
        for key in candidates {
            match outcome {
                Err(TokenError::BadSignature) => outcome = key.decode(token),
                _ => break,
            }
        }
        outcome
    }

    fn tenant(&self, claims: &Map<String, Value>) -> Result<Arc<str>, AuthError> {
        let claim = &self.tenant_claim;
        match claims.get(claim) {
            None | Some(Value::Null) => Err(AuthError::Forbidden(format!(
                "the token has no {claim:?} claim naming its tenant"
            ))),
            Some(Value::String(tenant)) if is_tenant_name(tenant) => Ok(Arc::from(tenant.as_str())),
            Some(Value::String(tenant)) => Err(AuthError::Forbidden(format!(
                "claim {claim:?}: {:?} is not a tenant name (1-63 of [a-z0-9-], starting and ending alphanumeric)",
                clip(tenant)
            ))),
            Some(_) => Err(AuthError::Forbidden(format!(
                "claim {claim:?} is not a string naming a tenant"
            ))),
        }
    }
}

impl Key {
    fn check_algorithm(&self, algorithm: JwtAlgorithm) -> Result<(), TokenError> {
        if self.algorithm == algorithm {
            return Ok(());
        }
        Err(TokenError::WrongAlgorithm {
            key: self.algorithm,
            token: algorithm,
        })
    }

    fn decode(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| token_error(err.kind(), token))
    }
}

/// Whether `token` has the shape of a JWT: three dot-separated parts of base64url
/// characters, the first two non-empty.
pub(super) fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let base64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|part| base64url(part))
}

fn header(token: &str) -> Result<RawHeader, TokenError> {
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("the header is not base64url".to_owned()))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        TokenError::Malformed("the header is not a JSON object with an \"alg\"".to_owned())
    })
}

fn algorithm(alg: &str) -> Result<JwtAlgorithm, TokenError> {
    match alg {
        "HS256" => Ok(JwtAlgorithm::Hs256),
        "RS256" => Ok(JwtAlgorithm::Rs256),
        "ES256" => Ok(JwtAlgorithm::Es256),
        none if none.eq_ignore_ascii_case("none") => Err(TokenError::Unsigned),
        other => Err(TokenError::UnsupportedAlgorithm(clip(other))),
    }
}

fn jwt_algorithm(algorithm: JwtAlgorithm) -> Algorithm {
    match algorithm {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

/// The name of an algorithm as a JWT header writes it.
pub(super) fn algorithm_name(algorithm: JwtAlgorithm) -> &'static str {
    match algorithm {
        JwtAlgorithm::Hs256 => "HS256",
        JwtAlgorithm::Rs256 => "RS256",
        JwtAlgorithm::Es256 => "ES256",
    }
}

/// The key of `algorithm` in `bytes`: an HS256 secret (trailing whitespace, such as
/// the newline of a hand-written file, trimmed) or a PEM public key, checked now so
/// a bad key fails the load, not the first request.
fn decoding_key(algorithm: JwtAlgorithm, bytes: &[u8]) -> Result<DecodingKey, String> {
    let key = match algorithm {
        JwtAlgorithm::Hs256 => {
            let secret = bytes.trim_ascii_end();
            if secret.len() < MIN_HS256_SECRET {
                return Err(format!(
                    "an HS256 secret needs at least {MIN_HS256_SECRET} bytes, this one has {}",
                    secret.len()
                ));
            }
            DecodingKey::from_secret(secret)
        }
        JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(bytes),
        JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(bytes),
    };
    let name = algorithm_name(algorithm);
    let key = key.map_err(|err| format!("not a {name} key: {err}"))?;
    // Building the verifier parses the key; a dummy signature then merely fails to match.
    jsonwebtoken::crypto::verify("AA", b"probe", &key, jwt_algorithm(algorithm))
        .map_err(|err| format!("not a usable {name} key: {err}"))?;
    Ok(key)
}

fn validation(config: &JwtConfig, algorithm: JwtAlgorithm) -> Validation {
    let mut validation = Validation::new(jwt_algorithm(algorithm));
    let leeway = config.leeway.get();
    validation.leeway = leeway.as_secs() + u64::from(leeway.subsec_nanos() > 0);
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.validate_aud = !config.audiences.is_empty();
    if validation.validate_aud {
        validation.set_audience(&config.audiences);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The refusal of a token `jsonwebtoken` did not accept, with the token's own
/// `exp`/`nbf`/`aud`/`iss` in the message where that is what failed (they are only
/// read once the signature matched).
fn token_error(kind: &ErrorKind, token: &str) -> TokenError {
    let claim = |name: &str| claims(token).and_then(|mut claims| claims.remove(name));
    let time = |name: &str| claim(name).and_then(|value| value.as_i64()).map(rfc3339);
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired(time("exp").unwrap_or_default()),
        ErrorKind::ImmatureSignature => TokenError::NotYetValid(time("nbf").unwrap_or_default()),
        ErrorKind::InvalidAudience => TokenError::WrongAudience(
            claim("aud")
                .map(|aud| clip(&aud.to_string()))
                .unwrap_or_default(),
        ),
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer(
            claim("iss")
                .map(|iss| clip(&iss.to_string()))
                .unwrap_or_default(),
        ),
        ErrorKind::MissingRequiredClaim(name) => TokenError::MissingClaim(name.clone()),
        ErrorKind::InvalidClaimFormat(name) => {
            TokenError::Malformed(format!("claim {name:?} has the wrong type"))
        }
        ErrorKind::InvalidAlgorithm => {
            TokenError::Malformed("the algorithm does not match the key".to_owned())
        }
        ErrorKind::Base64(_) => TokenError::Malformed("a part is not base64url".to_owned()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed("the claims are not a JSON object".to_owned())
        }
        ErrorKind::InvalidToken => TokenError::Malformed("not a JWT".to_owned()),
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

/// The token's claims, decoded without verification, for messages only.
fn claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// At most 64 characters of a value the client sent, for a message.
fn clip(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A Unix time as RFC 3339 UTC (`2026-12-03T11:01:45Z`).
pub(super) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let time = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape_is_three_base64url_parts() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."), "alg none has no signature");
        for not in [
            "sk-live-key",
            "a.b",
            "a.b.c.d",
            ".b.c",
            "a..c",
            "a.b.c!",
            "a b.c.d",
        ] {
            assert!(!looks_like_jwt(not), "{not}");
        }
    }

    #[test]
    fn client_values_are_clipped_in_messages() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 65);
    }
}
