//! Handlers describing the API itself: the OpenAPI document and the tag
//! categories.

use axum::extract::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::responses::{Categories, Category};

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::assets::OPENAPI,
    )
        .into_response()
}

pub async fn categories() -> Json<Categories> {
    Json(Categories {
        categories: crate::types::CATEGORIES
            .iter()
            .map(|&(id, ru, en)| Category { id, ru, en })
            .collect(),
    })
}
