//! Container routes: `/containers/...` and `/exec/...`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::containers::{ContainerService, WaitCondition};
use bollard_stubs::models::{ContainerCreateBody, ContainerUpdateBody, ExecConfig};
use bytes::Bytes;
use tokio::io::AsyncWriteExt as _;

use super::hijack::{self, hijack, pump_frames, pump_stdin};
use super::params::{Params, json_body};
use super::{ApiError, AppState};

fn svc(st: &AppState) -> &Arc<ContainerService> {
    st.engine.containers()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

/// An integer query parameter (absent → None, malformed → 400).
fn int_param(p: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))),
    }
}

/// The 404 of a path under `/containers/{id}/` or `/exec/{id}/` that names no endpoint.
fn unknown_sub(kind: &str, id: &str, what: &str) -> ApiError {
    ApiError::not_found(format!("page not found: /{kind}/{id}/{what}"))
}

/// `GET /containers/json`.
pub async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let limit = int_param(&p, "limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let v = svc(&st).list(p.bool("all"), limit, p.bool("size"), &p.filters()?)?;
    Ok(Json(v).into_response())
}

/// `POST /containers/create?name=`.
pub async fn create(State(st): State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    let b: ContainerCreateBody = json_body(&body)?;
    let name = p.get("name");
    let r = svc(&st).create(name, b).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// `POST /containers/prune`.
pub async fn prune(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    Ok(Json(svc(&st).prune(&p.filters()?).await?).into_response())
}

/// `GET /containers/{id}/...`.
pub async fn get_sub(
    State(st): State<AppState>,
    Path((id, what)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    let s = svc(&st);
    match what.as_str() {
        "json" => {
            let mut v = serde_json::to_value(s.inspect(&id, p.bool("size"))?)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            legacy_network_fields(&mut v);
            Ok(Json(v).into_response())
        }
        "top" => Ok(Json(s.top(&id, p.str("ps_args")).await?).into_response()),
        "logs" => super::container_io::logs(&st, &id, &p).await,
        "stats" => super::container_io::stats(&st, &id, &p).await,
        "changes" => super::container_io::changes(&st, &id).await,
        "export" => super::container_io::export(&st, &id).await,
        "archive" => super::container_io::get_archive(&st, &id, &p).await,
        _ => Err(unknown_sub("containers", &id, &what)),
    }
}

/// The deprecated top-level fields of `NetworkSettings` (API < 1.52, still read by scripts through
/// `{{.NetworkSettings.IPAddress}}`): dockerd fills them from the default `bridge` network's endpoint only.
fn legacy_network_fields(v: &mut serde_json::Value) {
    let Some(ns) = v.get_mut("NetworkSettings").and_then(|n| n.as_object_mut()) else {
        return;
    };
    let bridge = ns
        .get("Networks")
        .and_then(|n| n.get("bridge"))
        .cloned()
        .unwrap_or_default();
    let field = |k: &str, default: serde_json::Value| bridge.get(k).cloned().unwrap_or(default);
    let empty = || serde_json::Value::String(String::new());
    for (k, d) in [
        ("EndpointID", empty()),
        ("Gateway", empty()),
        ("GlobalIPv6Address", empty()),
        ("GlobalIPv6PrefixLen", serde_json::json!(0)),
        ("IPAddress", empty()),
        ("IPPrefixLen", serde_json::json!(0)),
        ("IPv6Gateway", empty()),
        ("MacAddress", empty()),
    ] {
        ns.insert(k.to_string(), field(k, d));
    }
    ns.entry("Bridge").or_insert_with(empty);
    ns.entry("HairpinMode").or_insert(serde_json::json!(false));
    ns.entry("LinkLocalIPv6Address").or_insert_with(empty);
    ns.entry("LinkLocalIPv6PrefixLen").or_insert(serde_json::json!(0));
}

/// `HEAD /containers/{id}/archive`.
pub async fn head_sub(
    State(st): State<AppState>,
    Path((id, what)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    match what.as_str() {
        "archive" => super::container_io::head_archive(&st, &id, &p).await,
        _ => Err(unknown_sub("containers", &id, &what)),
    }
}

/// `PUT /containers/{id}/archive`.
pub async fn put_sub(
    State(st): State<AppState>,
    Path((id, what)): Path<(String, String)>,
    p: Params,
    body: Body,
) -> Result<Response, ApiError> {
    match what.as_str() {
        "archive" => super::container_io::put_archive(&st, &id, &p, body).await,
        _ => Err(unknown_sub("containers", &id, &what)),
    }
}

/// `POST /containers/{id}/...`.
pub async fn post_sub(
    State(st): State<AppState>,
    Path((id, what)): Path<(String, String)>,
    p: Params,
    req: Request,
) -> Result<Response, ApiError> {
    let s = svc(&st).clone();
    match what.as_str() {
        "start" => Ok(if s.start(&id).await? {
            no_content()
        } else {
            not_modified()
        }),
        "stop" => {
            let t = int_param(&p, "t")?;
            Ok(if s.stop(&id, p.get("signal"), t).await? {
                no_content()
            } else {
                not_modified()
            })
        }
        "restart" => {
            s.restart(&id, p.get("signal"), int_param(&p, "t")?).await?;
            Ok(no_content())
        }
        "kill" => {
            s.kill(&id, p.get("signal")).await?;
            Ok(no_content())
        }
        "pause" => {
            s.pause(&id).await?;
            Ok(no_content())
        }
        "unpause" => {
            s.unpause(&id).await?;
            Ok(no_content())
        }
        "rename" => {
            s.rename(&id, p.str("name")).await?;
            Ok(no_content())
        }
        "resize" => {
            let (h, w) = size_params(&p)?;
            s.resize(&id, h, w).await?;
            Ok(StatusCode::OK.into_response())
        }
        "wait" => {
            let cond = WaitCondition::parse(p.str("condition"))?;
            let fut = s.wait(&id, cond)?;
            let shutdown = st.shutdown.clone();
            let stream = futures_util::stream::once(async move {
                let r = tokio::select! {
                    r = fut => r,
                    // The daemon is going away: no answer; the client sees the connection end.
                    () = shutdown.cancelled() => {
                        return Err(std::io::Error::other("the daemon is shutting down"));
                    }
                };
                let mut v = serde_json::to_vec(&r).unwrap_or_default();
                v.push(b'\n');
                Ok::<_, std::io::Error>(Bytes::from(v))
            });
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
        }
        "update" => {
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            let u: ContainerUpdateBody = json_body(&body)?;
            let warnings = s.update(&id, u).await?;
            Ok(Json(serde_json::json!({ "Warnings": warnings })).into_response())
        }
        "exec" => {
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            let c: ExecConfig = json_body(&body)?;
            let eid = s.exec_create(&id, c)?;
            Ok((StatusCode::CREATED, Json(serde_json::json!({ "Id": eid }))).into_response())
        }
        "attach" => attach(s, &id, &p, req, st.shutdown.clone()).await,
        _ => Err(unknown_sub("containers", &id, &what)),
    }
}

fn size_params(p: &Params) -> Result<(u16, u16), ApiError> {
    let get = |k: &str| -> Result<u16, ApiError> {
        let v = p.str(k);
        v.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!("invalid value for {k}: {v:?} is not a terminal size"))
        })
    };
    Ok((get("h")?, get("w")?))
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=&detachKeys=`.
async fn attach(
    s: Arc<ContainerService>,
    id: &str,
    p: &Params,
    req: Request,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<Response, ApiError> {
    let keys = hijack::parse_detach_keys(p.str("detachKeys"))?;
    let (stdin, stdout, stderr) = (p.bool("stdin"), p.bool("stdout"), p.bool("stderr"));
    let logs = p.bool("logs");
    let stream = p.bool("stream");
    let rec = s.get(id)?;
    let tty = rec.config.tty.unwrap_or(false);
    let past = if logs {
        super::container_io::past_logs(&s, id, stdout, stderr, tty)?
    } else {
        Vec::new()
    };
    let target = if stream {
        Some(s.attach(id, stdin, stdout, stderr).await?)
    } else {
        None
    };
    Ok(hijack(req, tty, shutdown, move |conn| async move {
        let (client_rd, mut client_wr) = tokio::io::split(conn);
        if !past.is_empty() && client_wr.write_all(&past).await.is_err() {
            return;
        }
        let Some(target) = target else {
            let _ = client_wr.shutdown().await;
            return;
        };
        let Ok(mon) = target.stream.await else {
            let _ = client_wr.shutdown().await;
            return;
        };
        let (mon_rd, mon_wr) = mon.into_split();
        let mut out = tokio::spawn(pump_frames(mon_rd, client_wr, target.tty));
        if stdin {
            tokio::select! {
                detached = pump_stdin(client_rd, mon_wr, &keys) => {
                    if detached {
                        out.abort();
                        return;
                    }
                    let _ = out.await;
                }
                _ = &mut out => {}
            }
        } else {
            drop(mon_wr);
            drop(client_rd);
            let _ = out.await;
        }
    }))
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    svc(&st).remove(&id, p.bool("force"), p.bool("v")).await?;
    Ok(no_content())
}

/// `POST /exec/{id}/...`.
pub async fn exec_post(
    State(st): State<AppState>,
    Path((id, what)): Path<(String, String)>,
    p: Params,
    req: Request,
) -> Result<Response, ApiError> {
    let s = svc(&st).clone();
    match what.as_str() {
        "resize" => {
            let (h, w) = size_params(&p)?;
            s.exec_resize(&id, h, w)?;
            Ok(StatusCode::OK.into_response())
        }
        "start" => {
            let headers = req.headers().clone();
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            #[derive(serde::Deserialize, Default)]
            struct Start {
                #[serde(rename = "Detach", default)]
                detach: bool,
                #[serde(rename = "Tty", default)]
                #[allow(dead_code)]
                tty: bool,
            }
            let start: Start = if bytes.iter().all(u8::is_ascii_whitespace) {
                Start::default()
            } else {
                json_body(&bytes)?
            };
            let detach_keys = s.exec_inspect(&id)?.detach_keys.unwrap_or_default();
            let keys = hijack::parse_detach_keys(&detach_keys)?;
            if start.detach {
                s.exec_start(&id, true).await?;
                return Ok(StatusCode::OK.into_response());
            }
            let tty = s.exec_check(&id)?;
            let mut req = Request::from_parts(parts, Body::empty());
            *req.headers_mut() = headers;
            // As dockerd, the process starts once the connection is the client's: output written before the
            // 101 answer could be read ahead by a client's HTTP parser and lost.
            Ok(hijack(req, tty, st.shutdown.clone(), move |conn| async move {
                let (client_rd, mut client_wr) = tokio::io::split(conn);
                let io = match s.exec_start(&id, false).await {
                    Ok(Some(io)) => io,
                    Ok(None) => return,
                    Err(e) => {
                        let msg = format!("{}\n", super::error::chain(&e));
                        let mut out = Vec::new();
                        if !tty {
                            out.extend_from_slice(&[2, 0, 0, 0]);
                            out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                        }
                        out.extend_from_slice(msg.as_bytes());
                        let _ = client_wr.write_all(&out).await;
                        let _ = client_wr.shutdown().await;
                        return;
                    }
                };
                let mut output = io.output;
                let mut exited = io.exited;
                let mut out = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut output, &mut client_wr).await;
                    let _ = client_wr.flush().await;
                    // The client inspects the exec for its exit code as soon as the stream ends.
                    let _ = exited.wait_for(|d| *d).await;
                    let _ = client_wr.shutdown().await;
                });
                match io.input {
                    Some(input) => {
                        tokio::select! {
                            detached = pump_stdin(client_rd, input, &keys) => {
                                if detached {
                                    out.abort();
                                    return;
                                }
                                let _ = out.await;
                            }
                            _ = &mut out => {}
                        }
                    }
                    None => {
                        let _ = out.await;
                    }
                }
            }))
        }
        _ => Err(unknown_sub("exec", &id, &what)),
    }
}

/// `GET /exec/{id}/json`.
pub async fn exec_get(
    State(st): State<AppState>,
    Path((id, what)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    match what.as_str() {
        "json" => {
            // dockerd sends `"ExitCode": null` until the exec has ended; clients index it.
            let mut v = serde_json::to_value(svc(&st).exec_inspect(&id)?)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            if let Some(o) = v.as_object_mut() {
                o.entry("ExitCode").or_insert(serde_json::Value::Null);
            }
            Ok(Json(v).into_response())
        }
        _ => Err(unknown_sub("exec", &id, &what)),
    }
}
