//! Who is asking. This is the one place authentication plugs in: a layer in front of the
//! router resolves credentials into a [`Principal`] request extension, and every handler that
//! needs to know the caller takes the `Principal` extractor. Until authentication is switched
//! on, every request acts as the configured system user with admin rights (StackStorm's
//! `auth.enable = False` behaviour).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub is_admin: bool,
}

/// The caller when authentication is off.
#[derive(Debug, Clone)]
pub struct DevModeUser(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let user = parts.extensions.get::<DevModeUser>().map_or_else(|| "stanley".to_string(), |u| u.0.clone());
        Ok(Principal { user, is_admin: true })
    }
}
