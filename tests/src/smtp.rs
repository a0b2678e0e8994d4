//! A small SMTP server for the email tests: it listens on 127.0.0.1:0, speaks EHLO/HELO, AUTH
//! PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT and STARTTLS over a real TCP socket, in
//! plain text, with STARTTLS (refusing AUTH and MAIL before it, as submission servers do) or
//! with TLS from the first byte (smtps), and keeps what it received. It can answer the end of
//! DATA with `451` (a temporary failure) for the first N messages, to test retries. Also a MIME
//! reader for what it got (multipart, base64 and quoted-printable parts), enough to check an
//! email notice, and a certificate authority made with the `openssl` command for the TLS tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message, dot-unstuffed, lines joined with `\r\n`.
    pub data: String,
    /// The decoded `AUTH` credentials of the session (`user\0password`), if it logged in.
    pub auth: Option<String>,
    /// Whether the message came over TLS (STARTTLS or smtps).
    pub tls: bool,
}

/// How the sink speaks TLS.
#[derive(Clone)]
pub enum SinkTls {
    /// Plain text only (STARTTLS is not offered).
    None,
    /// STARTTLS offered; AUTH and MAIL are refused until the client has started TLS.
    StartTls(TlsAcceptor),
    /// TLS from the first byte (smtps, port 465 style).
    Implicit(TlsAcceptor),
}

/// A certificate authority and a server certificate it signed for `127.0.0.1`, made in a
/// directory with the `openssl` command.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The authority's certificate (PEM): what a client must trust.
    pub ca_pem: PathBuf,
    cert_pem: PathBuf,
    key_pem: PathBuf,
}

impl TestCa {
    /// Make a fresh authority and a server certificate for the IP address 127.0.0.1.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("the openssl command (Debian package openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=FireMode test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext.cnf");
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        Self {
            ca_pem: d.join("ca.pem"),
            cert_pem: d.join("server.pem"),
            key_pem: d.join("server.key"),
            dir,
        }
    }

    /// A TLS acceptor presenting the server certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        acceptor(&self.cert_pem, &self.key_pem)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

fn acceptor(cert: &Path, key: &Path) -> TlsAcceptor {
    let chain = CertificateDer::pem_file_iter(cert)
        .expect("server certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("server key PEM");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate and key");
    TlsAcceptor::from(Arc::new(config))
}

/// A byte stream the sink speaks over: a TCP socket, or TLS over one.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The sink; dropped, its listener task ends.
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Mail>>>,
    refused: Arc<Mutex<Vec<Mail>>>,
    fail_first: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Start a plain-text sink that answers `451` to the first `fail_first` messages.
    pub async fn start(fail_first: usize) -> Self {
        Self::start_with(fail_first, SinkTls::None).await
    }

    /// Start a sink speaking TLS as `tls` says.
    pub async fn start_with(fail_first: usize, tls: SinkTls) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(fail_first));
        let (r, f, fl) = (received.clone(), refused.clone(), fail.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (r, f, fl, tls) = (r.clone(), f.clone(), fl.clone(), tls.clone());
                tokio::spawn(async move {
                    let _ = session(sock, tls, r, f, fl).await;
                });
            }
        });
        Self {
            port,
            received,
            refused,
            fail_first: fail,
            task,
        }
    }

    /// Messages accepted (250 after DATA).
    pub fn received(&self) -> Vec<Mail> {
        self.received.lock().unwrap().clone()
    }

    /// Messages answered with 451.
    pub fn refused(&self) -> Vec<Mail> {
        self.refused.lock().unwrap().clone()
    }

    /// How many more messages will be refused.
    pub fn failures_left(&self) -> usize {
        self.fail_first.load(Ordering::SeqCst)
    }
}

async fn session(
    sock: tokio::net::TcpStream,
    tls: SinkTls,
    received: Arc<Mutex<Vec<Mail>>>,
    refused: Arc<Mutex<Vec<Mail>>>,
    fail_first: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (mut rd, mut secure, starttls): (BufReader<Box<dyn Stream>>, bool, Option<TlsAcceptor>) =
        match tls {
            SinkTls::None => (BufReader::new(Box::new(sock)), false, None),
            SinkTls::StartTls(a) => (BufReader::new(Box::new(sock)), false, Some(a)),
            SinkTls::Implicit(a) => (BufReader::new(Box::new(a.accept(sock).await?)), true, None),
        };
    send(&mut rd, b"220 sink.test ESMTP FireMode test sink\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut auth = None;
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_owned();
        let upper = cmd.to_ascii_uppercase();
        // A submission server that offers STARTTLS takes no credentials or mail before it.
        let must_start_tls = starttls.is_some() && !secure;
        let answer: String = if upper.starts_with("EHLO") {
            if must_start_tls {
                "250-sink.test\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SIZE 10485760\r\n".into()
            } else {
                "250-sink.test\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 10485760\r\n"
                    .into()
            }
        } else if upper == "STARTTLS" && must_start_tls {
            send(&mut rd, b"220 2.0.0 Ready to start TLS\r\n").await?;
            let acceptor = starttls.clone().expect("checked");
            let plain = rd.into_inner();
            rd = BufReader::new(Box::new(acceptor.accept(plain).await?));
            secure = true;
            // The session starts again (RFC 3207): the client says EHLO anew.
            from.clear();
            to.clear();
            auth = None;
            continue;
        } else if must_start_tls && (upper.starts_with("AUTH") || upper.starts_with("MAIL")) {
            "530 5.7.0 Must issue a STARTTLS command first\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 sink.test\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let b64 = cmd.get(10..).unwrap_or_default().trim().to_owned();
            let b64 = if b64.is_empty() {
                send(&mut rd, b"334 \r\n").await?;
                line.clear();
                rd.read_line(&mut line).await?;
                line.trim().to_owned()
            } else {
                b64
            };
            let raw = B64.decode(b64).unwrap_or_default();
            // authzid \0 user \0 password
            let s = String::from_utf8_lossy(&raw).to_string();
            auth = Some(s.split_once('\0').map(|x| x.1.to_owned()).unwrap_or(s));
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("AUTH LOGIN") {
            let mut parts = Vec::new();
            for prompt in ["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n"] {
                send(&mut rd, prompt.as_bytes()).await?;
                line.clear();
                rd.read_line(&mut line).await?;
                let raw = B64.decode(line.trim()).unwrap_or_default();
                parts.push(String::from_utf8_lossy(&raw).to_string());
            }
            auth = Some(parts.join("\0"));
            "235 2.7.0 Authentication successful\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&cmd[10..]);
            to.clear();
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            to.push(addr(&cmd[8..]));
            "250 2.1.5 Ok\r\n".into()
        } else if upper == "DATA" {
            send(&mut rd, b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut lines = Vec::new();
            loop {
                line.clear();
                if rd.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                lines.push(l.strip_prefix('.').unwrap_or(l).to_owned());
            }
            let mail = Mail {
                from: from.clone(),
                to: to.clone(),
                data: lines.join("\r\n"),
                auth: auth.clone(),
                tls: secure,
            };
            let fail = fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                refused.lock().unwrap().push(mail);
                "451 4.3.0 Mailbox busy, try again later\r\n".into()
            } else {
                let n = {
                    let mut r = received.lock().unwrap();
                    r.push(mail);
                    r.len()
                };
                format!("250 2.0.0 Ok: queued as SINK{n}\r\n")
            }
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 Ok\r\n".into()
        } else if upper == "QUIT" {
            send(&mut rd, b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognised\r\n".into()
        };
        send(&mut rd, answer.as_bytes()).await?;
    }
}

/// Write an answer and flush it (over TLS, a write may stay in the session's buffer).
async fn send(rd: &mut BufReader<Box<dyn Stream>>, bytes: &[u8]) -> std::io::Result<()> {
    let w = rd.get_mut();
    w.write_all(bytes).await?;
    w.flush().await
}

/// `<a@b>` (with any parameters after it) to `a@b`.
fn addr(s: &str) -> String {
    let s = s.trim();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_owned(),
        _ => s.split_whitespace().next().unwrap_or_default().to_owned(),
    }
}

/// One MIME part (or the whole message): unfolded headers and the decoded body.
#[derive(Debug, Clone)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub parts: Vec<Part>,
}

impl Part {
    /// A header's value (the first of that name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// Every leaf part, depth first.
    pub fn leaves(&self) -> Vec<&Part> {
        if self.parts.is_empty() {
            vec![self]
        } else {
            self.parts.iter().flat_map(|p| p.leaves()).collect()
        }
    }
}

/// Read a message: headers (continuation lines unfolded), a multipart body split on its
/// boundary, base64 and quoted-printable bodies decoded.
pub fn parse(raw: &str) -> Part {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in head.lines() {
        if l.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(l.trim());
            }
        } else if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut part = Part {
        headers,
        body: Vec::new(),
        parts: Vec::new(),
    };
    let ctype = part
        .header("content-type")
        .unwrap_or("text/plain")
        .to_owned();
    if ctype.to_ascii_lowercase().starts_with("multipart/") {
        let boundary = ctype
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let delim = format!("--{boundary}");
        for chunk in body.split(&delim).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            part.parts
                .push(parse(chunk.strip_prefix('\n').unwrap_or(chunk)));
        }
        return part;
    }
    let enc = part
        .header("content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    part.body = match enc.as_str() {
        "base64" => B64
            .decode(body.split_whitespace().collect::<String>())
            .unwrap_or_default(),
        "quoted-printable" => quoted_printable(body),
        _ => body.trim_end_matches('\n').as_bytes().to_vec(),
    };
    part
}

fn quoted_printable(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let lines: Vec<&str> = s.trim_end_matches('\n').split('\n').collect();
    for (i, l) in lines.iter().enumerate() {
        let soft = l.ends_with('=');
        let l = if soft { &l[..l.len() - 1] } else { l };
        let b = l.as_bytes();
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'=' && j + 3 <= b.len() {
                if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&b[j + 1..j + 3]), 16) {
                    out.push(v);
                    j += 3;
                    continue;
                }
            }
            out.push(b[j]);
            j += 1;
        }
        if !soft && i + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    out
}
