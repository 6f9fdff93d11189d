//! Writing: frames queued (text serialised in place, pings, Close) and kept only until they
//! are written, then the buffer is given back; a ping's pong replaces one not yet sent, so a
//! peer that pings and does not read holds at most one pong here.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::{Error, Socket};

/// Queued outbound bytes past which [`Socket::needs_flush`] asks for a write before more are
/// queued: a batch (a long catch-up, say) is written in pieces of about this size.
const WRITE_CHUNK: usize = 16 * 1024;

/// Bytes reserved for an empty send buffer when a frame is serialised into it: a chat event.
const TYPICAL_FRAME: usize = 384;

/// Header bytes left before a payload serialised in place: enough for one under 64 KiB.
const HEADER_ROOM: usize = 4;

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// Queues a text frame, written by the next [`Socket::flush`]. Nothing is queued after a
    /// Close.
    pub fn queue_text(&mut self, text: &str) {
        if !self.close_sent {
            self.queue(OpCode::Data(Data::Text), text.as_bytes());
        }
    }

    /// Queues a text frame whose payload `write` appends straight to the send buffer, so a
    /// frame is serialised once, in place, rather than into a `String` that is then copied.
    /// `write` must append UTF-8 (serde_json does); if it fails, nothing is queued.
    pub fn queue_text_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.close_sent {
            return Ok(());
        }
        self.pong_at = None;
        if self.unsent.is_empty() {
            self.unsent.reserve(TYPICAL_FRAME);
        }
        // Room for the header of a payload under 64 KiB; moved or widened once the length is known.
        let start = self.unsent.len();
        self.unsent.resize(start + HEADER_ROOM, 0);
        if let Err(e) = write(&mut self.unsent) {
            self.unsent.truncate(start);
            return Err(e);
        }
        let len = self.unsent.len() - start - HEADER_ROOM;
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let mut head = [0u8; 14];
        let mut rest = &mut head[..];
        header
            .format(len as u64, &mut rest)
            .expect("a frame header fits in 14 bytes");
        let head_len = 14 - rest.len();
        let head = &head[..head_len];
        if head_len <= HEADER_ROOM {
            let payload = start + HEADER_ROOM;
            self.unsent.copy_within(payload.., start + head_len);
            self.unsent.truncate(start + head_len + len);
            self.unsent[start..start + head_len].copy_from_slice(head);
        } else {
            self.unsent
                .splice(start..start + HEADER_ROOM, head.iter().copied());
        }
        Ok(())
    }

    /// Queues a ping.
    pub fn queue_ping(&mut self) {
        if !self.close_sent {
            self.queue(OpCode::Control(Control::Ping), &[]);
        }
    }

    /// Queues a Close frame with `code` and `reason` (cut to fit a control frame); nothing
    /// more is sent after it.
    pub fn queue_close(&mut self, code: u16, reason: &str) {
        if self.close_sent {
            return;
        }
        let mut body = code.to_be_bytes().to_vec();
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        body.extend_from_slice(&reason.as_bytes()[..cut]);
        self.queue(OpCode::Control(Control::Close), &body);
        self.close_sent = true;
    }

    /// Queues the answer to a ping (unless a Close was sent) and writes what it can at once.
    /// A pong queued earlier that has not started going out is replaced by this one.
    pub(super) fn answer_ping(&mut self, payload: &[u8], cx: &mut Context<'_>) {
        if !self.close_sent {
            if let Some(at) = self.pong_at.take() {
                // The previous pong has not started going out: this one replaces it.
                self.unsent.truncate(at as usize);
            }
            let at = u32::try_from(self.unsent.len()).ok();
            self.queue(OpCode::Control(Control::Pong), payload);
            self.pong_at = at;
            let _ = self.poll_write_unsent(cx);
        }
    }

    pub(super) fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        // Whatever follows a pending pong pins it in place.
        self.pong_at = None;
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        let len = payload.len() as u64;
        if self.unsent.is_empty() {
            self.unsent.reserve_exact(header.len(len) + payload.len());
        }
        header
            .format(len, &mut self.unsent)
            .expect("writing to a Vec cannot fail");
        self.unsent.extend_from_slice(payload);
    }

    /// True when enough is queued that it should be written before more is queued.
    pub fn needs_flush(&self) -> bool {
        self.unsent.len() - self.written >= WRITE_CHUNK
    }

    /// Writes everything queued. Cancel-safe: what was written stays written.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| {
            ready!(self.poll_write_unsent(cx))?;
            Poll::Ready(ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(Error::from))
        })
        .await
    }

    pub(super) fn poll_write_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.unsent.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.unsent[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            // A pong partly written can no longer be replaced.
            if self.pong_at.is_some_and(|at| (at as usize) < self.written) {
                self.pong_at = None;
            }
        }
        // Written: give the buffer back rather than keep it for the socket's life.
        self.unsent = Vec::new();
        self.written = 0;
        self.pong_at = None;
        self.stalled = None;
        Poll::Ready(Ok(()))
    }

    /// Bytes queued and not yet written.
    pub fn unwritten(&self) -> usize {
        self.unsent.len() - self.written
    }

    /// Ends the connection's sending side (after a Close was flushed).
    pub async fn shutdown(&mut self) {
        let _ = poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::super::read::READ_CHUNK;
    use super::super::testing::{frame, pair, DRAIN};
    use super::super::Message;
    use super::*;

    #[test]
    fn a_frame_serialised_in_place_is_byte_for_byte_the_frame_queued_from_a_string() {
        // Around each header size: 7-bit lengths, 16-bit from 126, 64-bit from 65,536.
        for len in [0, 1, 125, 126, 127, 300, 65_535, 65_536, 70_000] {
            let text = "あ".repeat(len / 3) + &"x".repeat(len % 3);
            let (mut copied, _c1) = pair();
            let (mut in_place, _c2) = pair();
            for socket in [&mut copied, &mut in_place] {
                socket.queue_text("before");
            }
            copied.queue_text(&text);
            in_place
                .queue_text_with(|buf| {
                    buf.extend_from_slice(text.as_bytes());
                    Ok::<_, ()>(())
                })
                .unwrap();
            for socket in [&mut copied, &mut in_place] {
                socket.queue_text("after");
            }
            assert_eq!(copied.unsent, in_place.unsent, "payload of {len} bytes");
        }
    }

    #[test]
    fn a_frame_whose_serialiser_fails_leaves_nothing_queued() {
        let (mut socket, _client) = pair();
        socket.queue_text("kept");
        let before = socket.unsent.clone();
        let failed = socket.queue_text_with(|buf| {
            buf.extend_from_slice(b"half a fra");
            Err("no")
        });
        assert_eq!(failed, Err("no"));
        assert_eq!(socket.unsent, before);
    }

    #[tokio::test]
    async fn a_peer_that_pings_and_never_reads_has_one_pong_queued_at_most_and_is_dropped_after_the_drain_deadline(
    ) {
        // 512 bytes each way: the server's pongs fill its direction after four.
        let (server, client) = duplex(512);
        let mut socket = Socket::new(server, 1024);
        let (_unread, mut client) = tokio::io::split(client);
        let pinger = tokio::spawn(async move {
            let ping = frame(true, 9, &[b'p'; 125]);
            let mut sent = 0u32;
            while sent < 100_000 && client.write_all(&ping).await.is_ok() {
                sent += 1;
            }
        });
        let drain = std::time::Duration::from_millis(200);
        let (mut answered, mut most_unwritten, mut most_held) = (0, 0, 0);
        let end = loop {
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv(drain))
                .await
                .expect("recv returns within the drain deadline");
            most_unwritten = most_unwritten.max(socket.unwritten());
            most_held = most_held.max(socket.buffered_capacity());
            match got {
                Ok(Message::Ping) if answered < 10_000 => answered += 1,
                other => break other,
            }
        };
        pinger.abort();
        assert!(matches!(end, Err(Error::TooSlow)), "ended with {end:?}");
        // At most the rest of a pong partly written and the latest pong (127 bytes each)
        // wait; what was read and not yet handled is one read.
        assert!(most_unwritten <= 2 * 127, "{most_unwritten} bytes queued");
        assert!(
            most_held <= 2 * 127 + 2 * READ_CHUNK,
            "{most_held} bytes held"
        );
        // Reading stopped once the pongs backed up: four fit the peer's buffer, and one read
        // (a few pings) was being handled.
        assert!(
            answered < 4 + READ_CHUNK / 131 + 2,
            "{answered} pings answered"
        );
    }

    #[tokio::test]
    async fn pings_handled_while_the_peer_is_not_reading_are_answered_by_the_latest_pong_only() {
        // Three pings arrived before the socket started (as after the upgrade); the peer's
        // buffer takes 8 bytes, so the first pong goes out in part and the rest must wait.
        let (server, mut client) = duplex(8);
        let pings = [b'1', b'2', b'3']
            .map(|n| frame(true, 9, &[n; 20]))
            .concat();
        let mut socket = Socket::with_received(server, pings, 1024);
        for _ in 0..3 {
            assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Ping);
        }
        assert_eq!(
            socket.unwritten(),
            22 - 8 + 22,
            "the rest of pong 1, then pong 3"
        );
        let mut got = vec![0u8; 44];
        let (flushed, read) = tokio::join!(socket.flush(), client.read_exact(&mut got));
        flushed.unwrap();
        read.unwrap();
        let mut expected = vec![0x8a, 20];
        expected.extend([b'1'; 20]);
        expected.extend([0x8a, 20]);
        expected.extend([b'3'; 20]);
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_close_sent_carries_its_code_and_reason_and_ends_sending() {
        let (mut socket, mut client) = pair();
        socket.queue_close(4011, "too slow");
        socket.queue_text("after");
        socket.flush().await.unwrap();
        socket.shutdown().await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got[..4], [0x88, 10, 0x0f, 0xab]);
        assert_eq!(&got[4..], b"too slow");
    }
}
