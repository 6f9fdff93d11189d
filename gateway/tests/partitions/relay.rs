//! Delay on a client link without netem: a TCP relay between the clients and a node that holds
//! every chunk it reads for a fixed time before writing it on, in order, each way. The bytes
//! then cross the (lossy) veth to the node, so a client sees the delay and the loss together.
//!
//! Not packet-level: a chunk is what one `read` returned, so several packets arriving within
//! the delay are delayed as one (their spacing is kept, their order too). Its queues are
//! bounded; the relay stops with its owner (the accept task is aborted on drop, and each
//! connection ends when either side closes).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction (each at most 16 KiB): far more than a chat needs.
const IN_FLIGHT: usize = 256;

pub struct DelayRelay {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DelayRelay {
    /// Listens on 127.0.0.1 (a free port) and relays each connection to `target`, delaying
    /// every chunk by `one_way` in each direction.
    pub async fn start(target: SocketAddr, one_way: Duration) -> DelayRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay binds");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, one_way), pipe(sr, cw, one_way));
                });
            }
        });
        DelayRelay { addr, task }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` lets the writer finish what is in flight, then shut down.
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
