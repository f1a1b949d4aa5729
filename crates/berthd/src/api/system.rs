//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::events::EventFilter;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use super::params::Params;
use super::{ApiError, AppState};

/// `GET|HEAD /_ping`.
pub async fn ping(method: Method) -> Response {
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from("OK")
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")
        .header(header::PRAGMA, "no-cache")
        .header("builder-version", "1")
        .header("swarm", "inactive")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `GET /version`.
pub async fn version() -> impl IntoResponse {
    Json(berth_engine::system::version())
}

/// `GET /info`.
pub async fn info(State(st): State<AppState>) -> impl IntoResponse {
    Json(st.engine.info(st.event_listeners.load(Ordering::Relaxed)))
}

/// `GET /system/df`.
pub async fn df(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut usage = st.engine.images().disk_usage()?;
    usage.containers = st
        .engine
        .containers()
        .list(true, None, true, &berth_engine::filters::Filters::default())?
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let volumes = st.engine.volumes().clone();
    usage.volumes = tokio::task::spawn_blocking(move || volumes.disk_usage())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??
        .into_iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    Ok(Json(usage))
}

fn parse_time(p: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(None),
        Some(v) => berth_engine::time::parse_api_timestamp(v)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not a timestamp"))
            }),
    }
}

/// Decrements the listener count when the stream ends.
struct ListenerGuard(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /events?since=&until=&filters=`: past events from `since`, then live ones until `until` (or forever), one
/// JSON object per line.
pub async fn events(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let since = parse_time(&p, "since")?;
    let until = parse_time(&p, "until")?;
    let filter = EventFilter::new(p.filters()?).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = berth_engine::time::now_nanos();
    let (past, mut rx) = st.engine.events().subscribe(since);
    let (tx, out) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    st.event_listeners.fetch_add(1, Ordering::Relaxed);
    let guard = ListenerGuard(st.event_listeners.clone());
    let shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let line = |e: &berth_engine::events::Event| {
            let mut v = serde_json::to_vec(e).unwrap_or_default();
            v.push(b'\n');
            Ok(Bytes::from(v))
        };
        for e in past
            .iter()
            .filter(|e| until.is_none_or(|u| e.time_nano <= u) && filter.matches(e))
        {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        // `until` in the past (or now): only the recorded events.
        let deadline = match until {
            Some(u) if u <= now => return,
            Some(u) => Some(tokio::time::Instant::now() + std::time::Duration::from_nanos(u.abs_diff(now))),
            None => None,
        };
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = &mut sleep => return,
                () = tx.closed() => return,
                r = rx.recv() => match r {
                    Ok(e) => {
                        if filter.matches(&e) && tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "an events subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(
            out,
        )))
        .map_err(|e| ApiError::internal(e.to_string()))
}
