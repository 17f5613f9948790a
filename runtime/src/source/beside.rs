//! Files published beside a model (its tokenizer): a local or OCI model already has them
//! in its folder; an HTTP model's are downloaded from beside its URL into its cache
//! folder, so that every source keeps a model's files in one folder.

use std::path::{Path, PathBuf};

use modelplane_config::Source;
use sha2::{Digest, Sha256};

use super::{Artifact, Fetcher, SourceError, download, io_error};

impl Fetcher {
    /// Makes sure the file at `relative` (a `/`-separated path checked by the config) from
    /// the model's folder is in the folder of `artifact`, and returns its local path. For an
    /// `http` source it is downloaded from beside the model URL, checked against `sha256`
    /// when given; a cached copy is kept, unless it does not match `sha256`. Other sources
    /// are left as they are: a missing file is the reader's to report.
    pub async fn fetch_beside(
        &self,
        source: &Source,
        artifact: &Artifact,
        relative: &str,
        sha256: Option<&str>,
    ) -> Result<PathBuf, SourceError> {
        let dir = artifact.path.parent().unwrap_or(Path::new("."));
        let path = dir.join(relative);
        let Source::Http(http) = source else {
            return Ok(path);
        };
        if path == artifact.path {
            return Err(SourceError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "is where the model file is cached; name another file",
                ),
            });
        }
        if cached(&path, sha256).await? {
            return Ok(path);
        }
        let url = http.url_beside(relative);
        let folder = path.parent().unwrap_or(dir);
        download(self.client.get(&url), &url, folder, &path, sha256).await?;
        Ok(path)
    }
}

/// Whether `path` is there and, when `sha256` is given, has that digest.
async fn cached(path: &Path, sha256: Option<&str>) -> Result<bool, SourceError> {
    if !tokio::fs::try_exists(path).await.map_err(io_error(path))? {
        return Ok(false);
    }
    let Some(expected) = sha256 else {
        return Ok(true);
    };
    let bytes = tokio::fs::read(path).await.map_err(io_error(path))?;
    Ok(hex::encode(Sha256::digest(&bytes)) == expected)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use modelplane_config::HttpSource;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// The paths a test server was asked for.
    type Paths = Arc<Mutex<Vec<String>>>;

    /// Serves `files` by URL path on 127.0.0.1 (404 for any other path); returns the base URL.
    async fn serve(files: HashMap<&'static str, Vec<u8>>) -> (String, Paths) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let paths = Paths::default();
        let seen = paths.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let read = socket.read(&mut request).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..read]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                seen.lock().expect("lock").push(path.clone());
                let (status, body) = match files.get(path.as_str()) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            }
        });
        (format!("http://{addr}"), paths)
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// An HTTP model at `{base}/minilm/1/model.pt`, fetched into `cache`.
    async fn fetched_model(base: &str, cache: &Path) -> (Source, Artifact) {
        let source = Source::Http(HttpSource {
            url: format!("{base}/minilm/1/model.pt"),
            sha256: sha256_hex(b"model"),
        });
        let artifact = Fetcher::default()
            .fetch(&source, cache)
            .await
            .expect("model downloads");
        (source, artifact)
    }

    fn files() -> HashMap<&'static str, Vec<u8>> {
        HashMap::from([
            ("/minilm/1/model.pt", b"model".to_vec()),
            ("/minilm/1/vocab/tok.json", b"{\"tokenizer\": 1}".to_vec()),
        ])
    }

    #[tokio::test]
    async fn a_file_beside_an_http_model_is_downloaded_into_its_cache_folder_once() {
        let (base, paths) = serve(files()).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let (source, artifact) = fetched_model(&base, cache.path()).await;
        let sha = sha256_hex(b"{\"tokenizer\": 1}");
        let fetcher = Fetcher::default();
        let path = fetcher
            .fetch_beside(&source, &artifact, "vocab/tok.json", Some(&sha))
            .await
            .expect("downloads");
        assert_eq!(path, artifact.path.parent().unwrap().join("vocab/tok.json"));
        assert_eq!(std::fs::read(&path).expect("cached"), b"{\"tokenizer\": 1}");
        fetcher
            .fetch_beside(&source, &artifact, "vocab/tok.json", Some(&sha))
            .await
            .expect("from cache");
        assert_eq!(
            *paths.lock().expect("lock"),
            ["/minilm/1/model.pt", "/minilm/1/vocab/tok.json"],
            "the second fetch hits the cache"
        );
    }

    #[tokio::test]
    async fn a_file_that_fails_its_sha256_names_the_url_and_is_not_kept() {
        let (base, _) = serve(files()).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let (source, artifact) = fetched_model(&base, cache.path()).await;
        let pinned = sha256_hex(b"another tokenizer");
        let err = Fetcher::default()
            .fetch_beside(&source, &artifact, "vocab/tok.json", Some(&pinned))
            .await
            .expect_err("digest mismatch");
        let message = err.to_string();
        assert!(
            message.contains("/minilm/1/vocab/tok.json") && message.contains(&pinned),
            "{message}"
        );
        assert!(
            !artifact
                .path
                .parent()
                .unwrap()
                .join("vocab/tok.json")
                .exists()
        );
    }

    #[tokio::test]
    async fn a_cached_copy_that_no_longer_matches_its_pin_is_downloaded_again() {
        let (base, paths) = serve(files()).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let (source, artifact) = fetched_model(&base, cache.path()).await;
        let fetcher = Fetcher::default();
        let path = artifact.path.parent().unwrap().join("vocab/tok.json");
        std::fs::create_dir_all(path.parent().unwrap()).expect("dir");
        std::fs::write(&path, b"stale").expect("write");
        fetcher
            .fetch_beside(&source, &artifact, "vocab/tok.json", None)
            .await
            .expect("an unpinned cached copy is kept");
        assert_eq!(std::fs::read(&path).expect("read"), b"stale");
        let sha = sha256_hex(b"{\"tokenizer\": 1}");
        fetcher
            .fetch_beside(&source, &artifact, "vocab/tok.json", Some(&sha))
            .await
            .expect("downloads again");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"tokenizer\": 1}");
        assert_eq!(paths.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn a_missing_file_is_an_http_error_and_local_sources_fetch_nothing() {
        let (base, _) = serve(files()).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let (source, artifact) = fetched_model(&base, cache.path()).await;
        let fetcher = Fetcher::default();
        let err = fetcher
            .fetch_beside(&source, &artifact, "tokenizer.json", None)
            .await
            .expect_err("404");
        assert!(
            err.to_string().contains("/minilm/1/tokenizer.json") && err.to_string().contains("404"),
            "{err}"
        );
        let err = fetcher
            .fetch_beside(&source, &artifact, "model.pt", None)
            .await
            .expect_err("would overwrite the model");
        assert!(err.to_string().contains("model file"), "{err}");
        let local = Source::Path("/models/minilm/1/model.pt".into());
        let local_artifact = Artifact {
            path: "/models/minilm/1/model.pt".into(),
            digest: None,
        };
        assert_eq!(
            fetcher
                .fetch_beside(&local, &local_artifact, "vocab/tok.json", None)
                .await
                .expect("nothing to fetch"),
            PathBuf::from("/models/minilm/1/vocab/tok.json")
        );
    }
}
