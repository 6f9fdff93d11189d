//! Scenario (d), reconnect storm (and (f)'s killed node in Redis mode): every person's connection
//! dropped at once, all resume; time to resume, messages lost or duplicated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{ms, on_duty, progress, Size};
use crate::clients::{self, chat_frame, hist, num_field, welcome_ids, Shared};
use crate::frames;
use crate::net::{str_field, Sock};
use crate::servers::{Bins, Server, Target};

/// One person of the reconnect storm: writes on a schedule, keeps what is not acknowledged,
/// and after the storm resumes with its token and last seq and sends those again (same ids).
struct StormPerson {
    i: usize,
    /// The node of its current socket (0 unless Redis mode).
    node: usize,
    token: String,
    sock: Option<Sock>,
    last_seq: u64,
    pending: Vec<(String, String)>,
    created: Vec<String>,
    dup_seqs: u64,
    gaps: u64,
    resumed_us: Option<u64>,
    /// Reconnections after the server closed a socket (besides the storm's own).
    reconnects: u64,
}

impl StormPerson {
    fn on_frame(&mut self, t: &str) {
        if t.starts_with(r#"{"type":"ack""#) {
            if let Some(cid) = str_field(t, "id") {
                self.pending.retain(|(p, _)| p != cid);
            }
        } else if t.starts_with(r#"{"type":"event""#) {
            if let Some(seq) = num_field(t, "seq") {
                if seq <= self.last_seq {
                    self.dup_seqs += 1;
                } else {
                    if seq != self.last_seq + 1 {
                        self.gaps += 1;
                    }
                    self.last_seq = seq;
                }
            }
        }
    }

    async fn resume(&mut self, server: &Server, origin: Instant) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.node = server.visitor_node(self.i);
            let attempt = async {
                let mut sock = clients::visitor_socket(server, self.i).await?;
                let hello = frames::hello_resume(frames::new_id(), &self.token, self.last_seq);
                sock.send(&hello).await?;
                sock.until("\"welcome\"").await?;
                anyhow::Ok(sock)
            };
            match attempt.await {
                Ok(mut sock) => {
                    self.resumed_us = Some(origin.elapsed().as_micros() as u64);
                    for (_, frame) in &self.pending {
                        sock.send(frame).await?;
                    }
                    self.sock = Some(sock);
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// (d) Reconnect storm: `storm_sessions` people in conversations, writing; then every person's
/// connection drops at once (RST, no close frame) and all reconnect and resume together.
/// Time until all have resumed; messages lost or duplicated (must be zero).
///
/// With the memory store, killing the gateway process loses every conversation by design, so
/// on a single node the storm is every connection dropping at once (a network blip) while the
/// process lives. In Redis mode (scenario (f), `gateway-redis`) the storm is a killed node:
/// people spread over every node, operators on the others, node 0 killed with SIGKILL; its
/// people reconnect to the surviving nodes and resume there; nobody else reconnects.
pub async fn storm(bins: &Bins, target: Target, size: &Size) -> anyhow::Result<Value> {
    let n = size.storm_sessions;
    let ops_n = size.storm_operators;
    let capacity = (n.div_ceil(ops_n) + 2) as u32;
    let kill_node = target == Target::GatewayRedis;
    let server = Arc::new(Server::start(target, bins, ops_n, capacity, &[]).await?);
    let origin = Instant::now();
    let sh = Shared::new(origin, true);
    let (stop_tx, stop) = watch::channel(false);
    let ops = on_duty(&server, ops_n, &sh, &stop).await?;
    progress(&format!("storm: opening {n} conversations"));
    let opened = clients::visitors(&server, 0..n, true, 64).await?;
    progress(&format!(
        "storm: {n} conversations, gateway RSS {:.0} MB",
        server.rss() as f64 / 1e6
    ));
    let (storm_tx, storm_rx) = watch::channel(false);
    let (quiet_tx, quiet_rx) = watch::channel(false);
    let interval = Duration::from_secs_f64(n as f64 / size.storm_rate);
    let write_start = origin.elapsed() + Duration::from_millis(200);
    let written = Arc::new(AtomicU64::new(0));
    let mut people = Vec::new();
    for (k, person) in opened.into_iter().enumerate() {
        let (token, _) = welcome_ids(&person.welcome);
        let server = Arc::clone(&server);
        let (mut storm_rx, mut quiet_rx, mut stop) =
            (storm_rx.clone(), quiet_rx.clone(), stop.clone());
        let offset = interval.mul_f64(k as f64 / n as f64);
        let written = Arc::clone(&written);
        people.push(tokio::spawn(async move {
            let mut p = StormPerson {
                i: k,
                node: server.visitor_node(k),
                token,
                sock: Some(person.sock),
                last_seq: person.last_seq,
                pending: Vec::new(),
                created: Vec::new(),
                dup_seqs: 0,
                gaps: 0,
                resumed_us: None,
                reconnects: 0,
            };
            let mut next = write_start + offset;
            let mut writing = true;
            loop {
                let deadline = tokio::time::Instant::from_std(origin + next);
                let sock = p.sock.as_mut().context("no socket")?;
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = quiet_rx.changed() => writing = false,
                    _ = storm_rx.changed() => {
                        if let Some(s) = p.sock.take() {
                            s.abort();
                        }
                        p.resume(&server, origin).await?;
                    }
                    _ = tokio::time::sleep_until(deadline), if writing => {
                        let cid = frames::new_id();
                        let frame = chat_frame(cid, next.as_micros() as u64);
                        let cid = cid.to_string();
                        p.pending.push((cid.clone(), frame.clone()));
                        p.created.push(cid);
                        written.fetch_add(1, Ordering::Relaxed);
                        // A failed send is retried after the resume (it stays pending).
                        let _ = sock.send(&frame).await;
                        next += interval;
                    }
                    m = sock.recv() => match m {
                        Ok(Some(t)) => p.on_frame(&t),
                        // Closed by the server (superseded, too slow, …) or its node killed:
                        // reconnect and resume at once, as the widget does.
                        _ => {
                            p.sock = None;
                            if !(kill_node && p.node == 0) {
                                p.reconnects += 1;
                            }
                            p.resume(&server, origin).await?;
                        }
                    },
                }
            }
            anyhow::Ok(p)
        }));
    }
    // Write for a while, drop everything at once, keep writing, then go quiet and drain.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = server.cpu();
    let storm_at = origin.elapsed().as_micros() as u64;
    // Who has to resume: everyone, or (Redis mode) the people of the node killed, whose
    // sockets the kernel resets.
    let expected: Vec<bool> = (0..n)
        .map(|k| !kill_node || server.visitor_node(k) == 0)
        .collect();
    let moved = expected.iter().filter(|e| **e).count();
    if kill_node {
        progress(&format!(
            "storm: kill -9 of node 0 of {} ({moved} people on it)",
            server.nodes()
        ));
        server.kill_node(0)?;
    } else {
        progress("storm: dropping every connection");
        let _ = storm_tx.send(true);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = quiet_tx.send(true);
    // Drain: until operators received every message written, at most 60 s.
    let drain_until = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let distinct = sh
            .ids
            .as_ref()
            .and_then(|m| m.lock().ok().map(|m| m.len()))
            .unwrap_or(0) as u64;
        if distinct >= written.load(Ordering::Relaxed) || Instant::now() > drain_until {
            break;
        }
    }
    // A little longer, so that late duplicates would be seen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_cpu = server.cpu() - cpu0;
    let _ = stop_tx.send(true);
    let mut created = Vec::new();
    let (mut dup_seqs, mut gaps, mut pending, mut failed, mut reconnects) = (0, 0, 0, 0, 0);
    let mut resumed = hist();
    let mut last_resumed = 0;
    let mut first_error: Option<String> = None;
    for (p, expected) in people.into_iter().zip(expected) {
        match p.await {
            Ok(Ok(p)) => {
                dup_seqs += p.dup_seqs;
                gaps += p.gaps;
                pending += p.pending.len();
                reconnects += p.reconnects;
                match p.resumed_us {
                    Some(r) if expected && r >= storm_at => {
                        let _ = resumed.record(r.saturating_sub(storm_at).max(1));
                        last_resumed = last_resumed.max(r.saturating_sub(storm_at));
                    }
                    _ if expected => {
                        failed += 1;
                        first_error.get_or_insert_with(|| {
                            format!(
                                "person {} never resumed after the storm (last resume at {:?} µs, storm at {storm_at} µs, node {}, {} reconnects)",
                                p.i, p.resumed_us, p.node, p.reconnects
                            )
                        });
                    }
                    _ => {}
                }
                created.extend(p.created);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e}"));
            }
        }
    }
    for o in ops {
        let _ = o.await;
    }
    let ids: HashMap<String, u32> = sh
        .ids
        .as_ref()
        .and_then(|m| m.lock().ok().map(|m| m.clone()))
        .unwrap_or_default();
    let lost = created.iter().filter(|c| !ids.contains_key(*c)).count();
    let duplicated: u64 = ids.values().map(|&c| u64::from(c.saturating_sub(1))).sum();
    let nodes = server.nodes();
    if let Ok(s) = Arc::try_unwrap(server) {
        s.stop().await;
    }
    progress(&format!(
        "storm: all {} resumed within {:.0} ms; {} messages, {lost} lost, {duplicated} duplicated, {dup_seqs} replayed twice to people, {failed} failed",
        moved.saturating_sub(failed),
        ms(last_resumed),
        created.len()
    ));
    let mode = if kill_node {
        format!(
            "Redis, {nodes} nodes, node 0 killed (kill -9) under load; its people resumed on the others"
        )
    } else {
        "single node, every connection dropped at once (memory store)".to_owned()
    };
    Ok(json!({
        "sessions": n,
        "operators": ops_n,
        "nodes": nodes,
        "moved": moved,
        "rate": size.storm_rate,
        "messages": created.len(),
        "resumed": moved.saturating_sub(failed),
        "failed": failed,
        "all_resumed_ms": ms(last_resumed),
        "resume_p50_ms": ms(resumed.value_at_quantile(0.5)),
        "resume_p99_ms": ms(resumed.value_at_quantile(0.99)),
        "lost": lost,
        "duplicated": duplicated,
        "visitor_duplicate_seqs": dup_seqs,
        "visitor_seq_gaps": gaps,
        "unacknowledged_at_end": pending,
        "server_closed_reconnects": reconnects,
        "server_cpu_s": server_cpu.as_secs_f64(),
        "mode": mode,
        "first_error": first_error,
    }))
}
