//! Abuse resistance: rate limits (governor) and connection caps, keyed by client address.
//!
//! Addresses are never stored or logged: each is reduced to a keyed hash (SHA-256 with a random
//! per-process salt, truncated to 64 bits) the moment it is read, and only that key lives in the
//! limiters. Keyed limiters shed keys that have been quiet (see [`Limits::shed`], called from a
//! background task), so memory stays bounded under a flood of addresses.
//!
//! What is limited, and what the limited client is told:
//! - new conversations per address (a visitor's `hello` with `start`): error `rate_limited`
//!   with `retry_after_ms`, the socket stays open so the widget can try again;
//! - messages per connection (visitors and, with a larger allowance, operators): error
//!   `rate_limited` with `retry_after_ms` for the refused frame; the conversation continues (an
//!   honest burst fits in the burst allowance), but a socket refused `ws::MAX_ERRORS` times is
//!   closed;
//! - webhook requests per source address: HTTP 429 with `Retry-After`;
//! - login attempts per address: HTTP 429 with `Retry-After` (the lockout per username and
//!   address is in [`crate::lockout`]);
//! - open websockets per address: HTTP 429 before the upgrade;
//! - open TCP connections per address (any kind, before a byte is read): 429 and closed at
//!   accept (see [`crate::server`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A client address reduced to an anonymous key.
pub type AddrKey = u64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// New conversations one address may start per hour (burst: the same number).
    pub conversations_per_hour: u32,
    /// Messages per connection: sustained per minute, and the burst allowed on top.
    pub messages_per_minute: u32,
    pub message_burst: u32,
    /// The same for an operator's console, larger: one operator writes in several
    /// conversations at once, and pastes prepared texts.
    pub operator_messages_per_minute: u32,
    pub operator_message_burst: u32,
    /// Webhook requests per source address per second, and burst.
    pub webhooks_per_second: u32,
    pub webhook_burst: u32,
    /// Login attempts per address per minute, and burst.
    pub logins_per_minute: u32,
    pub login_burst: u32,
    /// Requests to alert acknowledgement links (`/api/alerts/ack/{token}`, no sign-in) per
    /// address per minute, and burst.
    pub ack_links_per_minute: u32,
    pub ack_link_burst: u32,
    /// Open websockets per address (visitors behind one school or office NAT share one).
    pub connections_per_address: u32,
    /// Open TCP connections per address, of any kind (a browser holds a few kept-alive
    /// connections beside its websocket). Not applied to `trusted_proxies`.
    pub tcp_connections_per_address: u32,
    /// IPv6 addresses count as one address per network of this prefix length (a /64 is what
    /// one subscriber gets; each of its 2^64 addresses must not be a fresh allowance). 128:
    /// each address alone. IPv4 addresses count alone.
    pub ipv6_prefix_len: u8,
    /// Proxies whose `X-Forwarded-For` is believed (exact addresses). Empty: the peer address
    /// is the client address.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            conversations_per_hour: 30,
            messages_per_minute: 60,
            message_burst: 20,
            operator_messages_per_minute: 240,
            operator_message_burst: 60,
            webhooks_per_second: 100,
            webhook_burst: 200,
            logins_per_minute: 10,
            login_burst: 10,
            ack_links_per_minute: 20,
            ack_link_burst: 10,
            connections_per_address: 100,
            // Each of 100 visitors behind one NAT may hold its websocket and a kept-alive page
            // connection or two; idle ones close after `server.header_read_timeout_ms`.
            tcp_connections_per_address: 300,
            ipv6_prefix_len: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    pub fn millis(self) -> u64 {
        self.0.as_millis().min(u128::from(u64::MAX)) as u64
    }

    /// Whole seconds, rounded up, for a `Retry-After` header.
    pub fn seconds(self) -> u64 {
        self.millis().div_ceil(1000).max(1)
    }
}

pub struct Limits {
    salt: [u8; 16],
    cfg: LimitSettings,
    /// The clock every connection's limiter shares: making a `quanta` clock calibrates it (CPUID
    /// instructions, each a trap to the hypervisor on a VM), which measured as a fifth of the
    /// gateway's CPU per arrival when every connection made its own.
    clock: DefaultClock,
    conversations: DefaultKeyedRateLimiter<AddrKey>,
    webhooks: DefaultKeyedRateLimiter<AddrKey>,
    logins: DefaultKeyedRateLimiter<AddrKey>,
    ack_links: DefaultKeyedRateLimiter<AddrKey>,
    /// Open websockets per address key.
    connections: Arc<Slots>,
    /// Open TCP connections per address key.
    tcp: Arc<Slots>,
}

/// Open connections per address key, capped.
struct Slots {
    cap: u32,
    open: Mutex<HashMap<AddrKey, u32>>,
}

impl Slots {
    fn new(cap: u32) -> Arc<Slots> {
        Arc::new(Slots {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn take(self: &Arc<Self>, key: AddrKey) -> Option<ConnectionGuard> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            if *n == 0 {
                open.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            slots: Arc::clone(self),
            key,
        })
    }

    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Limits {
    pub fn new(cfg: &LimitSettings) -> Self {
        let per_hour =
            Quota::with_period(Duration::from_secs(3600) / cfg.conversations_per_hour.max(1))
                .unwrap_or_else(|| Quota::per_hour(nz(cfg.conversations_per_hour)))
                .allow_burst(nz(cfg.conversations_per_hour));
        Limits {
            salt: rand::random(),
            cfg: cfg.clone(),
            conversations: RateLimiter::keyed(per_hour),
            webhooks: RateLimiter::keyed(
                Quota::per_second(nz(cfg.webhooks_per_second)).allow_burst(nz(cfg.webhook_burst)),
            ),
            logins: RateLimiter::keyed(
                Quota::per_minute(nz(cfg.logins_per_minute)).allow_burst(nz(cfg.login_burst)),
            ),
            ack_links: RateLimiter::keyed(
                Quota::per_minute(nz(cfg.ack_links_per_minute)).allow_burst(nz(cfg.ack_link_burst)),
            ),
            clock: DefaultClock::default(),
            connections: Slots::new(cfg.connections_per_address),
            tcp: Slots::new(cfg.tcp_connections_per_address),
        }
    }

    /// The anonymous key of a client address: every per-address limit uses it. An IPv6
    /// address is first cut to its network (`ipv6_prefix_len`, a /64 by default); an
    /// IPv4-mapped IPv6 address is its IPv4 address.
    pub fn key(&self, ip: IpAddr) -> AddrKey {
        let mut h = Sha256::new();
        h.update(self.salt);
        match ip {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => h.update(v4.octets()),
                None => {
                    let bits = u32::from(self.cfg.ipv6_prefix_len.clamp(1, 128));
                    let mask = u128::MAX << (128 - bits);
                    h.update((u128::from(v6) & mask).to_be_bytes());
                    // Kept apart from an IPv4 address with the same leading bytes.
                    h.update([6]);
                }
            },
        }
        let d = h.finalize();
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }

    /// The client address of a request: the peer, or the right-most untrusted address of
    /// `X-Forwarded-For` when the peer is a trusted proxy.
    /// Whether `ip` is one of `trusted_proxies`.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.cfg.trusted_proxies.contains(&ip)
    }

    pub fn client_ip(&self, peer: SocketAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        if !self.cfg.trusted_proxies.contains(&peer.ip()) {
            return peer.ip();
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.cfg.trusted_proxies.contains(ip))
            .unwrap_or(peer.ip())
    }

    fn check(limiter: &DefaultKeyedRateLimiter<AddrKey>, key: AddrKey) -> Result<(), RetryAfter> {
        limiter
            .check_key(&key)
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(limiter.clock().now())))
    }

    pub fn new_conversation(&self, key: AddrKey) -> Result<(), RetryAfter> {
        Self::check(&self.conversations, key)
    }

    pub fn webhook(&self, key: AddrKey) -> Result<(), RetryAfter> {
        Self::check(&self.webhooks, key)
    }

    pub fn login(&self, key: AddrKey) -> Result<(), RetryAfter> {
        Self::check(&self.logins, key)
    }

    /// A request to an alert acknowledgement link (a token anyone may try to guess).
    pub fn ack_link(&self, key: AddrKey) -> Result<(), RetryAfter> {
        Self::check(&self.ack_links, key)
    }

    /// A limiter for one connection's messages.
    pub fn per_connection(&self) -> ConnectionLimiter {
        self.connection_limiter(self.cfg.messages_per_minute, self.cfg.message_burst)
    }

    /// A limiter for one operator console's messages (its own, larger allowance).
    pub fn per_operator_connection(&self) -> ConnectionLimiter {
        self.connection_limiter(
            self.cfg.operator_messages_per_minute,
            self.cfg.operator_message_burst,
        )
    }

    fn connection_limiter(&self, per_minute: u32, burst: u32) -> ConnectionLimiter {
        ConnectionLimiter(RateLimiter::direct_with_clock(
            Quota::per_minute(nz(per_minute)).allow_burst(nz(burst)),
            self.clock.clone(),
        ))
    }

    /// Counts an open websocket for `key`; `None` if the address is at its cap. The guard
    /// releases the slot when dropped.
    pub fn open_connection(self: &Arc<Self>, key: AddrKey) -> Option<ConnectionGuard> {
        self.connections.take(key)
    }

    /// Counts an open TCP connection for `key`; `None` if the address is at its cap.
    pub fn open_tcp(&self, key: AddrKey) -> Option<ConnectionGuard> {
        self.tcp.take(key)
    }

    /// Forgets keys that have been quiet long enough to be back at full allowance.
    pub fn shed(&self) {
        for l in [
            &self.conversations,
            &self.webhooks,
            &self.logins,
            &self.ack_links,
        ] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys currently held (for tests and metrics): limiter keys plus open-connection keys.
    pub fn tracked_keys(&self) -> usize {
        self.conversations.len()
            + self.webhooks.len()
            + self.logins.len()
            + self.ack_links.len()
            + self.connections.len()
            + self.tcp.len()
    }
}

pub struct ConnectionLimiter(DefaultDirectRateLimiter);

impl ConnectionLimiter {
    pub fn check(&self) -> Result<(), RetryAfter> {
        self.0
            .check()
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.0.clock().now())))
    }
}

/// Holds one connection slot (websocket or TCP) of an address.
pub struct ConnectionGuard {
    slots: Arc<Slots>,
    key: AddrKey,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut conns = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = conns.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                conns.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(tune: impl FnOnce(&mut LimitSettings)) -> Arc<Limits> {
        let mut cfg = LimitSettings::default();
        tune(&mut cfg);
        Arc::new(Limits::new(&cfg))
    }

    #[test]
    fn new_conversations_are_limited_per_address_and_say_when_to_retry() {
        let l = limits(|c| c.conversations_per_hour = 3);
        let a = l.key("192.0.2.1".parse().unwrap());
        let b = l.key("192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert!(l.new_conversation(a).is_ok());
        }
        let refused = l.new_conversation(a).unwrap_err();
        assert!(refused.millis() > 0 && refused.millis() <= 20 * 60 * 1000);
        assert!(
            l.new_conversation(b).is_ok(),
            "other addresses are unaffected"
        );
    }

    #[test]
    fn an_honest_burst_of_messages_fits_but_a_flood_does_not() {
        let l = limits(|c| {
            c.messages_per_minute = 60;
            c.message_burst = 20;
        });
        let conn = l.per_connection();
        for _ in 0..20 {
            assert!(conn.check().is_ok());
        }
        assert!(conn.check().is_err());
    }

    #[test]
    fn an_operator_console_has_its_own_larger_allowance() {
        let l = limits(|c| {
            c.message_burst = 2;
            c.operator_message_burst = 5;
        });
        let console = l.per_operator_connection();
        for _ in 0..5 {
            assert!(console.check().is_ok());
        }
        assert!(console.check().is_err());
    }

    #[test]
    fn connections_per_address_are_capped_and_released() {
        let l = limits(|c| c.connections_per_address = 2);
        let k = l.key("198.51.100.7".parse().unwrap());
        let g1 = l.open_connection(k).unwrap();
        let _g2 = l.open_connection(k).unwrap();
        assert!(l.open_connection(k).is_none());
        drop(g1);
        assert!(l.open_connection(k).is_some());
    }

    #[test]
    fn ipv6_addresses_of_one_network_share_one_key_and_so_every_per_address_limit() {
        let l = limits(|c| {
            c.connections_per_address = 1;
            c.conversations_per_hour = 1;
        });
        let a = l.key("2001:db8:1:2::1".parse().unwrap());
        let b = l.key("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap());
        let other = l.key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b, "one /64");
        assert_ne!(a, other, "the next /64");
        let _slot = l.open_connection(a).unwrap();
        assert!(l.open_connection(b).is_none());
        assert!(l.new_conversation(a).is_ok());
        assert!(l.new_conversation(b).is_err());
        assert!(l.open_connection(other).is_some());
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(
            l.key("::ffff:192.0.2.1".parse().unwrap()),
            l.key("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn the_ipv6_network_size_is_configurable() {
        let l = limits(|c| c.ipv6_prefix_len = 48);
        assert_eq!(
            l.key("2001:db8:1:2::1".parse().unwrap()),
            l.key("2001:db8:1:ffff::1".parse().unwrap())
        );
        let l = limits(|c| c.ipv6_prefix_len = 128);
        assert_ne!(
            l.key("2001:db8:1:2::1".parse().unwrap()),
            l.key("2001:db8:1:2::2".parse().unwrap())
        );
    }

    #[test]
    fn addresses_are_keyed_not_kept() {
        let l = limits(|_| {});
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(l.key(ip), l.key(ip));
        let other = limits(|_| {});
        assert_ne!(l.key(ip), other.key(ip), "a per-process salt");
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let l = limits(|c| c.trusted_proxies = vec!["10.0.0.1".parse().unwrap()]);
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.5, 10.0.0.1".parse().unwrap());
        let via_proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let direct: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(
            l.client_ip(via_proxy, &h),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            l.client_ip(direct, &h),
            direct.ip(),
            "spoofed header ignored"
        );
    }

    #[test]
    fn quiet_keys_are_shed() {
        let l = limits(|c| {
            c.webhooks_per_second = 1000;
            c.webhook_burst = 1;
        });
        for i in 0..100u8 {
            let _ = l.webhook(l.key(IpAddr::from([192, 0, 2, i])));
        }
        assert!(l.tracked_keys() >= 100);
        std::thread::sleep(Duration::from_millis(20));
        l.shed();
        assert_eq!(l.tracked_keys(), 0);
    }
}
