//! OCI artifacts over the distribution API: manifest by digest, then every layer blob,
//! each checked against its digest and cached under the manifest digest.

use std::path::{Path, PathBuf};

use modelplane_config::OciSource;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Artifact, SourceError, download, io_error};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const TITLE: &str = "org.opencontainers.image.title";
const COMPLETE: &str = ".complete";

/// A parsed `registry/repository[:tag]@sha256:<hex>` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciReference {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Hex of the manifest's sha256.
    pub digest_hex: String,
}

/// Parses a digest-pinned reference; a missing registry means Docker Hub.
pub fn parse_reference(reference: &str) -> Option<OciReference> {
    let (name, digest_hex) = reference.rsplit_once("@sha256:")?;
    if digest_hex.len() != 64 || !digest_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let name = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    };
    let (registry, repository) = match name.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            (host.to_owned(), rest.to_owned())
        }
        Some(_) => ("registry-1.docker.io".to_owned(), name.to_owned()),
        None => ("registry-1.docker.io".to_owned(), format!("library/{name}")),
    };
    (!repository.is_empty()).then(|| OciReference {
        registry,
        repository,
        digest_hex: digest_hex.to_ascii_lowercase(),
    })
}

#[derive(Deserialize)]
struct Manifest {
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

/// Pulls the artifact into `cache_dir/oci/<manifest hex>/` and returns its model file:
/// the layer titled `*.pt`/`*.pt2`, else the first layer. A complete pull leaves the
/// verified manifest in `.complete`, so a cached artifact needs no registry.
pub async fn pull(
    client: &reqwest::Client,
    source: &OciSource,
    cache_dir: &Path,
) -> Result<Artifact, SourceError> {
    let oci_error = |reason: String| SourceError::Oci {
        reference: source.reference.clone(),
        reason,
    };
    let reference = parse_reference(&source.reference).ok_or_else(|| {
        oci_error("not a digest-pinned reference (registry/repo@sha256:<64 hex>)".into())
    })?;
    let dir = cache_dir.join("oci").join(&reference.digest_hex);
    let complete = dir.join(COMPLETE);
    let cached = tokio::fs::read(&complete).await.ok();
    let scheme = if source.plain_http { "http" } else { "https" };
    let base = format!(
        "{scheme}://{}/v2/{}",
        reference.registry, reference.repository
    );
    let mut registry = Registry {
        client,
        token: None,
    };
    let body = match &cached {
        Some(body) => body.clone(),
        None => fetch_manifest(&mut registry, &base, &reference, &source.reference).await?,
    };
    let manifest: Manifest =
        serde_json::from_slice(&body).map_err(|e| oci_error(format!("manifest: {e}")))?;
    let files = layer_files(&manifest).map_err(oci_error)?;
    let model = model_file(&files).ok_or_else(|| oci_error("the artifact has no layers".into()))?;
    if cached.is_none() {
        for (layer_hex, file) in &files {
            let request = registry.authorized(&format!("{base}/blobs/sha256:{layer_hex}"), "*/*");
            let what = format!("{} layer {}", source.reference, file.display());
            download(request, &what, &dir, &dir.join(file), Some(layer_hex)).await?;
        }
        tokio::fs::write(&complete, &body)
            .await
            .map_err(io_error(&complete))?;
    }
    let digest = Some(format!("sha256:{}", reference.digest_hex));
    Ok(Artifact {
        path: dir.join(model),
        digest,
    })
}

/// Fetches the manifest by digest and checks that it has that digest.
async fn fetch_manifest(
    registry: &mut Registry<'_>,
    base: &str,
    reference: &OciReference,
    name: &str,
) -> Result<Vec<u8>, SourceError> {
    let url = format!("{base}/manifests/sha256:{}", reference.digest_hex);
    let response = registry.get(&url, MANIFEST_TYPES).await?;
    let body = response.bytes().await.map_err(|e| SourceError::Http {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let actual = hex::encode(Sha256::digest(&body));
    if actual != reference.digest_hex {
        return Err(SourceError::DigestMismatch {
            what: format!("manifest of {name}"),
            expected: format!("sha256:{}", reference.digest_hex),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(body.to_vec())
}

/// Each layer's digest hex and the file name it is stored under (its title when that
/// is a plain file name, else `layer-<n>`).
fn layer_files(manifest: &Manifest) -> Result<Vec<(String, PathBuf)>, String> {
    manifest
        .layers
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let hex = layer
                .digest
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    format!("layer {index} has unsupported digest {:?}", layer.digest)
                })?;
            let title = layer.annotations.get(TITLE).map(String::as_str);
            let plain = title.filter(|t| !t.is_empty() && !t.contains('/') && !t.starts_with('.'));
            let file = plain.map_or_else(|| PathBuf::from(format!("layer-{index}")), PathBuf::from);
            Ok((hex.to_owned(), file))
        })
        .collect()
}

fn model_file(files: &[(String, PathBuf)]) -> Option<&Path> {
    let is_model = |p: &&PathBuf| p.extension().is_some_and(|e| e == "pt" || e == "pt2");
    files
        .iter()
        .map(|(_, p)| p)
        .find(is_model)
        .or_else(|| files.first().map(|(_, p)| p))
        .map(PathBuf::as_path)
}

/// A registry session that fetches an anonymous bearer token when challenged.
struct Registry<'a> {
    client: &'a reqwest::Client,
    token: Option<String>,
}

impl Registry<'_> {
    fn authorized(&self, url: &str, accept: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(url).header(ACCEPT, accept);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    async fn get(&mut self, url: &str, accept: &str) -> Result<reqwest::Response, SourceError> {
        let http_error = |reason: String| SourceError::Http {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .authorized(url, accept)
            .send()
            .await
            .map_err(|e| http_error(e.to_string()))?;
        let response = if response.status() == StatusCode::UNAUTHORIZED && self.token.is_none() {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            self.token = Some(self.anonymous_token(challenge).await.map_err(http_error)?);
            self.authorized(url, accept)
                .send()
                .await
                .map_err(|e| http_error(e.to_string()))?
        } else {
            response
        };
        if !response.status().is_success() {
            return Err(http_error(format!("status {}", response.status())));
        }
        Ok(response)
    }

    async fn anonymous_token(&self, challenge: &str) -> Result<String, String> {
        let params = parse_challenge(challenge)
            .ok_or_else(|| format!("unsupported auth challenge {challenge:?}"))?;
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or("challenge without realm")?;
        let query: Vec<(String, String)> =
            params.into_iter().filter(|(k, _)| k != "realm").collect();
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let response = self
            .client
            .get(&realm)
            .query(&query)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let token: Token = response.json().await.map_err(|e| e.to_string())?;
        token
            .token
            .or(token.access_token)
            .ok_or_else(|| "token response without a token".to_owned())
    }
}

/// Parses `Bearer realm="...",service="...",scope="..."` into its parameters.
fn parse_challenge(challenge: &str) -> Option<Vec<(String, String)>> {
    let rest = challenge.strip_prefix("Bearer ")?;
    rest.split(',')
        .map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            Some((key.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_name_registry_repository_and_digest() {
        let parsed =
            parse_reference(&format!("127.0.0.1:5000/models/mlp:v1@sha256:{HEX}")).expect("parses");
        assert_eq!(parsed.registry, "127.0.0.1:5000");
        assert_eq!(parsed.repository, "models/mlp");
        assert_eq!(parsed.digest_hex, HEX);
        let hub = parse_reference(&format!("mlp@sha256:{HEX}")).expect("parses");
        assert_eq!(
            (hub.registry.as_str(), hub.repository.as_str()),
            ("registry-1.docker.io", "library/mlp")
        );
    }

    #[test]
    fn unpinned_references_are_refused() {
        assert_eq!(parse_reference("ghcr.io/x/mlp:v1"), None);
        assert_eq!(parse_reference("ghcr.io/x/mlp@sha256:abc"), None);
    }

    #[test]
    fn the_model_layer_is_found_by_title() {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({"layers": [
            {"digest": format!("sha256:{HEX}"), "annotations": {TITLE: "signature.json"}},
            {"digest": format!("sha256:{HEX}"), "annotations": {TITLE: "model.pt"}},
            {"digest": format!("sha256:{HEX}"), "annotations": {TITLE: "../evil"}},
        ]}))
        .expect("manifest");
        let files = layer_files(&manifest).expect("valid layers");
        assert_eq!(files[2].1, PathBuf::from("layer-2"));
        assert_eq!(model_file(&files), Some(Path::new("model.pt")));
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        let params = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:m:pull""#)
            .expect("parses");
        assert_eq!(
            params[0],
            ("realm".to_owned(), "https://auth.example/token".to_owned())
        );
        assert_eq!(params.len(), 3);
        assert_eq!(parse_challenge("Basic realm=x"), None);
    }
}
