//! One simulated client's socket: a websocket from its own 127.x.y.z source address, speaking
//! either plain JSON text frames (the gateway, the `ws` and Bun peers, the raw relay) or the same
//! JSON wrapped in Socket.IO v4 / Engine.IO v4 framing (the Socket.IO peer).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The source address of client number `i`: 127.1.0.1, 127.1.0.2, …, one per client, so no
/// address runs short of ephemeral ports, however many sockets a reconnect storm reopens.
pub fn source_addr(i: usize) -> Ipv4Addr {
    let n = i / 250;
    Ipv4Addr::new(
        127,
        1 + (n / 250 % 200) as u8,
        (n % 250) as u8,
        (i % 250 + 1) as u8,
    )
}

/// The generator holds ~18k sockets in one process: small buffers (tungstenite's default read
/// buffer alone is 128 KiB a socket).
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

/// How a client frames its JSON objects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    Plain,
    /// Socket.IO v4: namespace `/visitor` or `/operator`, one event named `m` per object.
    SocketIo,
}

pub struct Sock {
    ws: WebSocketStream<TcpStream>,
    framing: Framing,
    /// Socket.IO namespace prefix, e.g. `/visitor,`.
    ns: String,
}

pub struct Connect<'a> {
    pub base: &'a str,
    /// `visitor` or `operator`.
    pub role: &'a str,
    pub framing: Framing,
    pub cookie: Option<&'a str>,
    pub source: Ipv4Addr,
    /// A small receive buffer, for a consumer that stops reading.
    pub recv_buffer: Option<u32>,
}

impl Sock {
    pub async fn connect(c: Connect<'_>) -> anyhow::Result<Sock> {
        let host = c
            .base
            .strip_prefix("http://")
            .context("base URL must be http://")?;
        let addr: SocketAddr = host.parse().context("base URL must be http://IP:port")?;
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(c.source.into(), 0))?;
        if let Some(size) = c.recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let stream = tokio::time::timeout(Duration::from_secs(20), socket.connect(addr))
            .await
            .context("connect timed out")??;
        stream.set_nodelay(true)?;
        let path = match c.framing {
            Framing::Plain => format!("/ws/{}", c.role),
            Framing::SocketIo => "/socket.io/?EIO=4&transport=websocket".to_owned(),
        };
        let mut req = format!("ws://{host}{path}").into_client_request()?;
        req.headers_mut().insert("origin", c.base.parse()?);
        if let Some(cookie) = c.cookie {
            req.headers_mut().insert("cookie", cookie.parse()?);
        }
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(20),
            tokio_tungstenite::client_async_with_config(req, stream, Some(client_config())),
        )
        .await
        .context("websocket handshake timed out")??;
        let mut sock = Sock {
            ws,
            framing: c.framing,
            ns: format!("/{},", c.role),
        };
        if c.framing == Framing::SocketIo {
            sock.socketio_open().await?;
        }
        Ok(sock)
    }

    /// Engine.IO open packet, then the namespace connect and its acknowledgement.
    async fn socketio_open(&mut self) -> anyhow::Result<()> {
        let open = self.raw_recv().await?.context("closed before open")?;
        anyhow::ensure!(open.starts_with('0'), "expected engine.io open, got {open}");
        self.ws
            .send(Message::text(format!("40{}", self.ns)))
            .await?;
        loop {
            let frame = self.raw_recv().await?.context("closed before connect")?;
            if frame.starts_with(&format!("40{}", self.ns)) {
                return Ok(());
            }
            if frame.starts_with("44") {
                bail!("namespace refused: {frame}");
            }
        }
    }

    async fn raw_recv(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(t))) => return Ok(Some(t.as_str().to_owned())),
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends one JSON object (already serialised).
    pub async fn send(&mut self, json: &str) -> anyhow::Result<()> {
        let frame = match self.framing {
            Framing::Plain => json.to_owned(),
            Framing::SocketIo => format!("42{}[\"m\",{json}]", self.ns),
        };
        self.ws.send(Message::text(frame)).await?;
        Ok(())
    }

    /// The next JSON object the server sent, as text; `None` once the socket is closed.
    /// Control traffic (pings, Engine.IO heartbeats) is answered here and skipped.
    pub async fn recv(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            let Some(frame) = self.raw_recv().await? else {
                return Ok(None);
            };
            match self.framing {
                Framing::Plain => return Ok(Some(frame)),
                Framing::SocketIo => {
                    if frame == "2" {
                        self.ws.send(Message::text("3")).await?;
                        continue;
                    }
                    let prefix = format!("42{}[\"m\",", self.ns);
                    if let Some(rest) = frame.strip_prefix(&prefix) {
                        let body = rest.strip_suffix(']').unwrap_or(rest);
                        return Ok(Some(body.to_owned()));
                    }
                }
            }
        }
    }

    /// Waits (at most 20 s) for an object whose text contains `needle`.
    pub async fn until(&mut self, needle: &str) -> anyhow::Result<String> {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match self.recv().await? {
                    None => bail!("socket closed waiting for {needle}"),
                    Some(t) if t.contains(needle) => return Ok(t),
                    Some(_) => {}
                }
            }
        })
        .await
        .with_context(|| format!("timed out waiting for {needle}"))?
    }

    /// Drops the connection at once, without a websocket close (a network blip).
    pub fn abort(self) {
        let _ = self.ws.get_ref().set_zero_linger();
        drop(self);
    }
}

/// The value of a string field `"key":"…"` in a JSON text, without parsing it all.
pub fn str_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = json.find(&pat)? + pat.len();
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

/// The value of a number field `"key":123` in a JSON text, without parsing it all.
pub fn num_field(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let start = json.find(&pat)? + pat.len();
    let digits: &str = &json[start..];
    let len = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..len].parse().ok()
}

/// The scheduled send time (µs since the run's origin) carried in a chat text `t:<µs>:…`.
pub fn stamp(json: &str) -> Option<u64> {
    let start = json.find("t:")? + 2;
    let rest = &json[start..];
    let len = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..len].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_without_parsing() {
        let j = r#"{"type":"event","conversation":"01ABC","seq":12,"event":{"kind":"message","text":"t:12345:pad"}}"#;
        assert_eq!(str_field(j, "conversation"), Some("01ABC"));
        assert_eq!(num_field(j, "seq"), Some(12));
        assert_eq!(stamp(j), Some(12345));
        assert_eq!(str_field(j, "missing"), None);
    }

    #[test]
    fn source_addresses_are_loopback_and_distinct() {
        let a: Vec<_> = (0..20_000).map(source_addr).collect();
        assert!(a.iter().all(|ip| ip.is_loopback()));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 20_000);
        assert_eq!(source_addr(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_addr(250), Ipv4Addr::new(127, 1, 1, 1));
    }
}
