//! Blob downloads: redirects without leaking credentials, retries, resumption with `Range`, streaming.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::StatusCode;
use reqwest::header;

use super::auth::Scope;
use super::{Call, RegistryClient, RegistryError, denied, describe, is_transient, status_error};
use crate::digest::{Digest, Verifier};
use crate::reference::Reference;

const MAX_REDIRECTS: usize = 10;

/// A blob's bytes as they arrive, from [`RegistryClient::fetch_blob`].
///
/// Yields `Ok(chunk)`s from `offset()` to the end. A connection that breaks is resumed with `Range` from where
/// it stopped (within the client's [`RetryPolicy`](super::RetryPolicy)); what cannot be resumed ends the stream
/// with an error. The stream does not verify the digest; feed the chunks to a [`Verifier`] (or use
/// [`BlobStream::verified`]).
pub struct BlobStream {
    registry: String,
    offset: u64,
    size: u64,
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
}

impl BlobStream {
    /// The offset of the first byte this stream yields.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The blob's full size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A stream that also verifies the digest (and size, when it starts at offset 0): the last item is an
    /// error if the content does not match. Starting at another offset, only the size is checked.
    pub fn verified(self, repository: &str, digest: &Digest) -> BlobStream {
        let BlobStream {
            offset,
            size,
            inner,
            registry,
        } = self;
        let names = (registry.clone(), repository.to_string());
        let digest = digest.clone();
        let check_digest = offset == 0;
        let verifier = Verifier::with_size(&digest, size);
        let stream = futures_util::stream::unfold(
            (inner, Some(verifier), names, digest, offset),
            move |(mut inner, verifier, names, digest, mut pos)| async move {
                let mut verifier = verifier?;
                match inner.next().await {
                    Some(Ok(chunk)) => {
                        verifier.update(&chunk);
                        pos += chunk.len() as u64;
                        Some((Ok(chunk), (inner, Some(verifier), names, digest, pos)))
                    }
                    Some(Err(e)) => Some((Err(e), (inner, None, names, digest, pos))),
                    None if !check_digest && pos == size => None,
                    None if !check_digest => Some((
                        Err(RegistryError::Interrupted {
                            registry: names.0.clone(),
                            digest: digest.clone(),
                            offset: pos,
                            size,
                            reason: "the stream ended early".to_string(),
                        }),
                        (inner, None, names, digest, pos),
                    )),
                    None => match verifier.verify() {
                        Ok(()) => None,
                        Err(source) => Some((
                            Err(RegistryError::BlobDigest {
                                repository: names.1.clone(),
                                digest: digest.clone(),
                                source,
                            }),
                            (inner, None, names, digest, pos),
                        )),
                    },
                }
            },
        );
        BlobStream {
            registry,
            offset,
            size,
            inner: Box::pin(stream),
        }
    }

    /// The stream as an `AsyncRead`; errors become `std::io::Error`s wrapping the [`RegistryError`]
    /// (`err.get_ref().and_then(|e| e.downcast_ref::<RegistryError>())`).
    pub fn into_reader(self) -> impl tokio::io::AsyncRead + Send + Unpin {
        tokio_util::io::StreamReader::new(self.map(|r| r.map_err(std::io::Error::other)))
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Download {
    client: RegistryClient,
    reference: Reference,
    digest: Digest,
    size: u64,
    pos: u64,
    /// Bytes to drop from the start of the current body (a server that ignored `Range`).
    skip: u64,
    body: Option<Body>,
    /// Breaks since the last progress.
    breaks: u32,
    done: bool,
}

impl Download {
    fn interrupted(&self, reason: String) -> RegistryError {
        RegistryError::Interrupted {
            registry: self.reference.registry().to_string(),
            digest: self.digest.clone(),
            offset: self.pos,
            size: self.size,
            reason,
        }
    }

    /// The next chunk, resuming broken connections.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, RegistryError>> {
        let policy = self.client.inner.retry;
        let started = Instant::now();
        loop {
            if self.done {
                return None;
            }
            if self.body.is_none() {
                if self.pos >= self.size {
                    self.done = true;
                    return None;
                }
                match self
                    .client
                    .open_blob(&self.reference, &self.digest, self.pos)
                    .await
                {
                    Ok((resp, start)) => {
                        self.skip = self.pos - start;
                        self.body = Some(Box::pin(resp.bytes_stream()));
                    }
                    Err(e) if e.is_transient() && self.breaks < policy.resumes => {
                        self.breaks += 1;
                        tokio::time::sleep(policy.backoff(self.breaks)).await;
                        continue;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let Some(body) = self.body.as_mut() else { continue };
            let reason = match body.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64);
                        self.skip -= drop;
                        chunk = chunk.slice(drop as usize..);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    self.pos += chunk.len() as u64;
                    self.breaks = 0;
                    if self.pos > self.size {
                        self.done = true;
                        return Some(Err(RegistryError::BlobTooLong {
                            repository: self.reference.repository().to_string(),
                            digest: self.digest.clone(),
                            size: self.size,
                        }));
                    }
                    return Some(Ok(chunk));
                }
                Some(Err(e)) if is_transient(&e) => describe(&e),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(self.interrupted(describe(&e))));
                }
                None if self.pos >= self.size => {
                    self.done = true;
                    return None;
                }
                None => "the connection closed early".to_string(),
            };
            // The connection broke: resume from `pos` with a new request.
            self.body = None;
            self.breaks += 1;
            if self.breaks > policy.resumes || started.elapsed() > policy.max_elapsed {
                self.done = true;
                return Some(Err(self.interrupted(reason)));
            }
            tokio::time::sleep(policy.backoff(self.breaks)).await;
        }
    }
}

impl RegistryClient {
    /// Streams the blob `digest` of `r`'s repository from byte `offset` (to resume a download the caller kept
    /// part of). `size` is the descriptor's size; the stream ends there, and a longer blob is an error.
    /// The first request is made before this returns, so an unknown blob or a registry that is down is reported
    /// here.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        offset: u64,
    ) -> Result<BlobStream, RegistryError> {
        let mut d = Download {
            client: self.clone(),
            reference: r.clone(),
            digest: digest.clone(),
            size,
            pos: offset.min(size),
            skip: 0,
            body: None,
            breaks: 0,
            done: false,
        };
        if d.pos < size {
            let (resp, start) = self.open_blob(r, digest, d.pos).await?;
            d.skip = d.pos - start;
            d.body = Some(Box::pin(resp.bytes_stream()));
        }
        let stream = futures_util::stream::unfold(d, |mut d| async move {
            let item = d.next_chunk().await?;
            Some((item, d))
        });
        Ok(BlobStream {
            registry: r.registry().to_string(),
            offset: offset.min(size),
            size,
            inner: Box::pin(stream),
        })
    }

    /// Fetches a small blob (a config) whole and verifies digest and size.
    pub async fn fetch_blob_verified(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<Bytes, RegistryError> {
        let mut stream = self
            .fetch_blob(r, digest, size, 0)
            .await?
            .verified(r.repository(), digest);
        let mut buf = bytes::BytesMut::with_capacity(usize::try_from(size).unwrap_or(0).min(64 << 20));
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }

    /// Whether the registry has the blob in `r`'s repository (`HEAD`).
    pub async fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        self.head_blob(r, digest, &Scope::pull(r.repository())).await
    }

    /// `HEAD` of a blob with the token `scope`: pull for a plain check, push before an upload so that the token
    /// fetched serves the upload that follows.
    pub(crate) async fn head_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<bool, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", r.repository());
        let resp = self
            .send(
                Call {
                    registry: r.registry(),
                    scope,
                    retry: true,
                },
                &|c, base| c.head(format!("{base}{path}")),
            )
            .await?;
        match resp.status() {
            // A HEAD that redirects (to a CDN) means the blob is there.
            s if s.is_success() || s.is_redirection() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::FORBIDDEN => Err(denied(r)),
            status => Err(status_error(r.registry(), &format!("HEAD {path}"), resp, status).await),
        }
    }

    /// `GET` the blob from `offset`, following redirects. Returns the answer and the offset its body starts at.
    async fn open_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<(reqwest::Response, u64), RegistryError> {
        let registry = r.registry();
        let scope = Scope::pull(r.repository());
        let path = format!("/v2/{}/blobs/{digest}", r.repository());
        let range = (offset > 0).then(|| format!("bytes={offset}-"));
        let mut resp = self
            .send(
                Call {
                    registry,
                    scope: &scope,
                    retry: true,
                },
                &|c, base| {
                    let req = c.get(format!("{base}{path}"));
                    match &range {
                        Some(r) => req.header(header::RANGE, r),
                        None => req,
                    }
                },
            )
            .await?;
        let origin = resp.url().origin();
        let mut hops = 0;
        while resp.status().is_redirection() {
            hops += 1;
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| RegistryError::Protocol {
                    registry: registry.to_string(),
                    what: format!("a redirect for {digest} without a Location"),
                })?;
            let url = resp.url().join(location).map_err(|e| RegistryError::Protocol {
                registry: registry.to_string(),
                what: format!("the redirect for {digest} to {location:?} is not a URL: {e}"),
            })?;
            if hops > MAX_REDIRECTS {
                return Err(RegistryError::Protocol {
                    registry: registry.to_string(),
                    what: format!("more than {MAX_REDIRECTS} redirects for {digest}"),
                });
            }
            // Credentials go only to the registry itself: another host (a CDN, a storage bucket) gets the
            // signed URL alone. The registry is spoken to with the scheme the endpoint chose; other hosts with
            // verified TLS.
            let same_origin = url.origin() == origin;
            let (scheme, authorization) = if same_origin {
                let ep = self.endpoint(registry).await?;
                let a = self.authorization(registry, &ep, &scope).await?;
                (ep.scheme, a)
            } else {
                (super::Scheme::Https, None)
            };
            let mut req = self
                .http(scheme)?
                .get(url)
                .header(header::USER_AGENT, &self.inner.user_agent);
            if let Some(range) = &range {
                req = req.header(header::RANGE, range);
            }
            if let Some(a) = authorization {
                req = req.header(header::AUTHORIZATION, a);
            }
            resp = req.send().await.map_err(|e| super::unreachable(registry, &e))?;
        }
        match resp.status() {
            StatusCode::OK => Ok((resp, 0)),
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range_start)
                    .unwrap_or(offset);
                if start > offset {
                    return Err(RegistryError::Protocol {
                        registry: registry.to_string(),
                        what: format!("asked for {digest} from byte {offset}, it answered from byte {start}"),
                    });
                }
                Ok((resp, start))
            }
            StatusCode::NOT_FOUND => Err(RegistryError::BlobUnknown {
                repository: r.repository().to_string(),
                digest: digest.clone(),
            }),
            StatusCode::FORBIDDEN => Err(denied(r)),
            status => Err(status_error(registry, &format!("GET {path}"), resp, status).await),
        }
    }
}

/// `bytes 100-199/200` → 100.
fn parse_content_range_start(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = v.split_once('-')?;
    start.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
    }
}
