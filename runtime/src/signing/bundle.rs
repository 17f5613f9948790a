//! Getting a model-signing bundle: from a local file (a relative path is resolved against
//! the model's folder) or over HTTP(S), optionally pinned by sha256. Bundles are small
//! JSON documents, read whole into memory with a size cap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use modelplane_config::{BundleHttp, BundleSource};
use modelplane_verify::{Failure, FailureReason};
use sha2::{Digest, Sha256};

/// Largest bundle accepted (a files manifest of a large model is well below this).
pub const MAX_BUNDLE_BYTES: usize = 16 << 20;

/// How long fetching a bundle over HTTP may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A bundle's bytes, and where it lies when it is a local file.
#[derive(Debug)]
pub struct Fetched {
    /// The bundle document.
    pub bytes: Vec<u8>,
    /// The local file it was read from (to leave it out of the model's files).
    pub local_path: Option<PathBuf>,
}

/// Reads or downloads the bundle at `location`.
pub async fn fetch(location: &BundleSource, model_dir: &Path) -> Result<Fetched, Failure> {
    match location {
        BundleSource::Path(path) => {
            let path = model_dir.join(path);
            let bytes = read_file(&path).await?;
            Ok(Fetched {
                bytes,
                local_path: Some(path),
            })
        }
        BundleSource::Http(http) => Ok(Fetched {
            bytes: download(http).await?,
            local_path: None,
        }),
    }
}

async fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    match tokio::fs::read(path).await {
        Ok(bytes) if bytes.len() > MAX_BUNDLE_BYTES => Err(too_large(&path.display())),
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
            FailureReason::NoSignature,
            format!("no model-signing bundle at {}", path.display()),
        )),
        Err(error) => Err(Failure::new(
            FailureReason::RegistryUnreachable,
            format!("cannot read the bundle {}: {error}", path.display()),
        )),
    }
}

async fn download(http: &BundleHttp) -> Result<Vec<u8>, Failure> {
    let unreachable = |detail: String| {
        Failure::new(
            FailureReason::RegistryUnreachable,
            format!("GET {}: {detail}", http.url),
        )
    };
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .user_agent(crate::source::USER_AGENT)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut response = client
        .get(&http.url)
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(Failure::new(
            FailureReason::NoSignature,
            format!("no model-signing bundle at {} (404)", http.url),
        ));
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(unreachable(format!("status {status}")));
    }
    if !status.is_success() {
        return Err(Failure::new(
            FailureReason::RegistryError,
            format!("GET {}: status {status}", http.url),
        ));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unreachable(e.to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_BUNDLE_BYTES {
            return Err(too_large(&http.url));
        }
        bytes.extend_from_slice(&chunk);
    }
    check_pinned(http, &bytes)?;
    Ok(bytes)
}

/// A bundle pinned by sha256 must hash to it.
fn check_pinned(http: &BundleHttp, bytes: &[u8]) -> Result<(), Failure> {
    let Some(expected) = &http.sha256 else {
        return Ok(());
    };
    let actual = hex::encode(Sha256::digest(bytes));
    if &actual == expected {
        return Ok(());
    }
    Err(Failure::new(
        FailureReason::TamperedLayer,
        format!(
            "bundle {} hashes to sha256:{actual}, pinned as sha256:{expected}",
            http.url
        ),
    ))
}

fn too_large(what: &dyn std::fmt::Display) -> Failure {
    Failure::new(
        FailureReason::InvalidSignature,
        format!("bundle {what} is larger than {MAX_BUNDLE_BYTES} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_local_bundle_means_no_signature() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = BundleSource::Path("model.sig".into());
        let failure = fetch(&location, dir.path()).await.expect_err("missing");
        assert_eq!(failure.reason, FailureReason::NoSignature);
        assert!(failure.message.contains("model.sig"), "{failure}");
    }

    #[tokio::test]
    async fn a_relative_path_is_read_from_the_model_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("model.sig"), b"{}").expect("write");
        let location = BundleSource::Path("model.sig".into());
        let fetched = fetch(&location, dir.path()).await.expect("read");
        assert_eq!(fetched.bytes, b"{}");
        assert_eq!(fetched.local_path, Some(dir.path().join("model.sig")));
    }

    #[test]
    fn a_pinned_bundle_must_hash_to_its_pin() {
        let pinned = |sha256: Option<String>| BundleHttp {
            url: "http://127.0.0.1/model.sig".into(),
            sha256,
        };
        let right = hex::encode(Sha256::digest(b"bundle"));
        assert!(check_pinned(&pinned(Some(right)), b"bundle").is_ok());
        assert!(check_pinned(&pinned(None), b"anything").is_ok());
        let failure = check_pinned(&pinned(Some("0".repeat(64))), b"bundle").expect_err("pin");
        assert_eq!(failure.reason, FailureReason::TamperedLayer);
    }
}
