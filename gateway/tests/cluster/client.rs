//! Websocket clients for the cluster tests: a reader task per socket keeps every frame, so a
//! test can send while frames arrive, and a socket whose node died just reports `Closed`.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::node::Node;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn id() -> String {
    ulid::Ulid::new().to_string()
}

pub fn is_event(v: &Value, kind: &str) -> bool {
    v["type"] == "event" && v["event"]["kind"] == kind
}

/// The log entries of `conversation` in `log`, in arrival order, as (seq, entry).
pub fn events_of(log: &[Value], conversation: &str) -> Vec<(u64, Value)> {
    log.iter()
        .filter(|v| v["type"] == "event" && v["conversation"] == conversation)
        .map(|v| (v["seq"].as_u64().unwrap_or(0), v["event"].clone()))
        .collect()
}

/// Client ids of chat messages in `log` for `conversation`, in arrival order.
pub fn message_ids(log: &[Value], conversation: &str) -> Vec<String> {
    events_of(log, conversation)
        .into_iter()
        .filter(|(_, e)| e["kind"] == "message")
        .filter_map(|(_, e)| e["id"].as_str().map(str::to_owned))
        .collect()
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

#[derive(Debug)]
pub enum Frame {
    Json(Value),
    /// The socket closed, with the close code if the server sent one.
    Closed(Option<u16>),
}

pub struct Ws {
    sink: Sink,
    rx: mpsc::UnboundedReceiver<Frame>,
    pub backlog: VecDeque<Value>,
    pub closed: Option<Option<u16>>,
    /// Every frame received, in order (whether a helper consumed it or not).
    pub log: Vec<Value>,
}

impl Ws {
    pub async fn connect(node: &Node, path: &str, cookie: Option<&str>) -> anyhow::Result<Ws> {
        let mut req = format!("{}{path}", node.ws_base).into_client_request()?;
        req.headers_mut().insert("origin", node.base.parse()?);
        if let Some(c) = cookie {
            req.headers_mut().insert("cookie", c.parse()?);
        }
        let (ws, _) = tokio::time::timeout(
            WAIT,
            // No Nagle: a timing test must not measure delayed ACKs.
            tokio_tungstenite::connect_async_with_config(req, None, true),
        )
        .await
        .context("websocket connect timed out")??;
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = match serde_json::from_str(t.as_str()) {
                            Ok(v) => v,
                            Err(_) => continue,
                        };
                        if tx.send(Frame::Json(v)).is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        let _ = tx.send(Frame::Closed(f.map(|f| u16::from(f.code))));
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        let _ = tx.send(Frame::Closed(None));
                        return;
                    }
                }
            }
        });
        Ok(Ws {
            sink,
            rx,
            backlog: VecDeque::new(),
            closed: None,
            log: Vec::new(),
        })
    }

    pub async fn send(&mut self, v: Value) -> anyhow::Result<()> {
        if let Some(c) = self.closed {
            bail!("socket closed ({c:?})");
        }
        tokio::time::timeout(WAIT, self.sink.send(Message::text(v.to_string())))
            .await
            .context("send timed out")??;
        Ok(())
    }

    /// The next frame within `within`: `Ok(Some)`, `Ok(None)` on time-out, `Err` once closed.
    pub async fn recv(&mut self, within: Duration) -> anyhow::Result<Option<Value>> {
        if let Some(v) = self.backlog.pop_front() {
            return Ok(Some(v));
        }
        self.recv_wire(within).await
    }

    async fn recv_wire(&mut self, within: Duration) -> anyhow::Result<Option<Value>> {
        if let Some(c) = self.closed {
            bail!("socket closed ({c:?})");
        }
        match tokio::time::timeout(within, self.rx.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(Frame::Json(v))) => {
                self.log.push(v.clone());
                Ok(Some(v))
            }
            Ok(Some(Frame::Closed(c))) => {
                self.closed = Some(c);
                bail!("socket closed ({c:?})")
            }
            Ok(None) => {
                self.closed = Some(None);
                bail!("socket closed")
            }
        }
    }

    /// Waits for the first frame matching `pred`; others stay in the backlog, in order.
    pub async fn expect(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Ok(self.backlog.remove(i).unwrap());
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for {what}; backlog: {:?}", self.backlog);
            }
            match self.recv_wire(left).await {
                Ok(Some(v)) if pred(&v) => return Ok(v),
                Ok(Some(v)) => self.backlog.push_back(v),
                Ok(None) => {}
                Err(e) => bail!("{e} while waiting for {what}; backlog: {:?}", self.backlog),
            }
        }
    }

    pub async fn expect_type(&mut self, ty: &str) -> anyhow::Result<Value> {
        let t = ty.to_owned();
        self.expect(ty, WAIT, move |v| v["type"] == t).await
    }

    /// Sends a frame with a fresh id and waits for the `ack` or `error` answering it.
    pub async fn request(&mut self, frame: Value) -> anyhow::Result<Value> {
        self.request_within(frame, WAIT).await
    }

    pub async fn request_within(
        &mut self,
        mut frame: Value,
        within: Duration,
    ) -> anyhow::Result<Value> {
        let cid = id();
        frame["id"] = json!(cid);
        self.send(frame).await?;
        self.reply_to(&cid, within).await
    }

    pub async fn reply_to(&mut self, cid: &str, within: Duration) -> anyhow::Result<Value> {
        let cid = cid.to_owned();
        self.expect("reply", within, move |v| {
            (v["type"] == "ack" || v["type"] == "error") && v["id"] == cid.as_str()
        })
        .await
    }

    /// Everything already received, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out: Vec<Value> = self.backlog.drain(..).collect();
        while let Ok(f) = self.rx.try_recv() {
            match f {
                Frame::Json(v) => {
                    self.log.push(v.clone());
                    out.push(v)
                }
                Frame::Closed(c) => self.closed = Some(c),
            }
        }
        out
    }

    /// Reads frames (into the backlog and the log) until `cond(log)` holds.
    pub async fn pump_until(
        &mut self,
        what: &str,
        within: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if cond(&self.log) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for {what}");
            }
            if let Some(v) = self.recv_wire(left).await? {
                self.backlog.push_back(v);
            }
        }
    }
}

pub struct Visitor {
    pub ws: Ws,
    pub conversation: String,
    pub token: String,
}

impl Visitor {
    /// A person starting a conversation on `node`.
    pub async fn start(node: &Node, lang: &str) -> anyhow::Result<Visitor> {
        let mut ws = Ws::connect(node, "/ws/visitor", None).await?;
        ws.send(json!({"type":"hello","v":1,"id":id(),"start":{"lang":lang}}))
            .await?;
        let w = ws.expect_type("welcome").await?;
        Ok(Visitor {
            conversation: w["conversation"]
                .as_str()
                .context("welcome.conversation")?
                .to_owned(),
            token: w["token"].as_str().context("welcome.token")?.to_owned(),
            ws,
        })
    }

    /// The same person coming back on `node` (maybe another one) after a drop.
    pub async fn resume(
        node: &Node,
        token: &str,
        last_seq: Option<u64>,
    ) -> anyhow::Result<(Ws, Value)> {
        let mut ws = Ws::connect(node, "/ws/visitor", None).await?;
        ws.send(
            json!({"type":"hello","v":1,"id":id(),"resume":{"token":token,"last_seq":last_seq}}),
        )
        .await?;
        let w = ws
            .expect("welcome or error", WAIT, |v| {
                v["type"] == "welcome" || v["type"] == "error"
            })
            .await?;
        if w["type"] == "error" {
            bail!("resume refused: {w}");
        }
        Ok((ws, w))
    }
}

pub struct Operator {
    pub ws: Ws,
    pub username: String,
    pub cookie: String,
    pub welcome: Value,
}

impl Operator {
    /// Logs in on `login_node` and opens the console on `ws_node` (which may be another node:
    /// sessions live in Redis).
    pub async fn connect(
        login_node: &Node,
        ws_node: &Node,
        username: &str,
        on_duty: bool,
    ) -> anyhow::Result<Operator> {
        let cookie = login_node.login(username).await;
        Self::open(ws_node, username, &cookie, json!({}), on_duty).await
    }

    /// Opens a console socket with an existing session cookie.
    pub async fn open(
        node: &Node,
        username: &str,
        cookie: &str,
        last_seqs: Value,
        on_duty: bool,
    ) -> anyhow::Result<Operator> {
        let mut ws = Ws::connect(node, "/ws/operator", Some(cookie)).await?;
        ws.send(json!({"type":"hello","v":1,"id":id(),"last_seqs":last_seqs}))
            .await?;
        let welcome = ws
            .expect("welcome", WAIT, |v| v["type"] == "welcome")
            .await?;
        let mut op = Operator {
            ws,
            username: username.to_owned(),
            cookie: cookie.to_owned(),
            welcome,
        };
        if on_duty {
            let r = op
                .ws
                .request(json!({"type":"presence","state":"on_duty"}))
                .await?;
            if r["type"] != "ack" {
                bail!("presence refused: {r}");
            }
        }
        Ok(op)
    }

    /// take_next; returns the conversation id it got (after its summary arrived), or the error.
    pub async fn take(&mut self) -> anyhow::Result<Result<String, Value>> {
        let r = self.ws.request(json!({"type":"take_next"})).await?;
        if r["type"] != "ack" {
            return Ok(Err(r));
        }
        let c = self.ws.expect_type("conversation").await?;
        Ok(Ok(c["conversation"]["id"]
            .as_str()
            .context("summary id")?
            .to_owned()))
    }

    /// Takes the next person; a refusal is an error.
    pub async fn take_one(&mut self) -> anyhow::Result<String> {
        self.take()
            .await?
            .map_err(|e| anyhow::anyhow!("take_next: {e}"))
    }

    pub async fn act(
        &mut self,
        ty: &str,
        conversation: &str,
        extra: Value,
    ) -> anyhow::Result<Value> {
        let mut frame = json!({"type":ty,"conversation":conversation});
        if let (Some(m), Some(e)) = (frame.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        self.ws.request(frame).await
    }

    /// Ends and wraps up a conversation (closing it).
    pub async fn close(&mut self, conversation: &str) -> anyhow::Result<()> {
        let r = self.act("end", conversation, json!({})).await?;
        if r["type"] != "ack" {
            bail!("end refused: {r}");
        }
        let r = self
            .act("wrap_up", conversation, json!({"category":"other"}))
            .await?;
        if r["type"] != "ack" {
            bail!("wrap_up refused: {r}");
        }
        Ok(())
    }
}
