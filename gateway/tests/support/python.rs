//! A long-lived Python helper process spoken to in JSON lines (one request, one answer), shared
//! by the LINE harness (LINE's official SDK) and the phone harness (Twilio's library and
//! Python's XML parser).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

struct Proc {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The helper script `script` running under `python3`, started on first use; `name` says what
/// it is in failures and `package` what to install when it cannot start.
pub struct PyHelper {
    script: &'static str,
    name: &'static str,
    package: &'static str,
    proc: OnceLock<Mutex<Proc>>,
}

impl PyHelper {
    pub const fn new(script: &'static str, name: &'static str, package: &'static str) -> Self {
        PyHelper {
            script,
            name,
            package,
            proc: OnceLock::new(),
        }
    }

    fn spawn(&self) -> Mutex<Proc> {
        let package = self.package;
        let mut child = Command::new("python3")
            .arg(self.script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 runs (scripts/test.sh installs {package}): {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Mutex::new(Proc {
            _child: child,
            stdin,
            stdout,
        })
    }

    /// One request to the helper (blocking, on a blocking thread); its answer must carry no
    /// `error`.
    pub async fn call(&'static self, req: Value) -> Value {
        tokio::task::spawn_blocking(move || {
            let proc = self.proc.get_or_init(|| self.spawn());
            let mut p = proc.lock().unwrap_or_else(|e| e.into_inner());
            writeln!(p.stdin, "{req}")
                .unwrap_or_else(|e| panic!("write to the {} helper: {e}", self.name));
            p.stdin.flush().unwrap();
            let mut line = String::new();
            p.stdout
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("read from the {} helper: {e}", self.name));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
                panic!(
                    "the {} helper failed (is {pkg} installed? `pip install {pkg}`): {line:?}",
                    self.name,
                    pkg = self.package
                )
            });
            assert!(v.get("error").is_none(), "{}: {}", self.name, v["error"]);
            v
        })
        .await
        .unwrap()
    }
}
