//! The files the bridge serves to browsers, embedded in the binary: the dashboard
//! at `/` and switchboard.js (`/client.js`, with its `/msgpack.js`).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// (path, content type, body).
const FILES: &[(&str, &str, &str)] = &[
    ("", HTML, include_str!("../assets/dashboard.html")),
    ("dashboard.js", JS, include_str!("../assets/dashboard.js")),
    (
        "dashboard.css",
        CSS,
        include_str!("../assets/dashboard.css"),
    ),
    (
        "client.js",
        JS,
        include_str!("../../clients/js/switchboard.js"),
    ),
    (
        "msgpack.js",
        JS,
        include_str!("../../clients/js/msgpack.js"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

pub async fn index() -> Response {
    file("")
}

pub async fn named(Path(name): Path<String>) -> Response {
    file(&name)
}

fn file(name: &str) -> Response {
    let Some((path, kind, body)) = FILES.iter().find(|(path, _, _)| *path == name) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    // Revalidated on every load: a new binary serves new files at once.
    let mut response = (
        [
            (header::CONTENT_TYPE, *kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *body,
    )
        .into_response();
    // The client is a public file: pages of any origin may import it (the WebSocket
    // it opens is what `[http] allowed_origins` guards).
    if matches!(*path, "client.js" | "msgpack.js") {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}
