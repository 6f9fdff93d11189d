//! TLS termination: handshakes, the reloaded certificate, headers and cookies over HTTPS.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

struct Cert {
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

/// The app serving TLS with a certificate written to files in a fresh directory.
struct TlsApp {
    app: TestApp,
    dir: std::path::PathBuf,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    port: u16,
}

impl TlsApp {
    /// Writes `first` to `cert.pem` and `key.pem` in a fresh directory and starts the app
    /// serving TLS from them, `tune` setting the rest.
    async fn start(first: &Cert, tune: impl FnOnce(&mut tsunagu::config::Settings)) -> TlsApp {
        let dir = std::env::temp_dir().join(format!("tsunagu-tls-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, &first.pem).unwrap();
        std::fs::write(&key_path, &first.key_pem).unwrap();
        let (c, k) = (
            cert_path.display().to_string(),
            key_path.display().to_string(),
        );
        let app = spawn_app_with(move |s| {
            s.server.tls_cert_file = Some(c);
            s.server.tls_key_file = Some(k);
            tune(s);
        })
        .await;
        let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
        TlsApp {
            app,
            dir,
            cert_path,
            key_path,
            port,
        }
    }
}

fn cert(name: &str) -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let c = params.self_signed(&key).unwrap();
    Cert {
        pem: c.pem(),
        key_pem: key.serialize_pem(),
        der: c.der().clone(),
    }
}

/// A TLS client that trusts exactly `trusted`, returning the certificate the server presented.
async fn handshake(port: u16, trusted: &[&Cert]) -> Result<CertificateDer<'static>, String> {
    tsunagu::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.der.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tls.read_to_string(&mut body).await.ok();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.to_ascii_lowercase()
            .contains("strict-transport-security"),
        "HSTS on TLS"
    );
    Ok(presented.into_owned())
}

#[tokio::test]
async fn the_gateway_serves_tls_and_picks_up_a_renewed_certificate_without_dropping_connections() {
    let first = cert("first");
    let TlsApp {
        app,
        dir,
        cert_path,
        key_path,
        port,
    } = TlsApp::start(&first, |s| s.server.tls_reload_poll_ms = 100).await;
    assert!(
        app.state.settings.auth.cookie_secure,
        "cookies are Secure over TLS"
    );
    assert_eq!(app.state.session_cookie(), "__Host-tsunagu_session");

    assert_eq!(handshake(port, &[&first]).await.unwrap(), first.der);
    // A connection opened before the renewal stays up through it.
    tsunagu::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(first.der.clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut long_lived = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();

    // Renewal: new files on disk; the gateway notices without a restart.
    let second = cert("second");
    std::fs::write(&key_path, &second.key_pem).unwrap();
    std::fs::write(&cert_path, &second.pem).unwrap();
    let mut presented = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = handshake(port, &[&first, &second]).await {
            if c == second.der {
                presented = Some(c);
                break;
            }
        }
    }
    assert_eq!(
        presented,
        Some(second.der.clone()),
        "new handshakes get the renewed certificate"
    );
    assert!(
        handshake(port, &[&first]).await.is_err(),
        "the old certificate is no longer served"
    );

    long_lived
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    long_lived.read_to_string(&mut body).await.ok();
    assert!(
        body.starts_with("HTTP/1.1 200"),
        "the earlier connection still works: {body}"
    );
    app.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_missing_certificate_is_a_startup_error() {
    let mut settings = tsunagu::config::Settings::for_tests();
    settings.server.tls_cert_file = Some("/nonexistent/cert.pem".into());
    settings.server.tls_key_file = Some("/nonexistent/key.pem".into());
    assert!(tsunagu::Application::build(settings).await.is_err());
}

#[tokio::test]
async fn a_tls_connection_that_never_finishes_its_handshake_is_closed_after_the_header_timeout() {
    let c = cert("stalled");
    let TlsApp { app, dir, port, .. } =
        TlsApp::start(&c, |s| s.server.header_read_timeout_ms = 300).await;
    // Half a ClientHello's record header, then nothing.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stalled.write_all(&[0x16, 0x03]).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled handshake is still open");
    // Others still get in.
    assert_eq!(handshake(port, &[&c]).await.unwrap(), c.der);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
