//! Where model files come from: a local path, an HTTP(S) URL checked against its
//! sha256, or an OCI artifact pulled by digest. Remote files are cached on disk under
//! their digest, written atomically after the digest is checked.

mod beside;
mod oci;

use std::path::{Path, PathBuf};

use modelplane_config::Source;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

pub use oci::{OciReference, parse_reference};

/// A model file ready to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The model file on local disk.
    pub path: PathBuf,
    /// `sha256:<hex>` of what was pulled, for remote sources.
    pub digest: Option<String>,
}

/// Why a model file could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP request failed.
    #[error("GET {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The content does not have the digest it was asked for.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was downloaded.
        what: String,
        /// The pinned digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The OCI reference or manifest is unusable.
    #[error("OCI artifact {reference}: {reason}")]
    Oci {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the runtime calls itself in the `User-Agent` of the requests it makes.
pub const USER_AGENT: &str = concat!("modelplane-runtime/", env!("CARGO_PKG_VERSION"));

/// Fetches model files, sharing one HTTP client.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

impl Default for Fetcher {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .build()
            // Only an invalid TLS backend or header could fail here; neither is configurable.
            .unwrap_or_default();
        Self { client }
    }
}

impl Fetcher {
    /// Makes a local file of a source, downloading into `cache_dir` when remote.
    pub async fn fetch(&self, source: &Source, cache_dir: &Path) -> Result<Artifact, SourceError> {
        match source {
            Source::Path(path) => Ok(Artifact {
                path: PathBuf::from(path),
                digest: None,
            }),
            Source::Http(http) => {
                let dir = cache_dir.join("http").join(&http.sha256);
                let path = dir.join("model.pt");
                if !tokio::fs::try_exists(&path)
                    .await
                    .map_err(io_error(&path))?
                {
                    let request = self.client.get(&http.url);
                    download(request, &http.url, &dir, &path, Some(&http.sha256)).await?;
                }
                Ok(Artifact {
                    path,
                    digest: Some(format!("sha256:{}", http.sha256)),
                })
            }
            Source::Oci(source) => oci::pull(&self.client, source, cache_dir).await,
        }
    }
}

/// Streams a response body to `path` (via a temporary file in `dir`), checking that its
/// sha256 is `expected_hex` when given; the file appears only when it matches.
async fn download(
    request: reqwest::RequestBuilder,
    url: &str,
    dir: &Path,
    path: &Path,
    expected_hex: Option<&str>,
) -> Result<(), SourceError> {
    let http_error = |reason: String| SourceError::Http {
        url: url.to_owned(),
        reason,
    };
    let mut response = request
        .send()
        .await
        .map_err(|e| http_error(e.to_string()))?;
    if !response.status().is_success() {
        return Err(http_error(format!("status {}", response.status())));
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_error(dir))?;
    let partial = dir.join(format!(".partial-{}", std::process::id()));
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(io_error(&partial))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| http_error(e.to_string()))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_error(&partial))?;
    }
    file.flush().await.map_err(io_error(&partial))?;
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if let Some(expected_hex) = expected_hex
        && actual != expected_hex
    {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(SourceError::DigestMismatch {
            what: url.to_owned(),
            expected: format!("sha256:{expected_hex}"),
            actual: format!("sha256:{actual}"),
        });
    }
    tokio::fs::rename(&partial, path)
        .await
        .map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelplane_config::HttpSource;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// The heads of the requests a test server received.
    type Requests = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

    /// Serves `body` to every connection on 127.0.0.1 and records the requests.
    async fn serve(body: &'static [u8]) -> (String, Requests) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Requests::default();
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let read = socket.read(&mut request).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..read]).into_owned();
                seen.lock().expect("lock").push(head);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body).await;
            }
        });
        (format!("http://{addr}/model.pt"), requests)
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn http_source_is_downloaded_checked_and_cached() {
        let (url, requests) = serve(b"model bytes").await;
        let cache = tempfile::tempdir().expect("tempdir");
        let source = Source::Http(HttpSource {
            url,
            sha256: sha256_hex(b"model bytes"),
        });
        let fetcher = Fetcher::default();
        let artifact = fetcher
            .fetch(&source, cache.path())
            .await
            .expect("downloads");
        assert_eq!(
            std::fs::read(&artifact.path).expect("cached"),
            b"model bytes"
        );
        assert_eq!(
            artifact.digest,
            Some(format!("sha256:{}", sha256_hex(b"model bytes")))
        );
        fetcher
            .fetch(&source, cache.path())
            .await
            .expect("from cache");
        assert_eq!(
            requests.lock().expect("lock").len(),
            1,
            "second fetch hits the cache"
        );
    }

    #[tokio::test]
    async fn http_downloads_name_the_runtime_in_their_user_agent() {
        let (url, requests) = serve(b"model bytes").await;
        let cache = tempfile::tempdir().expect("tempdir");
        let source = Source::Http(HttpSource {
            url,
            sha256: sha256_hex(b"model bytes"),
        });
        Fetcher::default()
            .fetch(&source, cache.path())
            .await
            .expect("downloads");
        let head = requests.lock().expect("lock")[0].to_ascii_lowercase();
        assert!(
            head.contains(&format!("user-agent: {USER_AGENT}\r\n")),
            "{head}"
        );
    }

    #[tokio::test]
    async fn http_digest_mismatch_names_both_digests_and_caches_nothing() {
        let (url, _) = serve(b"tampered").await;
        let cache = tempfile::tempdir().expect("tempdir");
        let expected = sha256_hex(b"original");
        let source = Source::Http(HttpSource {
            url,
            sha256: expected.clone(),
        });
        let err = Fetcher::default()
            .fetch(&source, cache.path())
            .await
            .expect_err("mismatch");
        let message = err.to_string();
        assert!(
            message.contains(&expected) && message.contains(&sha256_hex(b"tampered")),
            "{message}"
        );
        let cached = cache.path().join("http").join(&expected).join("model.pt");
        assert!(!cached.exists());
    }
}
