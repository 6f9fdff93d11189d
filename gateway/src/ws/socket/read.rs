//! Reading: frames taken out of what the connection delivers (a read goes into a buffer on
//! the stack; only an incomplete frame is kept), checked (masking, reserved bits, control-frame
//! rules, fragments, the message limit from the header before the body is buffered, UTF-8,
//! close codes), and assembled into [`Message`]s. Pings and Close are answered as they come;
//! nothing more is read while what was written is not taken, up to the drain deadline.

use std::future::{poll_fn, Future};
use std::io::Cursor;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::{Error, Message, Partial, Socket};

/// How much one read takes from the connection, into a buffer on the stack. Client frames are
/// 100-250 bytes; a larger one takes several reads.
pub(super) const READ_CHUNK: usize = 4096;

/// The largest control frame payload (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// The next message. Pings are answered (the pong is queued and written when it can be),
    /// and so is a Close. Cancel-safe.
    ///
    /// Reads nothing while something queued is still unwritten because the peer does not
    /// read: what it sends then waits in the kernel's buffers, and TCP holds the peer back,
    /// instead of answers piling up here. If the peer has not taken it all within `drain`,
    /// this fails with [`Error::TooSlow`].
    pub async fn recv(&mut self, drain: std::time::Duration) -> Result<Message, Error> {
        poll_fn(|cx| self.poll_recv(cx, drain)).await
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        drain: std::time::Duration,
    ) -> Poll<Result<Message, Error>> {
        if self.close_received {
            return Poll::Ready(Err(Error::Closed));
        }
        // A pong or a close answer that could not be written at once goes out as soon as it
        // can: its waker is this task's.
        if self.written < self.unsent.len() {
            if let Poll::Ready(Err(e)) = self.poll_write_unsent(cx) {
                return Poll::Ready(Err(e.into()));
            }
        }
        loop {
            // Frames already received are handed out even while behind (a ping among them
            // replaces the pong not yet sent); only reading more waits.
            if let Some(message) = self.next_message(cx)? {
                return Poll::Ready(Ok(message));
            }
            if self.written < self.unsent.len() {
                // Behind: the write's waker is registered; so is the deadline's.
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(drain)));
                ready!(stalled.as_mut().poll(cx));
                return Poll::Ready(Err(Error::TooSlow));
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                self.close_received = true;
                return Poll::Ready(Err(Error::Closed));
            }
            self.received.extend_from_slice(buf.filled());
        }
    }

    /// The next whole message in `received`, if there is one.
    fn next_message(&mut self, cx: &mut Context<'_>) -> Result<Option<Message>, Error> {
        while let Some((header, payload)) = self.next_frame()? {
            match header.opcode {
                OpCode::Control(control) => return self.control(control, &payload, cx).map(Some),
                OpCode::Data(Data::Continue) => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(Error::Protocol(
                            "a continuation frame with nothing to continue",
                        ));
                    };
                    partial.payload.extend_from_slice(&payload);
                    if header.is_final {
                        let Partial { text, payload } = *self.partial.take().expect("partial");
                        return Self::message(text, payload).map(Some);
                    }
                }
                OpCode::Data(data @ (Data::Text | Data::Binary)) => {
                    if self.partial.is_some() {
                        return Err(Error::Protocol("a new message inside a fragmented one"));
                    }
                    let text = data == Data::Text;
                    if header.is_final {
                        return Self::message(text, payload).map(Some);
                    }
                    self.partial = Some(Box::new(Partial { text, payload }));
                }
                OpCode::Data(Data::Reserved(_)) => return Err(Error::Protocol("reserved opcode")),
            }
        }
        Ok(None)
    }

    fn message(text: bool, payload: Vec<u8>) -> Result<Message, Error> {
        if !text {
            return Ok(Message::Binary);
        }
        String::from_utf8(payload)
            .map(Message::Text)
            .map_err(|_| Error::NotUtf8)
    }

    /// Handles a control frame: a ping is answered, a close echoed.
    fn control(
        &mut self,
        control: Control,
        payload: &[u8],
        cx: &mut Context<'_>,
    ) -> Result<Message, Error> {
        match control {
            Control::Ping => {
                self.answer_ping(payload, cx);
                Ok(Message::Ping)
            }
            Control::Pong => Ok(Message::Pong),
            Control::Close => {
                self.close_received = true;
                let code = match payload {
                    [] => None,
                    [_] => return Err(Error::Protocol("a close frame with a one-byte body")),
                    [a, b, reason @ ..] => {
                        if std::str::from_utf8(reason).is_err() {
                            return Err(Error::NotUtf8);
                        }
                        let code = u16::from_be_bytes([*a, *b]);
                        if !valid_close_code(code) {
                            return Err(Error::Protocol("an invalid close code"));
                        }
                        Some(code)
                    }
                };
                if !self.close_sent {
                    // Echo the code (RFC 6455 5.5.1); the connection ends after it.
                    let body = code.map(u16::to_be_bytes);
                    self.queue(
                        OpCode::Control(Control::Close),
                        body.as_ref().map_or(&[][..], |b| &b[..]),
                    );
                    self.close_sent = true;
                    let _ = self.poll_write_unsent(cx);
                }
                Ok(Message::Close(code))
            }
            Control::Reserved(_) => Err(Error::Protocol("reserved opcode")),
        }
    }

    /// Takes the next whole frame out of `received`, unmasked. Checks what a header alone can
    /// tell (size, mask, reserved bits) before the payload is waited for.
    fn next_frame(&mut self) -> Result<Option<(FrameHeader, Vec<u8>)>, Error> {
        if self.received.is_empty() {
            return Ok(None);
        }
        let mut cursor = Cursor::new(&self.received[..]);
        let Some((header, len)) =
            FrameHeader::parse(&mut cursor).map_err(|_| Error::Protocol("a malformed frame"))?
        else {
            return Ok(None);
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Error::Protocol("reserved bits set"));
        }
        let Some(mask) = header.mask else {
            return Err(Error::Protocol("an unmasked client frame"));
        };
        if let OpCode::Control(_) = header.opcode {
            // Refused from the header, before a large body is waited for. A control frame may
            // arrive between a message's fragments and is no part of it: it does not count
            // toward the message's limit.
            if !header.is_final || len > MAX_CONTROL_PAYLOAD {
                return Err(Error::Protocol(
                    "a control frame over 125 bytes or fragmented",
                ));
            }
        } else {
            // Only data frames count toward the message limit: what is assembled so far and
            // this frame.
            let assembled = self.partial.as_ref().map_or(0, |p| p.payload.len());
            if len > self.max_message.saturating_sub(assembled) as u64 {
                return Err(Error::TooBig);
            }
        }
        let start = cursor.position() as usize;
        let end = start + len as usize;
        if self.received.len() < end {
            return Ok(None);
        }
        let mut payload = if end == self.received.len() {
            // The usual case, one frame per read: the buffer becomes the payload.
            let mut all = std::mem::take(&mut self.received);
            all.drain(..start);
            all
        } else {
            let payload = self.received[start..end].to_vec();
            self.received.drain(..end);
            payload
        };
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        Ok(Some((header, payload)))
    }
}

/// Close codes a peer may send (RFC 6455 7.4): 1000-1003, 1007-1011, and 3000-4999.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::testing::{frame, pair, DRAIN};
    use super::*;

    #[tokio::test]
    async fn several_frames_in_one_read_and_one_frame_over_several_reads_all_arrive() {
        let (mut socket, mut client) = pair();
        let mut bytes = frame(true, 1, b"first");
        bytes.extend(frame(true, 1, "二番目".as_bytes()));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("first".into())
        );
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("二番目".into())
        );
        let third = frame(true, 1, &[b'x'; 300]);
        for piece in third.chunks(7) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("x".repeat(300))
        );
    }

    #[tokio::test]
    async fn a_fragmented_message_arrives_whole_with_a_ping_between_its_fragments_answered() {
        let (mut socket, mut client) = pair();
        let mut bytes = frame(false, 1, b"hel");
        bytes.extend(frame(true, 9, b"are you there"));
        bytes.extend(frame(false, 0, b"lo "));
        bytes.extend(frame(true, 0, b"there"));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Ping);
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("hello there".into())
        );
        let mut pong = [0u8; 15];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong[..2], [0x8a, 13]);
        assert_eq!(&pong[2..], b"are you there");
    }

    #[tokio::test]
    async fn protocol_violations_are_refused_with_their_reason() {
        let cases: [(Vec<u8>, &str); 6] = [
            (vec![0x81, 0x02, b'h', b'i'], "an unmasked client frame"),
            (frame(true, 0x41, b"x"), "reserved bits set"),
            (frame(true, 3, b"x"), "a malformed frame"),
            (
                frame(false, 9, b"x"),
                "a control frame over 125 bytes or fragmented",
            ),
            (
                frame(true, 0, b"x"),
                "a continuation frame with nothing to continue",
            ),
            (
                [frame(false, 1, b"a"), frame(true, 1, b"b")].concat(),
                "a new message inside a fragmented one",
            ),
        ];
        for (bytes, why) in cases {
            let (mut socket, mut client) = pair();
            client.write_all(&bytes).await.unwrap();
            match socket.recv(DRAIN).await {
                Err(Error::Protocol(reason)) => assert_eq!(reason, why),
                other => panic!("{why}: got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_from_its_header_before_it_is_buffered() {
        let (mut socket, mut client) = pair();
        let big = frame(true, 1, &[b'x'; 2000]);
        client.write_all(&big[..8]).await.unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::TooBig)));
        // Fragments count together.
        let (mut socket, mut client) = pair();
        let bytes = [frame(false, 1, &[b'x'; 600]), frame(true, 0, &[b'x'; 600])].concat();
        client.write_all(&bytes).await.unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::TooBig)));
    }

    #[tokio::test]
    async fn a_control_frame_between_fragments_does_not_count_toward_the_message_limit() {
        // The limit is 1,024: 1,000 + 24 bytes of data, with a 100-byte ping between them.
        let (mut socket, mut client) = pair();
        let bytes = [
            frame(false, 1, &[b'x'; 1000]),
            frame(true, 9, &[b'p'; 100]),
            frame(true, 0, &[b'y'; 24]),
        ]
        .concat();
        client.write_all(&bytes).await.unwrap();
        assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Ping);
        let whole = "x".repeat(1000) + &"y".repeat(24);
        assert_eq!(socket.recv(DRAIN).await.unwrap(), Message::Text(whole));
        // Data still counts: one byte more is too big.
        let (mut socket, mut client) = pair();
        let bytes = [frame(false, 1, &[b'x'; 1000]), frame(true, 0, &[b'y'; 25])].concat();
        client.write_all(&bytes).await.unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::TooBig)));
    }

    #[tokio::test]
    async fn a_control_frame_announcing_more_than_125_bytes_is_refused_before_its_body() {
        let (mut socket, mut client) = pair();
        let ping = frame(true, 9, &[b'p'; 126]);
        client.write_all(&ping[..8]).await.unwrap();
        let got = tokio::time::timeout(DRAIN, socket.recv(DRAIN))
            .await
            .expect("refused from the header, not waited for");
        assert!(matches!(got, Err(Error::Protocol(_))), "{got:?}");
    }

    #[tokio::test]
    async fn text_that_is_not_utf8_is_refused() {
        let (mut socket, mut client) = pair();
        client
            .write_all(&frame(true, 1, &[0xe3, 0x81]))
            .await
            .unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::NotUtf8)));
    }

    #[tokio::test]
    async fn a_close_from_the_peer_is_echoed_and_ends_reading() {
        let (mut socket, mut client) = pair();
        client
            .write_all(&frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e']))
            .await
            .unwrap();
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Close(Some(1000))
        );
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::Closed)));
        let mut echo = [0u8; 4];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, [0x88, 0x02, 0x03, 0xe8]);
        // Nothing is sent after a Close.
        socket.queue_text("late");
        assert_eq!(socket.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn a_close_with_an_invalid_code_is_a_protocol_violation() {
        let (mut socket, mut client) = pair();
        client
            .write_all(&frame(true, 8, &1005u16.to_be_bytes()))
            .await
            .unwrap();
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::Protocol(_))));
    }

    #[tokio::test]
    async fn the_end_of_the_stream_is_closed() {
        let (mut socket, client) = pair();
        drop(client);
        assert!(matches!(socket.recv(DRAIN).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn a_recv_dropped_halfway_through_a_frame_loses_nothing() {
        let (mut socket, mut client) = pair();
        let bytes = frame(true, 1, b"patience");
        client.write_all(&bytes[..5]).await.unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), socket.recv(DRAIN)).await;
        assert!(waited.is_err(), "half a frame is not a message");
        client.write_all(&bytes[5..]).await.unwrap();
        assert_eq!(
            socket.recv(DRAIN).await.unwrap(),
            Message::Text("patience".into())
        );
    }
}
