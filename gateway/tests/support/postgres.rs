//! A PostgreSQL cluster of the test's own: Debian's `initdb` and `pg_ctl` (the `postgresql`
//! package; scripts/test.sh installs it) into a temporary directory, listening on 127.0.0.1 on a
//! free port with its socket in that directory, never the machine's own service. Stopped
//! (`pg_ctl stop -m immediate`) and removed on drop.
//!
//! PostgreSQL refuses to run as root: when the tests do (CI runs as root), every PostgreSQL
//! command runs through `runuser -u nobody` (or the user `TSUNAGU_TEST_PG_USER` names), with the
//! directory (then under /tmp) given to that user. The binaries are found in `TSUNAGU_TEST_PG_BIN`, else the
//! newest `/usr/lib/postgresql/<version>/bin`, else on `PATH`.

use std::path::PathBuf;
use std::process::Command;

/// The superuser of the test cluster (trust authentication on 127.0.0.1 only).
pub const SUPERUSER: &str = "tsunagu";

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The unprivileged user PostgreSQL runs as when the tests run as root.
    run_as: Option<String>,
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory holding `initdb` and `pg_ctl`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TSUNAGU_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    // Debian keeps the server binaries per major version, off PATH.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .expect(
            "PostgreSQL's initdb and pg_ctl not found (apt-get install postgresql; \
             scripts/test.sh installs it), or set TSUNAGU_TEST_PG_BIN",
        )
}

/// `name`'s uid and gid, from /etc/passwd.
fn ids_of(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        .unwrap_or_else(|| panic!("no user {name} to run PostgreSQL as"))
}

impl PgCluster {
    /// Creates and starts a cluster; panics with PostgreSQL's log if it does not start.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let run_as = rustix::process::geteuid()
            .is_root()
            .then(|| std::env::var("TSUNAGU_TEST_PG_USER").unwrap_or_else(|_| "nobody".into()));
        // The unprivileged user must be able to reach the directory: TMPDIR may be under
        // root's home, which it cannot enter; /tmp it can.
        let base = match run_as {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let dir = base.join(format!("tsunagu-pg-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = &run_as {
            let (uid, gid) = ids_of(user);
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let cluster = PgCluster {
            port: free_port(),
            dir,
            bin,
            run_as,
        };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        // Durability is not under test: no fsync, so the suite is quick on a busy machine.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off",
            cluster.port,
            cluster.dir.display()
        );
        let log = cluster.dir.join("postgres.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        cluster
    }

    /// A PostgreSQL program of `bin`, as the unprivileged user when the test runs as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
        );
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection as _;
        use sqlx::Executor as _;
        let mut admin = sqlx::postgres::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connecting to the test cluster");
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        admin.close().await.unwrap();
        self.url(name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .command("pg_ctl")
            .args(["-D".as_ref(), data.as_os_str()])
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
