//! Volume routes: `GET /volumes`, `POST /volumes/create`, `GET|DELETE /volumes/{name}`, `POST /volumes/prune`.
//!
//! The volume service is synchronous (it touches directories, mounts and deletes trees), so every handler runs it
//! on the blocking pool.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_engine::volumes::{VolumeError, VolumeService};
use bollard_stubs::models::VolumeCreateRequest;
use bytes::Bytes;

use super::params::Params;
use super::{ApiError, AppState};

/// The volume routes, to merge into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

/// Runs `f` on the volume service in the blocking pool.
async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&VolumeService) -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = st.engine.clone();
    tokio::task::spawn_blocking(move || f(engine.volumes()))
        .await
        .map_err(|e| ApiError::internal(format!("the volume operation failed: {e}")))?
        .map_err(ApiError::from_engine)
}

/// `GET /volumes?filters=`.
pub async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filters = p.filters()?;
    Ok(Json(blocking(&st, move |v| v.list(&filters)).await?).into_response())
}

/// `POST /volumes/create` with a `VolumeCreateRequest` body (an empty body makes an anonymous volume).
pub async fn create(State(st): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: VolumeCreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        VolumeCreateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?
    };
    if req.cluster_volume_spec.is_some() {
        return Err(ApiError::bad_request(
            "cluster volumes are not supported: this daemon is not a swarm manager",
        ));
    }
    let vol = blocking(&st, move |v| v.create(req)).await?;
    Ok((StatusCode::CREATED, Json(vol)).into_response())
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(st): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(blocking(&st, move |v| v.inspect(&name)).await?).into_response())
}

/// `DELETE /volumes/{name}?force=`.
pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let force = p.bool("force");
    blocking(&st, move |v| v.remove(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune?filters=`.
pub async fn prune(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filters = p.filters()?;
    Ok(Json(blocking(&st, move |v| v.prune(&filters)).await?).into_response())
}
