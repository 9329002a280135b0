//! The KME: ETSI GS QKD 014 V1.1.1 over HTTPS with mandatory client certificates (axum on
//! hyper, tokio-rustls), serving a key store, and coordinating with the peer KME of the link.
//!
//! Who calls is the subject CN of the client certificate of the TLS session: one of the SAEs
//! given with `--sae` (the ETSI endpoints), or the peer KME (`--peer-id`, the `/kme/v1`
//! endpoints). The protocol between the two KMEs is in docs/keys.md; in short, the master KME
//! (1) moves the keys of a request into `pending`, (2) has the peer reserve the same stored keys
//! for the slave SAE, (3) delivers them to the master SAE; the slave KME delivers reserved keys
//! only, once, to the slave SAE named in the reservation. A grant whose reservation is uncertain
//! (the peer did not answer) stays pending until the peer confirms its release.

use super::api::{
    ErrorBody, KeyContainer, KeyEntry, KeyIds, KeyRequest, PeerGrant, PeerInfo, ReleaseRequest,
    ReserveRequest, Status,
};
use super::client::HttpsClient;
use super::tls;
use crate::error::{ConfigError, Error, KeyStoreError, Result};
use crate::keystore::store::{
    DeliveredKey, Grant, KEY_BITS, KeyStore, ReleaseOutcome, ReserveOutcome, UnitRef,
};
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

/// Options of `qkd kme`.
#[derive(Debug, Clone)]
pub struct KmeOptions {
    /// The key store.
    pub store: PathBuf,
    /// Listen address (host:port; port 0 picks one).
    pub listen: String,
    /// This KME's certificate (PEM): served to clients, and presented to the peer KME.
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    pub tls_key: PathBuf,
    /// The CA of client certificates (SAEs and the peer KME), and of the peer's server
    /// certificate.
    pub client_ca: PathBuf,
    /// The SAE IDs served here (the subject CNs of their certificates).
    pub saes: Vec<String>,
    /// The peer KME (host:port).
    pub peer: Option<String>,
    /// The peer KME's ID (the subject CN of its certificate).
    pub peer_id: Option<String>,
    /// This KME's ID (default: its certificate's subject CN).
    pub kme_id: Option<String>,
    /// Largest `number` of one request.
    pub max_key_per_request: u32,
    /// Largest key `size` in bits (a multiple of 256).
    pub max_key_size: u32,
    /// How often the store imports its inbox.
    pub import_interval: Duration,
    /// Set to stop the server.
    pub stop: Arc<AtomicBool>,
}

impl KmeOptions {
    /// Defaults for everything but the paths, addresses and SAEs.
    pub fn new(store: PathBuf, listen: String, cert: PathBuf, key: PathBuf, ca: PathBuf) -> Self {
        KmeOptions {
            store,
            listen,
            tls_cert: cert,
            tls_key: key,
            client_ca: ca,
            saes: vec![],
            peer: None,
            peer_id: None,
            kme_id: None,
            max_key_per_request: 128,
            max_key_size: 8192,
            import_interval: Duration::from_millis(200),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Who is calling: the subject CN of the TLS client certificate, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An SAE served here.
    Sae(String),
    /// The peer KME.
    Peer,
    /// Someone else with a certificate of the CA (refused with 401).
    Other(String),
}

/// Counters of a KME's life (its JSON report at exit).
#[derive(Debug, Clone, Default, Serialize)]
pub struct KmeStats {
    /// Requests answered.
    pub requests: u64,
    /// Key IDs delivered to master SAEs here.
    pub delivered_as_master: u64,
    /// Key IDs delivered to slave SAEs here.
    pub delivered_as_slave: u64,
    /// Requests refused (4xx).
    pub refused: u64,
    /// Requests that failed (5xx).
    pub failed: u64,
    /// Grants recovered (released at the peer and put back).
    pub recovered_grants: u64,
}

struct Peer {
    id: String,
    client: HttpsClient,
    saes: tokio::sync::RwLock<Option<Vec<String>>>,
}

struct Kme {
    store: Arc<KeyStore>,
    id: String,
    saes: HashSet<String>,
    peer: Option<Peer>,
    takes_oldest: bool,
    max_key_per_request: u32,
    max_key_size: u32,
    in_flight: Mutex<HashSet<Uuid>>,
    requests: AtomicU64,
    as_master: AtomicU64,
    as_slave: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    recovered: AtomicU64,
}

/// An error answer.
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(ErrorBody {
                message: self.1,
                details: None,
            }),
        )
            .into_response()
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let code = match &e {
            Error::Store(KeyStoreError::Refused(_)) => StatusCode::BAD_REQUEST,
            Error::Config(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Fail(code, e.to_string())
    }
}

fn bad(m: impl Into<String>) -> Fail {
    Fail(StatusCode::BAD_REQUEST, m.into())
}

fn unauthorized(m: impl Into<String>) -> Fail {
    Fail(StatusCode::UNAUTHORIZED, m.into())
}

type Answer = std::result::Result<Response, Fail>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::from(KeyStoreError::Unavailable(format!("store task: {e}"))))?
}

fn key_entries(keys: Vec<DeliveredKey>) -> KeyContainer {
    let b64 = base64::engine::general_purpose::STANDARD;
    KeyContainer {
        keys: keys
            .iter()
            .map(|k| KeyEntry {
                key_ID: k.id.to_string(),
                key_ID_extension: None,
                key: b64.encode(&k.bytes),
                key_extension: None,
            })
            .collect(),
        key_container_extension: None,
    }
}

/// `number=2&size=256` → pairs; names outside `allowed` are refused.
fn query_pairs(
    q: &Option<String>,
    allowed: &[&str],
) -> std::result::Result<Vec<(String, String)>, Fail> {
    let mut out = Vec::new();
    for part in q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if !allowed.contains(&k) {
            return Err(bad(format!(
                "unknown query parameter `{k}` (this request takes {})",
                allowed.join(", ")
            )));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn parse_u32(name: &str, v: &str) -> std::result::Result<u32, Fail> {
    v.parse()
        .map_err(|_| bad(format!("`{name}` must be a positive integer, not `{v}`")))
}

fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> std::result::Result<T, Fail> {
    serde_json::from_slice(body).map_err(|e| bad(format!("malformed {what} JSON: {e}")))
}

fn parse_key_id(s: &str) -> std::result::Result<Uuid, Fail> {
    Uuid::parse_str(s).map_err(|_| bad(format!("key_ID `{s}` is not a UUID")))
}

/// The (number, size) of a Get key request: POST with a JSON body, or GET with `number` and
/// `size` in the query (ETSI GS QKD 014 §5.2–5.3). Pure: also the fuzz target's entry.
fn parse_enc_request(
    post: bool,
    query: Option<&str>,
    body: &[u8],
) -> std::result::Result<(u32, u32), Fail> {
    let q = query.map(str::to_string);
    let (mut number, mut size) = (1, KEY_BITS);
    if post {
        query_pairs(&q, &[])?;
        let req: KeyRequest = parse_json(body, "key request")?;
        if req
            .additional_slave_SAE_IDs
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(bad(
                "additional_slave_SAE_IDs is not supported (max_SAE_ID_count is 0): a key is shared by one master and one slave SAE",
            ));
        }
        if req
            .extension_mandatory
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(bad("extension_mandatory: this KME supports no extensions"));
        }
        number = req.number.unwrap_or(1);
        size = req.size.unwrap_or(KEY_BITS);
    } else {
        for (name, v) in query_pairs(&q, &["number", "size"])? {
            match name.as_str() {
                "number" => number = parse_u32("number", &v)?,
                _ => size = parse_u32("size", &v)?,
            }
        }
    }
    Ok((number, size))
}

/// The key IDs of a Get key with key IDs request (ETSI GS QKD 014 §5.4–5.5).
fn parse_dec_request(
    post: bool,
    query: Option<&str>,
    body: &[u8],
) -> std::result::Result<Vec<Uuid>, Fail> {
    let q = query.map(str::to_string);
    if post {
        query_pairs(&q, &[])?;
        let req: KeyIds = parse_json(body, "key IDs")?;
        req.key_IDs
            .iter()
            .map(|e| parse_key_id(&e.key_ID))
            .collect::<std::result::Result<Vec<_>, _>>()
    } else {
        let mut ids = vec![];
        for (_, v) in query_pairs(&q, &["key_ID"])? {
            ids.push(parse_key_id(&v)?);
        }
        Ok(ids)
    }
}

/// Parse a request as the server would (`kind`: 0 Get key, 1 Get key with key IDs, 2 peer
/// reservation, 3 peer release), for the fuzz targets: returns whether it was accepted;
/// never panics.
pub fn parse_request_for_fuzzing(kind: u8, post: bool, query: Option<&str>, body: &[u8]) -> bool {
    match kind % 4 {
        0 => parse_enc_request(post, query, body).is_ok(),
        1 => parse_dec_request(post, query, body).is_ok(),
        2 => parse_json::<super::api::ReserveRequest>(body, "reservation").is_ok(),
        _ => parse_json::<super::api::ReleaseRequest>(body, "release").is_ok(),
    }
}

impl Kme {
    fn count(&self, r: &Answer) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(Fail(code, _)) = r {
            if code.is_client_error() {
                self.refused.fetch_add(1, Ordering::Relaxed);
            } else {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn stats(&self) -> KmeStats {
        KmeStats {
            requests: self.requests.load(Ordering::Relaxed),
            delivered_as_master: self.as_master.load(Ordering::Relaxed),
            delivered_as_slave: self.as_slave.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            recovered_grants: self.recovered.load(Ordering::Relaxed),
        }
    }

    fn local_sae<'a>(&self, caller: &'a Caller) -> std::result::Result<&'a str, Fail> {
        match caller {
            Caller::Sae(s) => Ok(s),
            Caller::Peer => Err(unauthorized("the peer KME is not an SAE")),
            Caller::Other(cn) => Err(unauthorized(format!(
                "SAE `{cn}` is not served by this KME (its SAEs: {})",
                self.sae_list()
            ))),
        }
    }

    fn sae_list(&self) -> String {
        let mut v: Vec<&str> = self.saes.iter().map(String::as_str).collect();
        v.sort();
        v.join(", ")
    }

    fn peer(&self) -> std::result::Result<&Peer, Fail> {
        self.peer.as_ref().ok_or_else(|| {
            Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "this KME has no peer KME (--peer): it cannot serve keys of a link".into(),
            )
        })
    }

    /// The peer's SAEs (asked once, then cached).
    async fn peer_saes(&self) -> std::result::Result<Vec<String>, Fail> {
        let peer = self.peer()?;
        if let Some(s) = peer.saes.read().await.as_ref() {
            return Ok(s.clone());
        }
        let a = peer
            .client
            .request(Method::GET, "/kme/v1/info", None)
            .await?;
        if a.status != 200 {
            return Err(Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("peer KME {}: {} {}", peer.id, a.status, a.message()),
            ));
        }
        let info: PeerInfo = serde_json::from_slice(&a.body).map_err(|e| {
            Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("peer KME {}: bad info: {e}", peer.id),
            )
        })?;
        *peer.saes.write().await = Some(info.SAE_IDs.clone());
        Ok(info.SAE_IDs)
    }

    /// `other` is an SAE of the peer KME (so the pair is a link of this KME).
    async fn remote_sae(&self, other: &str, as_what: &str) -> std::result::Result<(), Fail> {
        let saes = self.peer_saes().await?;
        if saes.iter().any(|s| s == other) {
            Ok(())
        } else {
            Err(unauthorized(format!(
                "{as_what} SAE `{other}` is not at the peer KME {} (its SAEs: {}): not a link of this KME",
                self.peer()?.id,
                saes.join(", ")
            )))
        }
    }

    async fn status(&self, caller: &Caller, slave: &str) -> Answer {
        let master = self.local_sae(caller)?;
        self.remote_sae(slave, "slave").await?;
        let store = self.store.clone();
        let available = blocking(move || store.available()).await?;
        Ok(Json(Status {
            source_KME_ID: self.id.clone(),
            target_KME_ID: self.peer()?.id.clone(),
            master_SAE_ID: master.to_string(),
            slave_SAE_ID: slave.to_string(),
            key_size: KEY_BITS,
            stored_key_count: available,
            max_key_count: u64::from(u32::MAX),
            max_key_per_request: self.max_key_per_request,
            max_key_size: self.max_key_size,
            min_key_size: KEY_BITS,
            max_SAE_ID_count: 0,
            status_extension: None,
        })
        .into_response())
    }

    fn check_request(&self, number: u32, size: u32) -> std::result::Result<usize, Fail> {
        if number == 0 || number > self.max_key_per_request {
            return Err(bad(format!(
                "`number` must be 1..={} (max_key_per_request), not {number}",
                self.max_key_per_request
            )));
        }
        if size < KEY_BITS || size > self.max_key_size || !size.is_multiple_of(KEY_BITS) {
            return Err(bad(format!(
                "`size` must be a multiple of {KEY_BITS} bits from {KEY_BITS} to {} (max_key_size), not {size}",
                self.max_key_size
            )));
        }
        Ok((size / KEY_BITS) as usize)
    }

    async fn enc_keys(&self, caller: &Caller, slave: &str, number: u32, size: u32) -> Answer {
        let master = self.local_sae(caller)?.to_string();
        let units = self.check_request(number, size)?;
        self.remote_sae(slave, "slave").await?;
        let keys = self.grant(&master, slave, number as usize, units).await?;
        self.as_master
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(Json(key_entries(keys)).into_response())
    }

    /// The master side of a request (docs/keys.md): pending here, reserved at the peer,
    /// delivered here.
    async fn grant(
        &self,
        master: &str,
        slave: &str,
        number: usize,
        units: usize,
    ) -> Result<Vec<DeliveredKey>> {
        let peer = self.peer.as_ref().expect("checked");
        let mut skip = HashSet::new();
        let mut last = String::new();
        for _attempt in 0..4 {
            let (store, m, s, sk, oldest) = (
                self.store.clone(),
                master.to_string(),
                slave.to_string(),
                skip.clone(),
                self.takes_oldest,
            );
            let grants =
                blocking(move || store.begin_grants(&m, &s, number, units, oldest, &sk)).await?;
            let ids: Vec<Uuid> = grants.iter().map(|g| g.key_id).collect();
            self.in_flight
                .lock()
                .expect("lock")
                .extend(ids.iter().copied());
            let r = self.reserve_at_peer(peer, master, slave, &grants).await;
            let out = self.settle(r, &ids, &mut skip).await;
            {
                let mut f = self.in_flight.lock().expect("lock");
                for id in &ids {
                    f.remove(id);
                }
            }
            match out {
                Ok(Some(keys)) => return Ok(keys),
                Ok(None) => last = "keys are not yet stored at the peer".into(),
                Err(e) => return Err(e),
            }
        }
        Err(KeyStoreError::Unavailable(format!(
            "{last}; try again when both sites have committed more key"
        ))
        .into())
    }

    async fn reserve_at_peer(
        &self,
        peer: &Peer,
        master: &str,
        slave: &str,
        grants: &[Grant],
    ) -> Result<ReserveOutcome> {
        let req = ReserveRequest {
            master_SAE_ID: master.to_string(),
            slave_SAE_ID: slave.to_string(),
            keys: grants
                .iter()
                .map(|g| PeerGrant {
                    key_ID: g.key_id.to_string(),
                    units: g.unit_refs(),
                })
                .collect(),
        };
        let body = serde_json::to_vec(&req).expect("serializes");
        let a = peer
            .client
            .request(Method::POST, "/kme/v1/reserve", Some(body))
            .await?;
        match a.status {
            200 => serde_json::from_slice(&a.body).map_err(|e| {
                KeyStoreError::Unavailable(format!("peer KME {}: bad answer: {e}", peer.id)).into()
            }),
            400 => {
                Err(KeyStoreError::Refused(format!("peer KME {}: {}", peer.id, a.message())).into())
            }
            s => Err(KeyStoreError::Unavailable(format!(
                "peer KME {}: {s} {}",
                peer.id,
                a.message()
            ))
            .into()),
        }
    }

    /// After the peer answered (or did not): deliver, put back, or leave for recovery.
    async fn settle(
        &self,
        r: Result<ReserveOutcome>,
        ids: &[Uuid],
        skip: &mut HashSet<Uuid>,
    ) -> Result<Option<Vec<DeliveredKey>>> {
        let store = self.store.clone();
        let ids_v = ids.to_vec();
        match r {
            Ok(o) if o.reserved => {
                let keys = blocking(move || store.finish_grants(&ids_v)).await?;
                Ok(Some(keys))
            }
            Ok(o) => {
                // Nothing was reserved: put the keys back; those the peer will never have are
                // dropped, those it does not have yet are passed over in the next attempt.
                skip.extend(o.missing.iter().copied());
                let gone: HashSet<Uuid> = o.gone.iter().copied().collect();
                blocking(move || store.abandon_grants(&ids_v, &gone)).await?;
                Ok(None)
            }
            Err(Error::Store(KeyStoreError::Refused(m))) => {
                // The peer refused the request as such (nothing reserved).
                blocking(move || store.abandon_grants(&ids_v, &HashSet::new())).await?;
                Err(KeyStoreError::Unavailable(m).into())
            }
            Err(e) => {
                // Unknown whether the peer reserved: release there first; if that fails too,
                // the grants stay pending for the recovery task.
                if self.release_at_peer(ids).await.is_ok() {
                    blocking(move || store.abandon_grants(&ids_v, &HashSet::new())).await?;
                }
                Err(e)
            }
        }
    }

    /// Release `ids` at the peer and settle them here by its answer.
    async fn release_at_peer(&self, ids: &[Uuid]) -> Result<ReleaseOutcome> {
        let peer = self.peer.as_ref().expect("a peer");
        let body = serde_json::to_vec(&ReleaseRequest {
            key_IDs: ids.iter().map(Uuid::to_string).collect(),
        })
        .expect("serializes");
        let a = peer
            .client
            .request(Method::POST, "/kme/v1/release", Some(body))
            .await?;
        if a.status != 200 {
            return Err(KeyStoreError::Unavailable(format!(
                "peer KME {}: {} {}",
                peer.id,
                a.status,
                a.message()
            ))
            .into());
        }
        let out: ReleaseOutcome = serde_json::from_slice(&a.body).map_err(|e| {
            Error::from(KeyStoreError::Unavailable(format!(
                "peer KME: bad answer: {e}"
            )))
        })?;
        if !out.delivered.is_empty() {
            let store = self.store.clone();
            let d = out.delivered.clone();
            blocking(move || store.settle_delivered(&d)).await?;
        }
        Ok(out)
    }

    /// Pending grants no request is working on: released at the peer, then put back.
    async fn recover(&self) -> Result<()> {
        if self.peer.is_none() {
            return Ok(());
        }
        let store = self.store.clone();
        let pending = blocking(move || store.pending()).await?;
        let ids: Vec<Uuid> = {
            let f = self.in_flight.lock().expect("lock");
            pending
                .iter()
                .map(|g| g.key_id)
                .filter(|id| !f.contains(id))
                .collect()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let out = self.release_at_peer(&ids).await?;
        let back: Vec<Uuid> = out.released.iter().chain(&out.unknown).copied().collect();
        let n = back.len() as u64;
        let store = self.store.clone();
        blocking(move || store.abandon_grants(&back, &HashSet::new())).await?;
        self.recovered.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    async fn dec_keys(&self, caller: &Caller, master: &str, ids: Vec<Uuid>) -> Answer {
        let slave = self.local_sae(caller)?.to_string();
        if ids.is_empty() {
            return Err(bad("no key_ID given"));
        }
        if ids.len() > self.max_key_per_request as usize {
            return Err(bad(format!(
                "{} key_IDs; at most {} (max_key_per_request) per request",
                ids.len(),
                self.max_key_per_request
            )));
        }
        self.remote_sae(master, "master").await?;
        let (store, m) = (self.store.clone(), master.to_string());
        let keys = blocking(move || store.deliver_reserved(&ids, &m, &slave)).await?;
        self.as_slave
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(Json(key_entries(keys)).into_response())
    }

    async fn peer_reserve(&self, caller: &Caller, body: &Bytes) -> Answer {
        self.only_peer(caller)?;
        let req: ReserveRequest = parse_json(body, "reservation")?;
        if !self.saes.contains(&req.slave_SAE_ID) {
            return Err(bad(format!(
                "slave SAE `{}` is not served by KME {}",
                req.slave_SAE_ID, self.id
            )));
        }
        if self.saes.contains(&req.master_SAE_ID) {
            return Err(bad(format!(
                "master SAE `{}` is served here, not at the peer",
                req.master_SAE_ID
            )));
        }
        let mut grants: Vec<(Uuid, Vec<UnitRef>)> = Vec::with_capacity(req.keys.len());
        for g in req.keys {
            grants.push((parse_key_id(&g.key_ID)?, g.units));
        }
        let store = self.store.clone();
        let out = blocking(move || {
            let first = store.reserve(&req.master_SAE_ID, &req.slave_SAE_ID, &grants)?;
            if first.reserved || first.missing.is_empty() {
                return Ok(first);
            }
            // Keys this site may just have committed: import the inbox and try again.
            store.import()?;
            store.reserve(&req.master_SAE_ID, &req.slave_SAE_ID, &grants)
        })
        .await?;
        Ok(Json(out).into_response())
    }

    async fn peer_release(&self, caller: &Caller, body: &Bytes) -> Answer {
        self.only_peer(caller)?;
        let req: ReleaseRequest = parse_json(body, "release")?;
        let ids = req
            .key_IDs
            .iter()
            .map(|s| parse_key_id(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let store = self.store.clone();
        let out = blocking(move || store.release(&ids)).await?;
        Ok(Json(out).into_response())
    }

    async fn peer_info(&self, caller: &Caller) -> Answer {
        self.only_peer(caller)?;
        let store = self.store.clone();
        let available = blocking(move || store.available()).await?;
        let mut saes: Vec<String> = self.saes.iter().cloned().collect();
        saes.sort();
        Ok(Json(PeerInfo {
            kme_ID: self.id.clone(),
            SAE_IDs: saes,
            stored_key_count: available,
        })
        .into_response())
    }

    fn only_peer(&self, caller: &Caller) -> std::result::Result<(), Fail> {
        match caller {
            Caller::Peer => Ok(()),
            Caller::Sae(s) | Caller::Other(s) => Err(unauthorized(format!(
                "`{s}` is not the peer KME of {}",
                self.id
            ))),
        }
    }
}

type Shared = State<Arc<Kme>>;

async fn h_status(
    State(k): Shared,
    Extension(c): Extension<Caller>,
    Path(slave): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        query_pairs(&q, &[])?;
        k.status(&c, &slave).await
    }
    .await;
    k.count(&r);
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn h_enc_keys(
    State(k): Shared,
    Extension(c): Extension<Caller>,
    Path(slave): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let r = async {
        let (number, size) = parse_enc_request(method == Method::POST, q.as_deref(), &body)?;
        k.enc_keys(&c, &slave, number, size).await
    }
    .await;
    k.count(&r);
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn h_dec_keys(
    State(k): Shared,
    Extension(c): Extension<Caller>,
    Path(master): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let r = async {
        let ids = parse_dec_request(method == Method::POST, q.as_deref(), &body)?;
        k.dec_keys(&c, &master, ids).await
    }
    .await;
    k.count(&r);
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn h_reserve(State(k): Shared, Extension(c): Extension<Caller>, body: Bytes) -> Response {
    let r = k.peer_reserve(&c, &body).await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn h_release(State(k): Shared, Extension(c): Extension<Caller>, body: Bytes) -> Response {
    let r = k.peer_release(&c, &body).await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn h_info(State(k): Shared, Extension(c): Extension<Caller>) -> Response {
    let r = k.peer_info(&c).await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn h_fallback(method: Method, uri: axum::http::Uri) -> Response {
    Fail(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {method} {} (ETSI GS QKD 014: /api/v1/keys/{{SAE_ID}}/status|enc_keys|dec_keys)",
            uri.path()
        ),
    )
    .into_response()
}

fn router(k: Arc<Kme>) -> Router {
    Router::new()
        .route("/api/v1/keys/{slave}/status", get(h_status))
        .route(
            "/api/v1/keys/{slave}/enc_keys",
            get(h_enc_keys).post(h_enc_keys),
        )
        .route(
            "/api/v1/keys/{master}/dec_keys",
            get(h_dec_keys).post(h_dec_keys),
        )
        .route("/kme/v1/info", get(h_info))
        .route("/kme/v1/reserve", post(h_reserve))
        .route("/kme/v1/release", post(h_release))
        .fallback(h_fallback)
        .with_state(k)
}

/// A running KME (in this process).
pub struct KmeHandle {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    /// Its ID.
    pub id: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<KmeStats>>>,
}

impl KmeHandle {
    /// Stop it and wait; returns its counters.
    pub fn stop(mut self) -> Result<KmeStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Wait until it stops (its stop flag).
    pub fn join(&mut self) -> Result<KmeStats> {
        self.thread
            .take()
            .expect("joined once")
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

/// Start a KME on its own threads; returns once it listens.
pub fn start(opts: KmeOptions) -> Result<KmeHandle> {
    if opts.saes.is_empty() {
        return Err(ConfigError::invalid("sae", "give the SAE IDs this KME serves (--sae)").into());
    }
    if opts.peer.is_some() != opts.peer_id.is_some() {
        return Err(ConfigError::invalid(
            "peer-id",
            "--peer and --peer-id go together (the peer KME's address and its certificate's subject CN)",
        )
        .into());
    }
    let server_cfg = tls::server_config(&opts.tls_cert, &opts.tls_key, &opts.client_ca)?;
    let own = tls::load_certs(&opts.tls_cert)?;
    let id = match &opts.kme_id {
        Some(i) => i.clone(),
        None => tls::common_name(&own[0]).ok_or_else(|| {
            ConfigError::invalid("kme-id", "the certificate has no subject CN; give --kme-id")
        })?,
    };
    let peer = match (&opts.peer, &opts.peer_id) {
        (Some(addr), Some(pid)) => {
            if opts.saes.contains(pid) || *pid == id {
                return Err(ConfigError::invalid(
                    "peer-id",
                    format!("`{pid}` names this KME or one of its SAEs"),
                )
                .into());
            }
            let cfg = tls::client_config(&opts.tls_cert, &opts.tls_key, &opts.client_ca)?;
            Some(Peer {
                id: pid.clone(),
                client: HttpsClient::new(addr, cfg, Some(pid.clone()))?,
                saes: tokio::sync::RwLock::new(None),
            })
        }
        _ => None,
    };
    let store = Arc::new(KeyStore::open(&opts.store)?);
    let takes_oldest = opts.peer_id.as_ref().is_none_or(|p| id < *p);
    let kme = Arc::new(Kme {
        store,
        id: id.clone(),
        saes: opts.saes.iter().cloned().collect(),
        peer,
        takes_oldest,
        max_key_per_request: opts.max_key_per_request.max(1),
        max_key_size: (opts.max_key_size / KEY_BITS).max(1) * KEY_BITS,
        in_flight: Mutex::new(HashSet::new()),
        requests: AtomicU64::new(0),
        as_master: AtomicU64::new(0),
        as_slave: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        recovered: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&opts.listen))
        .map_err(|e| Error::io(&opts.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(&opts.listen, e))?;
    let stop = opts.stop.clone();
    let s2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("kme".into())
        .spawn(move || rt.block_on(serve(kme, listener, server_cfg, opts, s2)))
        .map_err(|e| Error::io("kme thread", e))?;
    Ok(KmeHandle {
        addr,
        id,
        stop,
        thread: Some(thread),
    })
}

async fn serve(
    kme: Arc<Kme>,
    listener: tokio::net::TcpListener,
    cfg: rustls::ServerConfig,
    opts: KmeOptions,
    stop: Arc<AtomicBool>,
) -> Result<KmeStats> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let app = router(kme.clone());
    let peer_id = opts.peer_id.clone();
    // The store imports what the site commits; the recovery settles uncertain grants.
    let bg = {
        let k = kme.clone();
        let stop = stop.clone();
        let every = opts.import_interval;
        tokio::spawn(async move {
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let store = k.store.clone();
                let _ = blocking(move || store.import()).await;
                if tick.is_multiple_of(10) {
                    let _ = k.recover().await;
                }
                tick += 1;
                tokio::time::sleep(every).await;
            }
        })
    };
    while !stop.load(Ordering::Relaxed) {
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        let Ok(Ok((tcp, _))) = accepted else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, kme, peer_id) =
            (acceptor.clone(), app.clone(), kme.clone(), peer_id.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return; // no certificate, another CA, or not TLS: refused in the handshake
            };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(tls::common_name)
                .unwrap_or_default();
            let caller = if peer_id.as_deref() == Some(cn.as_str()) {
                Caller::Peer
            } else if kme.saes.contains(&cn) {
                Caller::Sae(cn)
            } else {
                Caller::Other(cn)
            };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(caller.clone());
                    app.clone().oneshot(req)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
    let _ = bg.await;
    Ok(kme.stats())
}
