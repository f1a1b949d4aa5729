//! Push: blob uploads (monolithic and chunked), cross-repository mounts, manifests.

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::StatusCode;
use reqwest::header;

use super::auth::Scope;
use super::{Call, RegistryClient, RegistryError, denied, header_str, status_error};
use crate::digest::Digest;
use crate::reference::Reference;

impl RegistryClient {
    /// Uploads a blob unless the repository has it: `POST` an upload session, then one `PUT ?digest=` with the
    /// streamed body (`size` bytes). The registry verifies the digest; a mismatch is an error.
    pub async fn push_blob<S>(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        if self.blob_exists_for_push(r, digest).await? {
            return Ok(());
        }
        let location = self.start_upload(r, None).await?;
        let url = with_digest(&location, digest);
        let body = std::sync::Mutex::new(Some(reqwest::Body::wrap_stream(body)));
        let scope = Scope::push(r.repository());
        let resp = self
            .send(
                Call {
                    registry: r.registry(),
                    scope: &scope,
                    retry: false,
                },
                &|c, _| {
                    let req = c
                        .put(url.clone())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_LENGTH, size);
                    match body.lock().ok().and_then(|mut b| b.take()) {
                        Some(b) => req.body(b),
                        None => req,
                    }
                },
            )
            .await?;
        self.finish_upload(r, digest, resp).await
    }

    /// Uploads a blob held in memory (retried on transient failures).
    pub async fn push_blob_bytes(
        &self,
        r: &Reference,
        digest: &Digest,
        data: Bytes,
    ) -> Result<(), RegistryError> {
        if self.blob_exists_for_push(r, digest).await? {
            return Ok(());
        }
        let location = self.start_upload(r, None).await?;
        let url = with_digest(&location, digest);
        let scope = Scope::push(r.repository());
        let resp = self
            .send(
                Call {
                    registry: r.registry(),
                    scope: &scope,
                    retry: true,
                },
                &|c, _| {
                    c.put(url.clone())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .body(data.clone())
                },
            )
            .await?;
        self.finish_upload(r, digest, resp).await
    }

    /// Uploads a blob in `PATCH` chunks of about `chunk_size` bytes (each with `Content-Range`), then closes
    /// the session with `PUT ?digest=`.
    pub async fn push_blob_chunked<S>(
        &self,
        r: &Reference,
        digest: &Digest,
        body: S,
        chunk_size: usize,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        if self.blob_exists_for_push(r, digest).await? {
            return Ok(());
        }
        let scope = Scope::push(r.repository());
        let mut location = self.start_upload(r, None).await?;
        let mut body = Box::pin(body);
        let mut sent: u64 = 0;
        let mut buf = bytes::BytesMut::new();
        let mut finished = false;
        while !finished {
            while buf.len() < chunk_size.max(1) {
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(source)) => {
                        return Err(RegistryError::UploadBody {
                            digest: digest.clone(),
                            source,
                        });
                    }
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
            let chunk = buf.split().freeze();
            let range = format!("{}-{}", sent, sent + chunk.len() as u64 - 1);
            let url = location.clone();
            let resp = self
                .send(
                    Call {
                        registry: r.registry(),
                        scope: &scope,
                        retry: true,
                    },
                    &|c, _| {
                        c.patch(url.clone())
                            .header(header::CONTENT_TYPE, "application/octet-stream")
                            .header(header::CONTENT_RANGE, range.clone())
                            .body(chunk.clone())
                    },
                )
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                let status = resp.status();
                return Err(
                    status_error(r.registry(), &format!("PATCH (upload of {digest})"), resp, status).await,
                );
            }
            location = self.location(r, &resp)?;
            sent += chunk.len() as u64;
        }
        let url = with_digest(&location, digest);
        let resp = self
            .send(
                Call {
                    registry: r.registry(),
                    scope: &scope,
                    retry: true,
                },
                &|c, _| c.put(url.clone()).header(header::CONTENT_LENGTH, 0),
            )
            .await?;
        self.finish_upload(r, digest, resp).await
    }

    /// Mounts `digest` from `from_repository` (same registry) into `r`'s repository without uploading it
    /// (`POST ?mount=&from=`). Returns `false` when the registry would not mount it (the blob must then be
    /// uploaded).
    pub async fn mount_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let scope = Scope::push(r.repository()).and_pull(from_repository);
        let path = format!("/v2/{}/blobs/uploads/", r.repository());
        let query: String = reqwest::Url::parse("http://x/")
            .map(|mut u| {
                u.query_pairs_mut()
                    .append_pair("mount", &digest.to_string())
                    .append_pair("from", from_repository);
                u.query().unwrap_or_default().to_string()
            })
            .unwrap_or_default();
        let resp = self
            .send(
                Call {
                    registry: r.registry(),
                    scope: &scope,
                    retry: true,
                },
                &|c, base| {
                    c.post(format!("{base}{path}?{query}"))
                        .header(header::CONTENT_LENGTH, 0)
                },
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // Not mounted; the registry opened an upload session instead. Close it.
                if let Ok(location) = self.location(r, &resp) {
                    let _ = self
                        .send(
                            Call {
                                registry: r.registry(),
                                scope: &scope,
                                retry: false,
                            },
                            &|c, _| c.delete(location.clone()),
                        )
                        .await;
                }
                Ok(false)
            }
            StatusCode::FORBIDDEN => Err(denied(r)),
            status => Err(status_error(
                r.registry(),
                &format!("POST {path} (mount of {digest})"),
                resp,
                status,
            )
            .await),
        }
    }

    /// Uploads a manifest under `r`'s tag (or digest); returns its digest, checked against the registry's
    /// `Docker-Content-Digest`.
    pub async fn push_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256(&bytes);
        if let Some(d) = r.digest()
            && *d != Digest::of(d.algorithm(), &bytes)
        {
            return Err(RegistryError::ManifestDigestMismatch {
                reference: r.familiar(),
                actual: Digest::of(d.algorithm(), &bytes),
                expected: d.clone(),
            });
        }
        let scope = Scope::push(r.repository());
        let path = format!(
            "/v2/{}/manifests/{}",
            r.repository(),
            r.tag().map_or_else(|| r.manifest_reference(), str::to_string)
        );
        let resp = self
            .send(
                Call {
                    registry: r.registry(),
                    scope: &scope,
                    retry: true,
                },
                &|c, base| {
                    c.put(format!("{base}{path}"))
                        .header(header::CONTENT_TYPE, media_type)
                        .body(bytes.clone())
                },
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK | StatusCode::ACCEPTED => {}
            StatusCode::FORBIDDEN => return Err(denied(r)),
            status => return Err(status_error(r.registry(), &format!("PUT {path}"), resp, status).await),
        }
        if let Some(announced) = header_str(resp.headers(), "docker-content-digest") {
            let announced = Digest::parse(&announced).map_err(|source| RegistryError::InvalidDigest {
                registry: r.registry().to_string(),
                source,
            })?;
            let ours = Digest::of(announced.algorithm(), &bytes);
            if announced != ours {
                return Err(RegistryError::ManifestDigestMismatch {
                    reference: r.familiar(),
                    actual: announced,
                    expected: ours,
                });
            }
        }
        Ok(digest)
    }

    /// `HEAD` with push scope, so that the token fetched serves the upload that follows.
    async fn blob_exists_for_push(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        self.head_blob(r, digest, &Scope::push(r.repository())).await
    }

    /// `POST /v2/<name>/blobs/uploads/` → the session URL.
    async fn start_upload(
        &self,
        r: &Reference,
        scope: Option<&Scope>,
    ) -> Result<reqwest::Url, RegistryError> {
        let default_scope = Scope::push(r.repository());
        let scope = scope.unwrap_or(&default_scope);
        let path = format!("/v2/{}/blobs/uploads/", r.repository());
        let resp = self
            .send(
                Call {
                    registry: r.registry(),
                    scope,
                    retry: true,
                },
                &|c, base| c.post(format!("{base}{path}")).header(header::CONTENT_LENGTH, 0),
            )
            .await?;
        match resp.status() {
            StatusCode::ACCEPTED => self.location(r, &resp),
            StatusCode::FORBIDDEN => Err(denied(r)),
            status => Err(status_error(r.registry(), &format!("POST {path}"), resp, status).await),
        }
    }

    fn location(&self, r: &Reference, resp: &reqwest::Response) -> Result<reqwest::Url, RegistryError> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: r.registry().to_string(),
                what: "an upload answer without a Location".to_string(),
            })?;
        resp.url().join(loc).map_err(|e| RegistryError::Protocol {
            registry: r.registry().to_string(),
            what: format!("the upload Location {loc:?} is not a URL: {e}"),
        })
    }

    async fn finish_upload(
        &self,
        r: &Reference,
        digest: &Digest,
        resp: reqwest::Response,
    ) -> Result<(), RegistryError> {
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::FORBIDDEN => Err(denied(r)),
            status => {
                Err(status_error(r.registry(), &format!("PUT (upload of {digest})"), resp, status).await)
            }
        }
    }
}

fn with_digest(location: &reqwest::Url, digest: &Digest) -> reqwest::Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", &digest.to_string());
    url
}
