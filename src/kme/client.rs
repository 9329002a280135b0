//! An HTTPS client with a client certificate (hyper over tokio-rustls): the KME's calls to
//! its peer, and the ETSI GS QKD 014 client of `qkd encrypt`/`qkd decrypt` and the load test.

use super::api::{ErrorBody, KeyContainer, KeyIdEntry, KeyIds, KeyRequest, Status};
use super::tls;
use crate::error::{ConfigError, Error, KeyStoreError, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// `https://HOST:PORT` (or `HOST:PORT`) → (host, port). Plain `http://` is refused.
pub fn parse_url(url: &str) -> Result<(String, u16)> {
    let bad = |m: &str| Error::from(ConfigError::invalid("url", format!("{url}: {m}")));
    if url.starts_with("http://") {
        return Err(bad("HTTPS only (the KME serves keys over mutual TLS)"));
    }
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let rest = rest.split('/').next().unwrap_or("");
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("needs host:port"))?;
    let port = port.parse().map_err(|_| bad("bad port"))?;
    if host.is_empty() {
        return Err(bad("needs a host"));
    }
    Ok((host.to_string(), port))
}

/// An HTTPS server reached with a client certificate, with a small pool of connections.
pub struct HttpsClient {
    host: String,
    port: u16,
    name: ServerName<'static>,
    connector: TlsConnector,
    expect_cn: Option<String>,
    timeout: Duration,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The `message` of an error body (or the body as text).
    pub fn message(&self) -> String {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).into_owned())
    }
}

impl HttpsClient {
    /// A client of `url`, presenting `cfg`'s certificate. With `expect_cn`, the server's
    /// certificate must also name that subject CN (the peer KME's identity).
    pub fn new(url: &str, cfg: rustls::ClientConfig, expect_cn: Option<String>) -> Result<Self> {
        let (host, port) = parse_url(url)?;
        Ok(HttpsClient {
            name: tls::server_name(&host)?,
            host,
            port,
            connector: TlsConnector::from(Arc::new(cfg)),
            expect_cn,
            timeout: Duration::from_secs(10),
            pool: Mutex::new(Vec::new()),
        })
    }

    /// `https://host:port`.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> Error {
        KeyStoreError::Unavailable(format!("{}: {e}", self.url())).into()
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((host, self.port))
            .await
            .map_err(|e| self.unavailable(e))?;
        let _ = tcp.set_nodelay(true);
        let stream = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| self.unavailable(format!("TLS: {e}")))?;
        if let Some(want) = &self.expect_cn {
            let got = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(tls::common_name);
            if got.as_deref() != Some(want.as_str()) {
                return Err(self.unavailable(format!(
                    "the server's certificate names {}, not the expected {want}",
                    got.as_deref().unwrap_or("no subject CN")
                )));
            }
        }
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unavailable(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One request; the connection goes back to the pool afterwards.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let fut = async {
            let pooled = self.pool.lock().expect("pool").pop();
            let mut sender = match pooled {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            if sender.ready().await.is_err() {
                sender = self.connect().await?;
            }
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", format!("{}:{}", self.host, self.port));
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| self.unavailable(e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.unavailable(e))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unavailable(e))?
                .to_bytes()
                .to_vec();
            if !sender.is_closed() {
                self.pool.lock().expect("pool").push(sender);
            }
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.unavailable(format!("no answer in {:?}", self.timeout)))?
    }
}

/// An error answer of a KME.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("KME answered {status}: {message}")]
pub struct KmeError {
    /// HTTP status.
    pub status: u16,
    /// Its `message`.
    pub message: String,
}

/// A blocking ETSI GS QKD 014 client (an SAE).
pub struct KmeClient {
    rt: tokio::runtime::Runtime,
    http: HttpsClient,
}

impl KmeClient {
    /// A client of the KME at `url`, as the SAE of `cert`/`key`, trusting `ca`.
    pub fn new(url: &str, cert: &Path, key: &Path, ca: &Path) -> Result<KmeClient> {
        let cfg = tls::client_config(cert, key, ca)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        Ok(KmeClient {
            rt,
            http: HttpsClient::new(url, cfg, None)?,
        })
    }

    /// A raw request (tests, load).
    pub fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer> {
        self.rt.block_on(self.http.request(method, path, body))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        a: Answer,
    ) -> Result<std::result::Result<T, KmeError>> {
        if a.status != 200 {
            return Ok(Err(KmeError {
                status: a.status,
                message: a.message(),
            }));
        }
        serde_json::from_slice(&a.body)
            .map(Ok)
            .map_err(|e| self.http.unavailable(format!("bad answer: {e}")))
    }

    /// `GET /api/v1/keys/{slave}/status`.
    pub fn status(&self, slave: &str) -> Result<std::result::Result<Status, KmeError>> {
        let a = self.request(Method::GET, &format!("/api/v1/keys/{slave}/status"), None)?;
        self.json(a)
    }

    /// `POST /api/v1/keys/{slave}/enc_keys`.
    pub fn enc_keys(
        &self,
        slave: &str,
        number: u32,
        size: u32,
    ) -> Result<std::result::Result<KeyContainer, KmeError>> {
        let body = serde_json::to_vec(&KeyRequest {
            number: Some(number),
            size: Some(size),
            ..Default::default()
        })
        .expect("serializes");
        let a = self.request(
            Method::POST,
            &format!("/api/v1/keys/{slave}/enc_keys"),
            Some(body),
        )?;
        self.json(a)
    }

    /// `POST /api/v1/keys/{master}/dec_keys`.
    pub fn dec_keys(
        &self,
        master: &str,
        ids: &[String],
    ) -> Result<std::result::Result<KeyContainer, KmeError>> {
        let body = serde_json::to_vec(&KeyIds {
            key_IDs: ids
                .iter()
                .map(|i| KeyIdEntry {
                    key_ID: i.clone(),
                    key_ID_extension: None,
                })
                .collect(),
            key_IDs_extension: None,
        })
        .expect("serializes");
        let a = self.request(
            Method::POST,
            &format!("/api/v1/keys/{master}/dec_keys"),
            Some(body),
        )?;
        self.json(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(parse_url("[::1]:9").unwrap(), ("[::1]".into(), 9));
        assert!(parse_url("http://127.0.0.1:80").is_err());
        assert!(parse_url("https://host").is_err());
    }
}
