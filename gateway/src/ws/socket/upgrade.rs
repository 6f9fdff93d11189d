//! The HTTP side: the [`Upgrade`] extractor checks a request's websocket handshake,
//! [`Upgrade::on_upgrade`] answers 101 and, once hyper has switched the connection over, takes
//! the TCP stream out of hyper's upgrade (plain HTTP) and hands the [`Socket`] to its callback.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::{Io, Socket};
use crate::protocol::MAX_FRAME_BYTES;
use crate::server::Slot;

/// The connection of an upgraded request, and the bytes hyper read past its end.
fn io_of(upgraded: Upgraded) -> (Io, Vec<u8>) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => (Either::Left(parts.io.into_inner()), parts.read_buf.to_vec()),
        Err(upgraded) => (Either::Right(TokioIo::new(upgraded)), Vec::new()),
    }
}

/// The websocket handshake of a request (`GET` with `Upgrade: websocket`), checked by the
/// extractor: [`Upgrade::on_upgrade`] answers it with 101 and hands the socket to a callback.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The connection's place in the connection caps, which the socket keeps.
    slot: Option<Arc<Slot>>,
}

/// Why a request could not be upgraded; answered with 400 (426 for a missing or wrong version).
#[derive(Debug)]
pub struct UpgradeRefused(StatusCode, &'static str);

impl IntoResponse for UpgradeRefused {
    fn into_response(self) -> Response {
        let mut response = (self.0, self.1).into_response();
        if self.0 == StatusCode::UPGRADE_REQUIRED {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl<St: Send + Sync> FromRequestParts<St> for Upgrade {
    type Rejection = UpgradeRefused;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let refuse = |why| Err(UpgradeRefused(StatusCode::BAD_REQUEST, why));
        if parts.method != Method::GET {
            return refuse("websocket requests use GET");
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade")
            || !header_has_token(&parts.headers, header::UPGRADE, "websocket")
        {
            return refuse("not a websocket upgrade");
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(UpgradeRefused(
                StatusCode::UPGRADE_REQUIRED,
                "websocket version 13 required",
            ));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return refuse("no Sec-WebSocket-Key");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return refuse("this connection cannot be upgraded");
        };
        let slot = parts.extensions.remove::<Arc<Slot>>();
        Ok(Upgrade {
            key,
            on_upgrade,
            slot,
        })
    }
}

impl Upgrade {
    /// Answers 101 and, once hyper has switched the connection over, runs `callback` with the
    /// socket (boxed: see `visitor::run`). Messages over [`MAX_FRAME_BYTES`] are refused.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(Box<Socket>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        let slot = self.slot;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                tracing::debug!("websocket upgrade failed");
                return;
            };
            let (io, received) = io_of(upgraded);
            let mut socket = Socket::with_received(io, received, MAX_FRAME_BYTES);
            socket._slot = slot;
            callback(Box::new(socket)).await;
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            accept_key(self.key.as_bytes()),
        );
        response
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
