//! Hijacked connections (attach, exec start): with `Upgrade: tcp` the daemon answers 101 and the connection
//! becomes a raw two-way stream, as dockerd does; without it, a streamed 200 response carries the output (no
//! stdin). Detach keys (default ctrl-p ctrl-q) are recognised on stdin here, as dockerd recognises them.

use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::ApiError;

/// A client stream: reads are its stdin, writes go to it.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

/// The client's side of a hijacked request.
pub type ClientConn = Pin<Box<dyn Conn>>;

/// The content type of the stream.
pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Answers `req` with a hijacked stream and runs `f` on it until it ends or the daemon shuts down.
pub fn hijack<F, Fut>(mut req: Request, tty: bool, shutdown: CancellationToken, f: F) -> Response
where
    F: FnOnce(ClientConn) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let wants_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    if wants_upgrade {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => {
                    tokio::select! {
                        () = f(Box::pin(TokioIo::new(up))) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(e) => tracing::debug!(error = %e, "the client did not complete the upgrade"),
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "tcp")
            .header(header::CONTENT_TYPE, content_type(tty))
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let run = f(Box::pin(theirs));
    tokio::spawn(async move {
        tokio::select! {
            () = run => {}
            () = shutdown.cancelled() => {}
        }
    });
    let (rd, _wr) = tokio::io::split(ours);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(tty))
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(rd)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Parses docker's `detachKeys` ("ctrl-p,ctrl-q", "a,ctrl-@"): the byte sequence.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, ApiError> {
    let s = if s.is_empty() { "ctrl-p,ctrl-q" } else { s };
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        let b = if let Some(c) = k.strip_prefix("ctrl-") {
            match c.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid escape keys ({s}) provided"
                    )));
                }
            }
        } else if k.len() == 1 {
            k.as_bytes()[0]
        } else {
            return Err(ApiError::bad_request(format!(
                "Invalid escape keys ({s}) provided"
            )));
        };
        out.push(b);
    }
    Ok(out)
}

/// Copies the client's stdin into `to` until EOF or the detach sequence; returns true on detach. On EOF the
/// write side of `to` is shut down (the container sees end of input).
pub async fn pump_stdin(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    keys: &[u8],
) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    let mut held: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if !held.is_empty() {
                    let _ = to.write_all(&held).await;
                }
                let _ = to.shutdown().await;
                return false;
            }
            Ok(n) => n,
        };
        let mut out = Vec::with_capacity(n);
        for &b in &buf[..n] {
            if !keys.is_empty() && b == keys[held.len()] {
                held.push(b);
                if held.len() == keys.len() {
                    if !out.is_empty() {
                        let _ = to.write_all(&out).await;
                    }
                    return true;
                }
            } else {
                out.append(&mut held);
                if !keys.is_empty() && b == keys[0] {
                    held.push(b);
                } else {
                    out.push(b);
                }
            }
        }
        if !out.is_empty() && to.write_all(&out).await.is_err() {
            return false;
        }
    }
}

/// Copies the monitor's frames to the client: payloads only with a tty, frames as they are otherwise.
pub async fn pump_frames(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, tty: bool) {
    let mut header = [0u8; 8];
    let mut buf = Vec::new();
    loop {
        if from.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        buf.resize(len, 0);
        if from.read_exact(&mut buf).await.is_err() {
            break;
        }
        let r = if tty {
            to.write_all(&buf).await
        } else {
            match to.write_all(&header).await {
                Ok(()) => to.write_all(&buf).await,
                Err(e) => Err(e),
            }
        };
        if r.is_err() || to.flush().await.is_err() {
            return;
        }
    }
    let _ = to.flush().await;
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("abc").is_err());
    }

    #[tokio::test]
    async fn stdin_stops_at_the_detach_sequence() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (sink, mut sink_rd) = tokio::io::duplex(1024);
        client.write_all(b"ab\x10c\x10\x11zz").await.unwrap();
        let detached = pump_stdin(server, sink, &[16, 17]).await;
        assert!(detached);
        let mut got = vec![0u8; 4];
        sink_rd.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ab\x10c");
    }

    #[tokio::test]
    async fn frames_lose_their_headers_with_a_tty() {
        let (mut w, r) = tokio::io::duplex(1024);
        w.write_all(&[1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']).await.unwrap();
        drop(w);
        let (out, mut out_rd) = tokio::io::duplex(1024);
        pump_frames(r, out, true).await;
        let mut s = Vec::new();
        out_rd.read_to_end(&mut s).await.unwrap();
        assert_eq!(s, b"hi");
    }
}
