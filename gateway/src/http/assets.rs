//! The pages, embedded in the binary: `widget/` under `/widget/`, `operator-console/` under
//! `/console/` (with `/coordinator/` and `/setup` as shortcuts), and the landing page. In debug
//! builds rust-embed reads the same folders from disk, so front-end edits show without a rebuild.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../widget/"]
#[exclude = "*.md"]
struct Widget;

#[derive(RustEmbed)]
#[folder = "../operator-console/"]
#[exclude = "*.md"]
struct Console;

#[derive(RustEmbed)]
#[folder = "assets/"]
#[exclude = "*.json"]
struct Gateway;

fn serve<E: RustEmbed>(path: &str) -> Response {
    match E::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub async fn landing() -> Response {
    serve::<Gateway>("index.html")
}

pub async fn gateway_file(Path(path): Path<String>) -> Response {
    serve::<Gateway>(&path)
}

pub async fn redirect_widget() -> Redirect {
    Redirect::permanent("/widget/")
}

pub async fn widget_index() -> Response {
    serve::<Widget>("chat.html")
}

pub async fn widget_file(Path(path): Path<String>) -> Response {
    serve::<Widget>(&path)
}

pub async fn redirect_console() -> Redirect {
    Redirect::permanent("/console/")
}

pub async fn console_index() -> Response {
    serve::<Console>("index.html")
}

pub async fn console_file(Path(path): Path<String>) -> Response {
    serve::<Console>(&path)
}

pub async fn coordinator() -> Response {
    serve::<Console>("coordinator.html")
}

pub async fn setup() -> Response {
    serve::<Console>("setup.html")
}
