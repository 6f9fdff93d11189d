//! The raw relay: the physical floor of the comparison. A websocket server (tokio-tungstenite,
//! one thread) that answers a visitor's first frame with a fixed welcome, pairs the visitor with
//! the next operator round-robin, and forwards every later frame verbatim to that operator: no
//! parsing, no queue, no acknowledgement. Whatever it costs per message is what any websocket
//! relay on this machine must spend.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Operators = Arc<Mutex<(Vec<mpsc::UnboundedSender<Message>>, usize)>>;

const WELCOME: &str = r#"{"type":"welcome","v":1,"conversation":"00000000000000000000000000","token":"relay","state":"queued","resumed":false,"last_seq":0}"#;

pub fn run() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening http://{}", listener.local_addr()?);
        let ops: Operators = Arc::new(Mutex::new((Vec::new(), 0)));
        loop {
            let (stream, _) = listener.accept().await?;
            let ops = Arc::clone(&ops);
            tokio::spawn(async move {
                let _ = conn(stream, ops).await;
            });
        }
    })
}

// The handshake callback's error type is tungstenite's (an HTTP response), not ours.
#[allow(clippy::result_large_err)]
async fn conn(stream: TcpStream, ops: Operators) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, res: Response| {
            path = req.uri().path().to_owned();
            Ok(res)
        },
        Some(config),
    )
    .await?;
    let (mut tx, mut rx) = ws.split();
    if path == "/ws/operator" {
        let (otx, mut orx) = mpsc::unbounded_channel();
        ops.lock().map_err(|_| anyhow::anyhow!("lock"))?.0.push(otx);
        let mut welcomed = false;
        loop {
            tokio::select! {
                m = rx.next() => match m {
                    Some(Ok(Message::Text(_))) if !welcomed => {
                        welcomed = true;
                        tx.send(Message::text(r#"{"type":"welcome","v":1}"#)).await?;
                    }
                    Some(Ok(_)) => {}
                    _ => return Ok(()),
                },
                m = orx.recv() => match m {
                    Some(m) => tx.send(m).await?,
                    None => return Ok(()),
                },
            }
        }
    }
    // A visitor: the first frame is its hello.
    let Some(Ok(_)) = rx.next().await else {
        return Ok(());
    };
    tx.send(Message::text(WELCOME)).await?;
    let op = {
        let mut g = ops.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let (list, next) = &mut *g;
        anyhow::ensure!(!list.is_empty(), "no operator");
        *next = (*next + 1) % list.len();
        list[*next].clone()
    };
    while let Some(Ok(m)) = rx.next().await {
        if m.is_text() {
            let _ = op.send(m);
        }
    }
    Ok(())
}
