//! Pages, health, metrics, login and first-run setup over HTTP.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_and_metrics_exist_from_the_start() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let r: Value = app.get_json("/readyz").await;
    assert_eq!(r["status"], "ready");

    let _v = app.visitor("ja").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "tsunagu_queue_length 1",
        "tsunagu_queue_longest_wait_seconds",
        "tsunagu_conversations{state=\"queued\"} 1",
        "tsunagu_operators{state=\"on_duty\"}",
        "tsunagu_conversations_started_total{channel=\"web\"} 1",
        "tsunagu_wait_seconds_bucket",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn readiness_turns_unavailable_during_shutdown() {
    let app = spawn_app().await;
    app.state.shutdown.cancel();
    // The listener may already be closed; if it answers, it must not say ready.
    if let Ok(r) = app.http().get(format!("{}/readyz", app.base)).send().await {
        assert_eq!(r.status(), 503);
    }
}

#[tokio::test]
async fn a_stop_signal_makes_the_node_unready_while_it_goes_on_serving_until_the_delay_ends() {
    let app = spawn_app_with(|s| s.server.shutdown_delay_ms = 600_000).await;
    let mut before = app.visitor("ja").await;
    let (again, second_signal) = tokio::sync::oneshot::channel::<()>();
    let state = std::sync::Arc::clone(&app.state);
    let stopping = tokio::spawn(async move {
        tsunagu::startup::stop(&state, async {
            let _ = second_signal.await;
        })
        .await
    });
    while !app.state.draining.is_cancelled() {
        tokio::task::yield_now().await;
    }
    // Unready for the load balancer; everything else as before, new sockets included.
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "shutting_down");
    assert_eq!(app.get("/healthz").await.status(), 200);
    let mut during = app.visitor("en").await;
    for v in [&mut before, &mut during] {
        v.client.send(json!({"type":"ping","id":id()})).await;
        v.client.expect_type("pong").await;
    }
    assert!(!app.state.shutdown.is_cancelled());
    // A second signal ends the delay: every socket is closed with 1001.
    again.send(()).unwrap();
    stopping.await.unwrap();
    assert!(app.state.shutdown.is_cancelled());
    assert_eq!(before.client.expect_close().await, Some(1001));
    assert_eq!(during.client.expect_close().await, Some(1001));
}

#[tokio::test]
async fn every_page_is_served_with_a_strict_content_security_policy() {
    let app =
        spawn_app_with(|s| s.server.allowed_origins = vec!["https://npo.example".into()]).await;
    for path in [
        "/",
        "/widget/",
        "/widget/demo.html",
        "/widget/tsunagu-widget.js",
        "/console/",
        "/coordinator/",
        "/setup",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        if path.starts_with("/widget/") {
            assert!(
                csp.contains("frame-ancestors 'self' https://npo.example"),
                "{path}: {csp}"
            );
        } else {
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        }
    }
    let r = app.get("/console/nope.js").await;
    assert_eq!(r.status(), 404);
    let r: Value = app.get_json("/api/widget-config").await;
    assert!(r["quick_exit_url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    app.stop().await;
}

#[tokio::test]
async fn login_sets_an_httponly_strict_cookie_and_logout_revokes_it() {
    let app = spawn_app().await;
    app.add_sakura().await;
    let http = app.http();
    let login = |password: &'static str, origin: Option<String>| {
        let mut req = http
            .post(format!("{}/api/login", app.base))
            .json(&json!({"username":"sakura","password":password}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let r = login("wrong password!", Some(app.base.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = login("long enough password", Some("https://evil.example".into()))
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-site login refused");
    let r = login("long enough password", None).await.unwrap();
    assert_eq!(r.status(), 403, "no Origin, no login");

    let r = login("long enough password", Some(app.base.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Max-Age="), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["role"], "operator");
    assert!(me.get("password_hash").is_none());

    let r = app.get_as(&cookie, "/api/me").await;
    assert_eq!(r.status(), 200);
    let r = app.get_as(&cookie, "/api/directory").await;
    let entries: Value = r.json().await.unwrap();
    assert!(entries
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["phone"] == "0120-279-338"));

    let r = app
        .request_as(reqwest::Method::POST, &cookie, "/api/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app.get_as(&cookie, "/api/me").await;
    assert_eq!(r.status(), 401);
    let r = app.get("/api/phrases").await;
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn first_run_setup_creates_one_admin_with_the_printed_code() {
    let app = spawn_app().await;
    let code = app
        .state
        .accounts
        .pending_setup_code()
        .expect("a code on first run");
    let http = app.http();
    let setup = |code: String, username: &'static str| {
        http.post(format!("{}/api/setup", app.base))
            .header("origin", &app.base)
            .json(&json!({"code":code,"username":username,"display_name":"Admin","password":"long enough password"}))
            .send()
    };
    assert_eq!(
        setup("WRONG-CODE1".into(), "admin").await.unwrap().status(),
        403
    );
    assert_eq!(setup(code.clone(), "admin").await.unwrap().status(), 200);
    assert_eq!(
        setup(code, "admin2").await.unwrap().status(),
        403,
        "the code works once"
    );
    let (_, _token) = app
        .state
        .accounts
        .login("admin", "long enough password")
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_coordinator_stream_sends_live_statistics() {
    let app = spawn_app().await;
    let coord = app.coordinator().await;
    let _v = app.visitor("ja").await;
    let mut r = app.get_as(&coord, "/api/dashboard/stream").await;
    assert_eq!(r.status(), 200);
    let mut body = String::new();
    while !body.contains("\n\n") {
        let chunk = tokio::time::timeout(WAIT, r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(body.contains("event: stats"), "{body}");
    let data = body.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let d: Value = serde_json::from_str(data).unwrap();
    assert_eq!(d["waiting"], 1);
    app.stop().await;
}

/// One GET written by hand over TCP, so that no client library normalises or re-encodes the
/// path; returns the status code and at most the first 64 KiB of the body.
async fn raw_get(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let read = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let mut body = Vec::new();
        (&mut tcp)
            .take(64 * 1024)
            .read_to_end(&mut body)
            .await
            .unwrap();
        (String::from_utf8_lossy(&head).into_owned(), body)
    };
    let (head, body) = tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("{path} not answered in time (a large file being read?)"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (status, body)
}

#[tokio::test]
async fn no_page_path_reaches_a_file_outside_the_page_folders_encoded_or_not() {
    let app = spawn_app().await;
    // The real files are served through the same hand-written request, nested ones too.
    for path in [
        "/widget/tsunagu-widget.js",
        "/widget/i18n/ja.json",
        "/static/landing.css",
    ] {
        assert_eq!(raw_get(&app, path).await.0, 200, "{path}");
    }
    // Targets outside every folder whose last element is a symlink (what rust-embed's debug
    // mode followed): /etc/os-release on most systems, /proc/self/exe (this test's binary,
    // hundreds of MB: read whole, it is not answered in time) on every Linux.
    let up = "../".repeat(12);
    let up_encoded = "..%2f".repeat(12);
    let mut paths = Vec::new();
    for prefix in ["/widget/", "/console/", "/static/"] {
        for target in ["etc/os-release", "proc/self/exe"] {
            let encoded = target.replace('/', "%2f");
            paths.extend([
                format!("{prefix}{up}{target}"),
                format!("{prefix}{up_encoded}{encoded}"),
                format!("{prefix}{}{encoded}", "%2e%2e%2f".repeat(12)),
                format!(
                    "{prefix}{}{}",
                    "..%5c".repeat(12),
                    target.replace('/', "%5c")
                ),
                format!("{prefix}/{target}"),
                format!("{prefix}%2f{encoded}"),
                format!("{prefix}i18n/{up}{target}"),
            ]);
        }
        paths.extend([
            format!("{prefix}./chat.html"),
            format!("{prefix}chat.html%00.js"),
            format!("{prefix}..%2fCargo.toml"),
            format!("{prefix}..%2f..%2fCargo.toml"),
        ]);
    }
    for path in &paths {
        let (status, body) = raw_get(&app, path).await;
        assert_eq!(status, 404, "{path} answered with {} bytes", body.len());
    }
    app.stop().await;
}
