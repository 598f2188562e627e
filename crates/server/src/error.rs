//! The HTTP error type: every failure leaves as `{"faultstring": "..."}` with a standard status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use squall_store::StoreError;

/// An API failure with StackStorm's error envelope.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub faultstring: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, faultstring: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, faultstring: message.into() }
    }

    /// StackStorm's wording for an unknown execution id.
    pub fn no_execution(id: &str) -> ApiError {
        ApiError::not_found(format!("Unable to identify resource with id \"{id}\"."))
    }

    pub fn unknown_route() -> ApiError {
        ApiError::not_found("The resource could not be found.")
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        tracing::error!(error = %err, "storage failure");
        if err.is_disk_full() {
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                faultstring: "Service Unavailable: the server's data disk is full; try again once space is freed".into(),
            }
        } else if err.is_transient() {
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                faultstring: "Service Unavailable: storage is unreachable; try again".into(),
            }
        } else {
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                faultstring: "Internal Server Error: storage is unavailable; see the server log".into(),
            }
        }
    }
}

impl From<squall_core::sealed::SealError> for ApiError {
    fn from(err: squall_core::sealed::SealError) -> ApiError {
        tracing::error!(error = %err, "cannot open a sealed secret");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, faultstring: format!("Internal Server Error: {err}") }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"faultstring": self.faultstring}))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
