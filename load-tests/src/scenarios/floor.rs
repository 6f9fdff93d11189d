//! The physical floor's other half: the loopback TCP round-trip time, no runtime in between.

use std::time::Instant;

use serde_json::{json, Value};

use crate::clients::hist;

/// (3) The physical floor's other half: loopback TCP round-trip time of a 150-byte message
/// (blocking sockets, two threads), so that no runtime sits between the two ends.
pub fn loopback_rtt(count: usize) -> anyhow::Result<Value> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 150];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut h = hist();
    let mut buf = [7u8; 150];
    for _ in 0..count {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        let _ = h.record((t.elapsed().as_nanos() as u64 / 1000).max(1));
    }
    drop(s);
    let _ = echo.join();
    Ok(json!({
        "round_trips": count,
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    }))
}
