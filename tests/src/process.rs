//! The real server binary as a subprocess, with its log output collected.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `firemode serve` subprocess whose stdout (JSON logs) is collected.
pub struct Proc {
    child: Child,
    out: Arc<Mutex<String>>,
    pub base: String,
}

impl Proc {
    pub fn spawn(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("DATABASE_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn firemode");
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            let text = out.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|l| l.contains("\"listening\"")) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                break format!("http://{}", v["address"].as_str().unwrap());
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited early ({status}): {text}");
            }
            assert!(Instant::now() < deadline, "server did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        Proc { child, out, base }
    }

    pub fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (s, self.output());
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Proc {
    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `firemode admin --json create-org` on the data folder `data_dir` (and, for PostgreSQL, the
/// database in `env`), with the first admin's email and password; the command's JSON answer.
/// With `sqlite`, a `DATABASE_URL` of the surrounding environment is not passed on.
pub fn create_org(
    bin: &str,
    data_dir: &str,
    env: &[(&str, &str)],
    sqlite: bool,
    (name, email, password): (&str, &str, &str),
) -> serde_json::Value {
    let mut cmd = Command::new(bin);
    cmd.args(["admin", "--data-dir", data_dir, "--json", "create-org"])
        .args(["--name", name, "--admin-email", email])
        .envs(env.iter().copied())
        .env("FIREMODE_ADMIN_PASSWORD", password);
    if sqlite {
        cmd.env_remove("DATABASE_URL");
    }
    let out = cmd.output().expect("run the admin command");
    assert!(
        out.status.success(),
        "create-org: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("create-org --json answers JSON")
}
