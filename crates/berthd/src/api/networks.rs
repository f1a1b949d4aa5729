//! Network routes: `GET /networks`, `POST /networks/create`, `GET|DELETE /networks/{id}`,
//! `POST /networks/{id}/connect`, `POST /networks/{id}/disconnect`, `POST /networks/prune`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bollard_stubs::models::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkPruneResponse,
};
use bytes::Bytes;

use super::params::Params;
use super::{ApiError, AppState};

/// The network routes, to merge into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

fn body<T: serde::de::DeserializeOwned>(b: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// `GET /networks?filters=`.
pub async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filters = p.filters()?;
    let nets = st
        .engine
        .networks()
        .list(&filters)
        .map_err(ApiError::from_engine)?;
    Ok(Json(nets).into_response())
}

/// `POST /networks/create`.
pub async fn create(State(st): State<AppState>, b: Bytes) -> Result<Response, ApiError> {
    let req: NetworkCreateRequest = body(&b)?;
    let r = st
        .engine
        .networks()
        .create(req)
        .await
        .map_err(ApiError::from_engine)?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// `GET /networks/{id}`.
pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(st.engine.networks().inspect(&id).map_err(ApiError::from_engine)?).into_response())
}

/// `DELETE /networks/{id}`.
pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    st.engine
        .networks()
        .remove(&id)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /networks/prune?filters=`.
pub async fn prune(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let filters = p.filters()?;
    let removed = st
        .engine
        .networks()
        .prune(&filters)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(Json(NetworkPruneResponse {
        networks_deleted: Some(removed),
    })
    .into_response())
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response, ApiError> {
    let req: NetworkConnectRequest = body(&b)?;
    st.engine
        .containers()
        .connect(&id, &req.container, req.endpoint_config)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response, ApiError> {
    let req: NetworkDisconnectRequest = body(&b)?;
    st.engine
        .containers()
        .disconnect(&id, &req.container, req.force.unwrap_or(false))
        .await
        .map_err(ApiError::from_engine)?;
    Ok(StatusCode::OK.into_response())
}
