//! Container data routes: logs, stats, changes, export and the archive (cp) endpoints.

use std::convert::Infallible;

use axum::Json;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::containers::ContainerService;
use berth_engine::containers::logs::LogOptions;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::params::Params;
use super::{ApiError, AppState};

fn stream_response(content_type: &str, rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `GET /containers/{id}/logs`.
pub async fn logs(st: &AppState, id: &str, p: &Params) -> Result<Response, ApiError> {
    let (stdout, stderr) = (p.bool("stdout"), p.bool("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let mut opts = LogOptions {
        stdout,
        stderr,
        follow: p.bool("follow"),
        ..Default::default()
    };
    opts.apply_query(p.str("tail"), p.str("since"), p.str("until"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let timestamps = p.bool("timestamps");
    let (tty, mut entries) = st.engine.containers().logs(id, opts)?;
    let (tx, rx) = mpsc::channel(64);
    let shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                n = entries.recv() => n,
            };
            match next {
                Some(Ok(e)) => {
                    let data = if tty {
                        e.render(timestamps)
                    } else {
                        e.frame(timestamps)
                    };
                    if tx.send(Ok(Bytes::from(data))).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading a container log failed");
                    return;
                }
                None => return,
            }
        }
    });
    Ok(stream_response(super::hijack::content_type(tty), rx))
}

/// `GET /containers/{id}/stats?stream=&one-shot=`.
pub async fn stats(st: &AppState, id: &str, p: &Params) -> Result<Response, ApiError> {
    let svc: std::sync::Arc<ContainerService> = st.engine.containers().clone();
    let stream = p.get("stream").is_none() || p.bool("stream");
    let one_shot = p.bool("one-shot");
    let first = svc.stats(id, None)?;
    if !stream {
        if one_shot {
            return Ok(Json(first).into_response());
        }
        // docker waits a second for the pre-sample so that CPU percentages can be computed.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        return Ok(Json(svc.stats(id, Some(&first))?).into_response());
    }
    let (tx, rx) = mpsc::channel(4);
    let id = id.to_string();
    let shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        let mut prev = first;
        loop {
            let mut line = serde_json::to_vec(&prev).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            match svc.stats(&id, Some(&prev)) {
                Ok(s) => prev = s,
                Err(_) => return,
            }
        }
    });
    Ok(stream_response("application/json", rx))
}

/// The log so far for an attach with `logs=1`.
pub fn past_logs(
    s: &ContainerService,
    id: &str,
    stdout: bool,
    stderr: bool,
    _tty: bool,
) -> Result<Vec<u8>, ApiError> {
    Ok(s.past_logs(id, stdout, stderr)?)
}

fn tar_response(rx: berth_engine::containers::ByteStream, stat: Option<String>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar");
    if let Some(s) = stat {
        b = b.header("X-Docker-Container-Path-Stat", s);
    }
    b.body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn path_param(p: &Params) -> Result<String, ApiError> {
    match p.get("path") {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(ApiError::bad_request("bad parameter: path cannot be empty")),
    }
}

/// `GET /containers/{id}/changes`.
pub async fn changes(st: &AppState, id: &str) -> Result<Response, ApiError> {
    Ok(Json(st.engine.containers().changes(id).await?).into_response())
}

/// `GET /containers/{id}/export`.
pub async fn export(st: &AppState, id: &str) -> Result<Response, ApiError> {
    let rx = st.engine.containers().export(id).await?;
    Ok(tar_response(rx, None))
}

/// `HEAD /containers/{id}/archive?path=`.
pub async fn head_archive(st: &AppState, id: &str, p: &Params) -> Result<Response, ApiError> {
    let path = path_param(p)?;
    let stat = st.engine.containers().archive_stat(id, &path).await?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("X-Docker-Container-Path-Stat", stat.header_value())
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// `GET /containers/{id}/archive?path=`.
pub async fn get_archive(st: &AppState, id: &str, p: &Params) -> Result<Response, ApiError> {
    let path = path_param(p)?;
    let (stat, rx) = st.engine.containers().archive_get(id, &path).await?;
    Ok(tar_response(rx, Some(stat.header_value())))
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`.
pub async fn put_archive(st: &AppState, id: &str, p: &Params, body: Body) -> Result<Response, ApiError> {
    use futures_util::TryStreamExt as _;
    let path = path_param(p)?;
    let reader = tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let input = Box::new(tokio_util::io::SyncIoBridge::new(reader));
    st.engine
        .containers()
        .archive_put(
            id,
            &path,
            input,
            p.bool("noOverwriteDirNonDir"),
            p.bool("copyUIDGID"),
        )
        .await?;
    Ok(StatusCode::OK.into_response())
}
