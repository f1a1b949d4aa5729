//! Image routes: `/images/...` and `/auth`.

use std::convert::Infallible;
use std::io;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_engine::images::{ImageError, ImportOptions, JsonMessage, Reader, RegistryAuth};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::error::chain;
use super::params::{Params, json_body};
use super::{ApiError, AppState};

/// `POST /auth` body (docker's `AuthConfig`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
    #[serde(default)]
    #[allow(dead_code)]
    email: String,
    #[serde(default)]
    #[allow(dead_code)]
    auth: String,
    #[serde(default, rename = "identitytoken")]
    #[allow(dead_code)]
    identity_token: String,
    #[serde(default, rename = "registrytoken")]
    #[allow(dead_code)]
    registry_token: String,
}

/// `X-Registry-Auth`: base64url of the JSON `AuthConfig`; an empty object or absent header means anonymous.
fn registry_auth(headers: &HeaderMap) -> Result<Option<RegistryAuth>, ApiError> {
    let Some(v) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let raw = v
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Registry-Auth is not ASCII"))?
        .trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let trimmed = raw.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| ApiError::bad_request(format!("X-Registry-Auth is not base64: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) || bytes == b"{}" || bytes == b"null" {
        return Ok(None);
    }
    let a: AuthBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("X-Registry-Auth is not a JSON AuthConfig: {e}")))?;
    if a.username.is_empty() && a.password.is_empty() {
        return Ok(None);
    }
    Ok(Some(RegistryAuth {
        username: a.username,
        password: a.password,
        server_address: a.serveraddress,
    }))
}

fn body_reader(body: Body) -> Reader {
    Box::new(tokio_util::io::StreamReader::new(
        body.into_data_stream().map_err(io::Error::other),
    ))
}

/// Runs `op`, which reports progress on a channel, and answers like dockerd: a plain error status when it fails
/// before its first message, otherwise a stream of JSON lines ending with the error, if any.
async fn progress_response<F>(op: F, rx: mpsc::Receiver<JsonMessage>) -> Result<Response, ApiError>
where
    F: std::future::Future<Output = Result<(), ImageError>> + Send + 'static,
{
    let mut rx = rx;
    let task = tokio::spawn(op);
    let first = rx.recv().await;
    let Some(first) = first else {
        // The operation ended (its sender is gone) without a message.
        return match task.await {
            Ok(Ok(())) => Ok(json_lines_response(Body::empty())),
            Ok(Err(e)) => Err(ApiError::from_engine(e)),
            Err(e) => Err(ApiError::internal(format!("the operation failed: {e}"))),
        };
    };
    let (otx, orx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(async move {
        let _ = otx.send(Ok(Bytes::from(first.to_line()))).await;
        while let Some(m) = rx.recv().await {
            if otx.send(Ok(Bytes::from(m.to_line()))).await.is_err() {
                // The client went away; the operation finishes on its own.
                return;
            }
        }
        let end = match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(chain(&e)),
            Err(e) => Some(format!("the operation failed: {e}")),
        };
        if let Some(msg) = end {
            tracing::warn!(error = %msg, "streamed operation failed");
            let _ = otx.send(Ok(Bytes::from(JsonMessage::error(msg).to_line()))).await;
        }
    });
    Ok(json_lines_response(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(orx),
    )))
}

fn json_lines_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `POST /auth`.
pub async fn auth(State(st): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let a: AuthBody = json_body(&body)?;
    st.engine
        .images()
        .login(RegistryAuth {
            username: a.username,
            password: a.password,
            server_address: a.serveraddress,
        })
        .await?;
    Ok(Json(serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""})).into_response())
}

/// `GET /images/json`.
pub async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filters = p.filters()?;
    let list = st
        .engine
        .images()
        .list(&filters, p.bool("all"), p.bool("digests"))?;
    Ok(Json(list).into_response())
}

/// `POST /images/create`: `fromImage` pulls, `fromSrc=-` imports the body.
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    p: Params,
    body: Body,
) -> Result<Response, ApiError> {
    let from_image = p.str("fromImage").to_string();
    let from_src = p.str("fromSrc").to_string();
    let (tx, rx) = mpsc::channel::<JsonMessage>(256);
    match (from_image.is_empty(), from_src.is_empty()) {
        (false, true) => {
            let auth = registry_auth(&headers)?;
            let tag = p.str("tag").to_string();
            let platform = Some(p.str("platform").to_string()).filter(|s| !s.is_empty());
            let engine = st.engine.clone();
            progress_response(
                async move {
                    engine
                        .images()
                        .pull(&from_image, &tag, platform.as_deref(), auth, tx)
                        .await
                        .map(|_| ())
                },
                rx,
            )
            .await
        }
        (true, false) => {
            if from_src != "-" {
                return Err(ApiError::bad_request(format!(
                    "importing from {from_src:?} is not supported: send the tarball as the request body with fromSrc=-"
                )));
            }
            let repo = p.str("repo").to_string();
            let tag = p.str("tag").to_string();
            let options = ImportOptions {
                message: p.str("message").to_string(),
                changes: p.all("changes").into_iter().map(str::to_string).collect(),
                platform: Some(p.str("platform").to_string()).filter(|s| !s.is_empty()),
            };
            let engine = st.engine.clone();
            let reader = body_reader(body);
            progress_response(
                async move {
                    let id = engine.images().import(reader, &repo, &tag, options).await?;
                    let _ = tx.send(JsonMessage::status(id)).await;
                    Ok(())
                },
                rx,
            )
            .await
        }
        (false, false) => Err(ApiError::bad_request(
            "fromImage and fromSrc cannot be used together",
        )),
        (true, true) => Err(ApiError::bad_request("fromImage or fromSrc is required")),
    }
}

/// `POST /images/load?quiet=`.
pub async fn load(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel::<JsonMessage>(64);
    let engine = st.engine.clone();
    let reader = body_reader(body);
    progress_response(
        async move {
            let lines = engine.images().load(reader).await?;
            for l in lines {
                let _ = tx.send(JsonMessage::stream(l)).await;
            }
            Ok(())
        },
        rx,
    )
    .await
}

/// Streams a save as `application/x-tar`.
async fn save_response(st: AppState, names: Vec<String>) -> Result<Response, ApiError> {
    let plan = st.engine.images().save_plan(&names)?;
    let (w, r) = tokio::io::duplex(256 * 1024);
    let engine = st.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = engine.images().save(plan, Box::new(w)).await {
            // The client sees a truncated archive; the log says why.
            tracing::error!(error = %chain(&e), "save failed");
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(r)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /images/get?names=a&names=b`.
pub async fn save_many(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let names: Vec<String> = p.all("names").into_iter().map(str::to_string).collect();
    save_response(st, names).await
}

/// `POST /images/prune?filters=`.
pub async fn prune(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filters = p.filters()?;
    Ok(Json(st.engine.images().prune(&filters).await?).into_response())
}

/// `GET /images/{name}/json|history|get`.
pub async fn get_named(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let _ = &p;
    if let Some(name) = rest.strip_suffix("/json") {
        return Ok(Json(st.engine.images().inspect(name)?).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return Ok(Json(st.engine.images().history(name)?).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save_response(st, vec![name.to_string()]).await;
    }
    Err(ApiError::not_found(format!("page not found: /images/{rest}")))
}

/// `POST /images/{name}/tag|push`.
pub async fn post_named(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    if let Some(name) = rest.strip_suffix("/tag") {
        st.engine.images().tag(name, p.str("repo"), p.str("tag")).await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let auth = registry_auth(&headers)?;
        let (tx, rx) = mpsc::channel::<JsonMessage>(256);
        let engine = st.engine.clone();
        let name = name.to_string();
        let tag = p.str("tag").to_string();
        return progress_response(
            async move { engine.images().push(&name, &tag, auth, tx).await },
            rx,
        )
        .await;
    }
    Err(ApiError::not_found(format!("page not found: /images/{rest}")))
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    Ok(Json(st.engine.images().remove(&name, p.bool("force")).await?).into_response())
}
