//! A network namespace for one gateway node, made and removed by the test itself: two veth
//! pairs to the test's own namespace, one that the node reaches Redis over (the store link) and
//! one its clients reach it over (the client link). Addresses are 10.x /30s on the veths only
//! (nothing routes beyond them); names carry the test process's id, so two runs never collide.
//!
//! Faults, on one link at a time:
//! - **cut**: every packet on the link is dropped silently, both ways (TCP sees a black hole,
//!   not a refusal, as across a real partition). With nftables: a `drop` rule in the
//!   namespace's own table. Without it: both ends' neighbour entries are pointed at a MAC
//!   address nobody has, so every frame is discarded by the receiving veth.
//! - **loss**: a share of packets dropped at random (`numgen random mod 100 < N drop`),
//!   both ways; needs nftables (the kernel's netem is not available everywhere, this machine's
//!   kernel has no `sch_netem`).
//!
//! Delay has no kernel mechanism here without netem: see `relay.rs`.
//!
//! With `TSUNAGU_TEST_NO_NFT=1` the fallbacks are used even where nftables is installed.
//!
//! [`Netns`] removes everything on drop, also when the test fails (the namespace, which takes
//! its veth ends and their peers with it, and the peers again by name to be sure).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// How a link is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutBy {
    Nftables,
    Neighbours,
}

/// One namespace, its two links, and the mechanism its faults use.
pub struct Netns {
    pub name: String,
    /// The store link: the test's end (where Redis listens) and the node's.
    pub store_host: String,
    pub store_node: String,
    /// The client link: the test's end and the node's (where the node listens).
    pub client_host: String,
    pub client_node: String,
    pub cut_by: CutBy,
    /// Whether random loss can be emulated (nftables in this namespace).
    pub can_lose: bool,
    root_store_if: String,
    root_client_if: String,
    ns_store_if: String,
    ns_client_if: String,
}

/// Runs `ip`/`nft` and returns stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A MAC address no interface has (locally administered).
const NOWHERE: &str = "02:00:5e:10:00:99";

impl Netns {
    /// Makes a namespace with its two links. `Err` says why (the caller skips when the kernel
    /// refuses namespaces; any later failure is a test failure).
    pub fn create() -> Result<Netns, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("tsunagu-p{pid}-{k}");
        run("ip", &["netns", "add", &name])?;
        // From here on the guard cleans up whatever was made.
        let tag = format!("{:05}{k}", pid % 100_000);
        // 10.(200+a).b.(16k + …): /30s per link, unique per process and namespace.
        let (a, b, base) = (200 + (pid >> 8) % 50, pid & 0xff, (k % 16) * 16);
        let addr = |n: u32| format!("10.{a}.{b}.{}", base + n);
        let mut ns = Netns {
            store_host: addr(1),
            store_node: addr(2),
            client_host: addr(5),
            client_node: addr(6),
            cut_by: CutBy::Neighbours,
            can_lose: false,
            root_store_if: format!("ts{tag}h"),
            root_client_if: format!("tc{tag}h"),
            ns_store_if: format!("ts{tag}n"),
            ns_client_if: format!("tc{tag}n"),
            name,
        };
        ns.links()?;
        // `TSUNAGU_TEST_NO_NFT=1` tries the fallback where nftables is present.
        let nft_wanted = std::env::var_os("TSUNAGU_TEST_NO_NFT").is_none();
        if nft_wanted && ns.nft_setup().is_ok() {
            ns.cut_by = CutBy::Nftables;
            ns.can_lose = true;
        }
        Ok(ns)
    }

    fn links(&self) -> Result<(), String> {
        let n = self.name.as_str();
        run("ip", &["-n", n, "link", "set", "lo", "up"])?;
        for (root, inside, host, node) in [
            (
                &self.root_store_if,
                &self.ns_store_if,
                &self.store_host,
                &self.store_node,
            ),
            (
                &self.root_client_if,
                &self.ns_client_if,
                &self.client_host,
                &self.client_node,
            ),
        ] {
            run(
                "ip",
                &["link", "add", root, "type", "veth", "peer", "name", inside],
            )?;
            run("ip", &["link", "set", inside, "netns", n])?;
            run("ip", &["addr", "add", &format!("{host}/30"), "dev", root])?;
            run("ip", &["link", "set", root, "up"])?;
            run(
                "ip",
                &["-n", n, "addr", "add", &format!("{node}/30"), "dev", inside],
            )?;
            run("ip", &["-n", n, "link", "set", inside, "up"])?;
        }
        Ok(())
    }

    fn nft(&self, rule: &str) -> Result<(), String> {
        let args: Vec<&str> = ["netns", "exec", &self.name, "nft"]
            .into_iter()
            .chain(rule.split(' '))
            .collect();
        run("ip", &args)
    }

    /// A table of the namespace's own: base chains that jump to one chain per fault and link
    /// (empty until a fault is switched on).
    fn nft_setup(&self) -> Result<(), String> {
        self.nft("add table inet tsunagu")?;
        for chain in ["cut_store", "cut_clients", "loss_clients"] {
            self.nft(&format!("add chain inet tsunagu {chain}"))?;
        }
        for (hook, dir) in [("input", "iifname"), ("output", "oifname")] {
            self.nft(&format!(
                "add chain inet tsunagu {hook} {{ type filter hook {hook} priority 0 ; policy accept ; }}"
            ))?;
            for (iface, chain) in [
                (&self.ns_store_if, "cut_store"),
                (&self.ns_client_if, "cut_clients"),
                (&self.ns_client_if, "loss_clients"),
            ] {
                self.nft(&format!(
                    "add rule inet tsunagu {hook} {dir} {iface} jump {chain}"
                ))?;
            }
        }
        // A rule that the kernel must accept for loss to work (numgen).
        self.nft("add rule inet tsunagu loss_clients numgen random mod 100 < 0 drop")?;
        self.nft("flush chain inet tsunagu loss_clients")
    }

    /// What `ip netns exec` needs to run a program in this namespace.
    pub fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    fn set_cut(&self, store: bool, on: bool) {
        let (chain, root_if, ns_if, host, node) = if store {
            (
                "cut_store",
                &self.root_store_if,
                &self.ns_store_if,
                &self.store_host,
                &self.store_node,
            )
        } else {
            (
                "cut_clients",
                &self.root_client_if,
                &self.ns_client_if,
                &self.client_host,
                &self.client_node,
            )
        };
        let r = match (self.cut_by, on) {
            (CutBy::Nftables, true) => self.nft(&format!("add rule inet tsunagu {chain} drop")),
            (CutBy::Nftables, false) => self.nft(&format!("flush chain inet tsunagu {chain}")),
            (CutBy::Neighbours, true) => run(
                "ip",
                &[
                    "neigh",
                    "replace",
                    node,
                    "dev",
                    root_if,
                    "lladdr",
                    NOWHERE,
                    "nud",
                    "permanent",
                ],
            )
            .and_then(|_| {
                run(
                    "ip",
                    &[
                        "-n",
                        &self.name,
                        "neigh",
                        "replace",
                        host,
                        "dev",
                        ns_if,
                        "lladdr",
                        NOWHERE,
                        "nud",
                        "permanent",
                    ],
                )
            }),
            (CutBy::Neighbours, false) => run("ip", &["neigh", "del", node, "dev", root_if])
                .and_then(|_| {
                    run(
                        "ip",
                        &["-n", &self.name, "neigh", "del", host, "dev", ns_if],
                    )
                }),
        };
        r.unwrap_or_else(|e| panic!("switching a cut on {}: {e}", self.name));
    }

    /// The node can no longer reach Redis (nor Redis it); its clients still reach it.
    pub fn cut_store(&self) {
        self.set_cut(true, true)
    }

    pub fn heal_store(&self) {
        self.set_cut(true, false)
    }

    /// The node's clients can no longer reach it (nor it them); it still reaches Redis.
    pub fn cut_clients(&self) {
        self.set_cut(false, true)
    }

    pub fn heal_clients(&self) {
        self.set_cut(false, false)
    }

    /// Drops `percent` % of the packets on the client link at random, both ways (nftables).
    pub fn lose_on_clients(&self, percent: u32) {
        assert!(self.can_lose, "random loss needs nftables");
        self.nft(&format!(
            "add rule inet tsunagu loss_clients numgen random mod 100 < {percent} drop"
        ))
        .unwrap_or_else(|e| panic!("loss on {}: {e}", self.name));
    }

    /// How the faults are made, for the test's output.
    pub fn describe(&self) -> String {
        match self.cut_by {
            CutBy::Nftables => {
                "cut: nftables drop rules in the namespace (silent, both ways); loss: \
                 nftables `numgen random` drop rules, both ways"
                    .into()
            }
            CutBy::Neighbours => {
                "cut: neighbour entries on both veth ends pointed at a MAC nobody has (silent, \
                 both ways; nftables unavailable); loss: not available"
                    .into()
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The namespace takes its veth ends and, with them, their peers; the peers are deleted
        // by name too in case a process still held the namespace open.
        let _ = run("ip", &["netns", "del", &self.name]);
        for iface in [&self.root_store_if, &self.root_client_if] {
            let _ = run("ip", &["link", "del", iface]);
        }
    }
}

/// A namespace, or `None` after printing why the partition tests cannot run here (the kernel or
/// the sandbox refuses network namespaces, or `ip` is missing). Any other failure panics.
pub fn namespace_or_skip(test: &str) -> Option<Netns> {
    match Netns::create() {
        Ok(ns) => Some(ns),
        Err(e) if e.contains("netns add") || e.starts_with("ip:") => {
            println!(
                "SKIPPED {test}: network namespaces are not available here ({e}); the \
                 partition tests need `ip netns add` (root or CAP_SYS_ADMIN, a kernel with \
                 network namespaces)"
            );
            None
        }
        Err(e) => panic!("{test}: setting up the namespace: {e}"),
    }
}
