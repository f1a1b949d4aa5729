//! The Engine API: routes, version negotiation, and the headers dockerd sends on every response.

mod container_io;
mod containers;
mod error;
mod hijack;
mod images;
mod networks;
mod params;
mod system;
mod volumes;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_engine::Engine;
use berth_engine::system::{API_VERSION, MIN_API_VERSION, compare_api_versions};
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Cancelled at shutdown: long-running streams (events) end.
    pub shutdown: CancellationToken,
    /// How many `/events` subscribers there are.
    pub event_listeners: Arc<AtomicI64>,
}

/// All routes, under both `/vX.Y/...` (stripped by [`negotiate`]) and the bare path.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/system/df", get(system::df))
        .route("/auth", post(images::auth))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::get_named)
                .post(images::post_named)
                .delete(images::delete),
        )
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}", axum::routing::delete(containers::delete))
        .route(
            "/containers/{id}/{what}",
            get(containers::get_sub)
                .head(containers::head_sub)
                .put(containers::put_sub)
                .post(containers::post_sub),
        )
        .route(
            "/exec/{id}/{what}",
            get(containers::exec_get).post(containers::exec_post),
        )
        .merge(volumes::routes())
        .merge(networks::routes())
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("page not found: {}", uri.path()))
}

/// Splits `/v1.47/images/json` into `("1.47", "/images/json")`.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (v, tail) = rest.split_at(end);
    let (ma, mi) = v.split_once('.')?;
    if ma.is_empty() || mi.is_empty() || !ma.bytes().chain(mi.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((v, if tail.is_empty() { "/" } else { tail }))
}

/// Middleware run before routing: strips the version prefix, refuses versions outside
/// [`MIN_API_VERSION`, `API_VERSION`] as dockerd does, and adds dockerd's headers to the response.
pub async fn negotiate(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if let Some((v, tail)) = split_version(&path) {
        if compare_api_versions(v, API_VERSION) == Some(std::cmp::Ordering::Greater) {
            return with_headers(
                ApiError::bad_request(format!(
                    "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                ))
                .into_response(),
            );
        }
        if compare_api_versions(v, MIN_API_VERSION) == Some(std::cmp::Ordering::Less) {
            return with_headers(
                    ApiError::bad_request(format!(
                        "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                    ))
                    .into_response(),
                );
        }
        let pq = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        match pq.parse() {
            Ok(p) => parts.path_and_query = Some(p),
            Err(_) => return with_headers(ApiError::bad_request("invalid request path").into_response()),
        }
        match Uri::from_parts(parts) {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return with_headers(ApiError::bad_request("invalid request path").into_response()),
        }
    }
    tracing::debug!(method = %req.method(), path = %path, "request");
    with_headers(next.run(req).await)
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    h.insert("docker-experimental", HeaderValue::from_static("false"));
    h.insert("ostype", HeaderValue::from_static("linux"));
    if let Ok(v) = HeaderValue::from_str(&format!("Berth/{} (linux)", berth_engine::system::VERSION)) {
        h.insert("server", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        assert_eq!(
            split_version("/v1.47/images/json"),
            Some(("1.47", "/images/json"))
        );
        assert_eq!(split_version("/v1.41/_ping"), Some(("1.41", "/_ping")));
        assert_eq!(split_version("/version"), None);
        assert_eq!(split_version("/v1/x"), None);
        assert_eq!(split_version("/vx.y/x"), None);
    }
}
