//! A real SMTP server on loopback for the alert tests (`smtp_sink.py`: aiosmtpd, installed by
//! `scripts/test.sh`), and Python's standard MIME parser to read what it received.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
const PARSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/parse_mail.py");

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

/// A free port on loopback (bound and released: the sink binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    /// Starts the sink; with `tls` (certificate and key files, PEM) it requires STARTTLS.
    pub fn start(tls: Option<(&Path, &Path)>) -> SmtpSink {
        let dir = std::env::temp_dir().join(format!("tsunagu-smtp-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(SINK).arg(port.to_string()).arg(&dir);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (pip install aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP sink starts (pip install aiosmtpd)"
        );
        SmtpSink { child, port, dir }
    }

    /// The messages received so far, in order.
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        v.sort();
        v
    }

    /// Waits until at least `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<PathBuf> {
        let start = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{n} e-mails arrive (have {})",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The envelope of a received message.
    pub fn envelope(eml: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap()).unwrap()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A message parsed by Python's `email` package: from, to, subject and text decoded.
pub fn parse_mail(eml: &Path) -> Value {
    let out = Command::new("python3")
        .arg(PARSE)
        .arg(eml)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
