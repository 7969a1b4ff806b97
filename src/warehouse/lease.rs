//! Source leases (migration 0028): which `ebis run` process captures each source, for how
//! long, and the fence every apply checks, so a process that lost its lease writes
//! nothing more while another takes the source over.

use super::{Warehouse, WarehouseError};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A lease held on a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The source.
    pub source: String,
    /// The holding process (`host:pid:nonce`).
    pub holder: String,
    /// Raised by each take-over.
    pub epoch: i64,
}

/// A lease renewed in the background until dropped ([`Warehouse::keep_lease`]).
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: Lease,
    /// Set when a renewal found the lease lost (expired or taken over).
    lost: Arc<AtomicBool>,
    /// Renewals that failed or had no answer within half the lease.
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    /// The lease kept.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// False once a renewal found the lease expired or taken over: the holder must stop
    /// writing (its applies are refused anyway) and stand by.
    pub fn is_held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
    }

    /// Renewals that failed (the warehouse unreachable, the connection refused) or had no
    /// answer within half the lease, since the keeper started. Each is also counted in
    /// `/metrics` (`ebis_lease_renewals_failed_total`): a lease renewed late or not at all
    /// expires, and a standby takes the source over.
    pub fn failed_renewals(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who holds a source now (an unexpired lease).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LeaseHolder {
    /// The source.
    pub source: String,
    /// The holding process.
    pub holder: String,
    /// Its epoch.
    pub epoch: i64,
    /// Since when it holds it.
    pub acquired_at: DateTime<Utc>,
    /// Until when, unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// This process's name as a lease holder: host, process id and a nonce (a process id is
/// reused after a restart; the nonce tells the incarnations apart).
pub fn holder_name() -> String {
    use std::sync::OnceLock;
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned());
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{host}:{}:{nonce:08x}", std::process::id())
    })
    .clone()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Warehouse {
    /// Takes the lease of `source` for `ttl` when it is free, expired, or already this
    /// holder's (a new epoch each time); `None` while another holds it.
    pub async fn acquire_lease(
        &self,
        source: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, WarehouseError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // FOR UPDATE, which waits for the applies in flight (their fence holds the row
        // FOR KEY SHARE, which the holder's renewals do not wait for): a take-over
        // commits only after them.
        tx.execute(
            "select 1 from ebis.lease where source = $1 for update",
            &[&source],
        )
        .await?;
        let row = tx
            .query_opt(
                "insert into ebis.lease as l (source, holder, epoch, acquired_at, renewed_at, expires_at)
                 values ($1, $2, 1, clock_timestamp(), clock_timestamp(),
                         clock_timestamp() + $3::bigint * interval '1 millisecond')
                 on conflict (source) do update set holder = excluded.holder, epoch = l.epoch + 1,
                   acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at,
                   expires_at = excluded.expires_at
                 where l.expires_at < clock_timestamp() or l.holder = excluded.holder
                 returning epoch",
                &[&source, &holder, &millis(ttl)],
            )
            .await?;
        tx.commit().await?;
        Ok(row.map(|r| Lease {
            source: source.to_owned(),
            holder: holder.to_owned(),
            epoch: r.get(0),
        }))
    }

    /// Extends a lease still held; false when it expired or was taken over (the holder
    /// must then stop writing: its applies are refused anyway).
    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, WarehouseError> {
        let client = self.client().await?;
        renew_on(&client, lease, ttl).await
    }

    /// Keeps `lease` renewed every fifth of `ttl` until the keeper is dropped, on a
    /// connection of its own: a renewal never waits for the pool, whose connections a
    /// split apply, the base's drainer, a rebuild or a comparison may all hold for longer
    /// than `ttl` (in the capture bench, a catch-up's drain refreshing on two connections, a
    /// settle waiting for it and the bench's own connection held all four for 6.6 s, and
    /// the lease ran out behind them). A renewal that fails (the warehouse unreachable) or
    /// has no answer within half of `ttl` (a connection gone silent: a network that drops
    /// packets and closes nothing, which only a timeout finds) drops that connection and
    /// is tried again on a new one (a tenth of `ttl` after one that hung, so that another
    /// still gets through before the lease lapses); should it expire meanwhile, the next
    /// apply is refused by its fence.
    pub fn keep_lease(&self, lease: Lease, ttl: Duration) -> LeaseKeeper {
        let lost = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let task = {
            let (wh, lease, lost, failed) =
                (self.clone(), lease.clone(), lost.clone(), failed.clone());
            tokio::spawn(async move {
                let mut conn: Option<tokio_postgres::Client> = None;
                // Failures in a row: the first is logged, and the renewal that ends them.
                let mut failing = 0u64;
                // The next renewal's wait: a fifth of the lease; a tenth after one that
                // hung (it took half), so another still gets through before the lease
                // lapses. One refused at once keeps the fifth: a warehouse that is down
                // or full is not asked more often.
                let mut wait = ttl / 5;
                loop {
                    tokio::time::sleep(wait).await;
                    // The connection is kept only once it answered: one that failed or
                    // hung (dropped with the timed-out renewal) is replaced next time.
                    let renewed = tokio::time::timeout(ttl / 2, async {
                        let c = match conn.take() {
                            Some(c) => c,
                            None => wh.dedicated().await?,
                        };
                        let held = renew_on(&c, &lease, ttl).await?;
                        conn = Some(c);
                        Ok::<_, WarehouseError>(held)
                    })
                    .await;
                    wait = if renewed.is_err() { ttl / 10 } else { ttl / 5 };
                    let error = match renewed {
                        Ok(Ok(true)) => None,
                        Ok(Ok(false)) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some(format!(
                            "no answer within {} ms, half the lease",
                            (ttl / 2).as_millis()
                        )),
                    };
                    match error {
                        Some(error) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!(
                                crate::metrics::names::LEASE_RENEWALS_FAILED,
                                "source" => lease.source.clone()
                            )
                            .increment(1);
                            if failing == 0 {
                                tracing::warn!(source = %lease.source, error = %error, "renewing the source's lease failed: tried again on a new connection (the lease lapses if no renewal reaches the warehouse in time)");
                            }
                            failing += 1;
                        }
                        None if failing > 0 => {
                            tracing::info!(source = %lease.source, failed = failing, "the source's lease is renewed again");
                            failing = 0;
                        }
                        None => {}
                    }
                }
            })
        };
        LeaseKeeper {
            lease,
            lost,
            failed,
            task,
        }
    }

    /// Gives a lease up (a clean stop): a standby takes the source at once.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        client
            .execute(
                "update ebis.lease set expires_at = '-infinity'
                 where source = $1 and holder = $2 and epoch = $3",
                &[&lease.source, &lease.holder, &lease.epoch],
            )
            .await?;
        Ok(())
    }

    /// Every unexpired lease: who captures what.
    pub async fn lease_holders(&self) -> Result<Vec<LeaseHolder>, WarehouseError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "select source, holder, epoch, acquired_at, expires_at from ebis.lease
                 where expires_at > clock_timestamp() order by source",
                &[],
            )
            .await?
            .iter()
            .map(|r| LeaseHolder {
                source: r.get(0),
                holder: r.get(1),
                epoch: r.get(2),
                acquired_at: r.get(3),
                expires_at: r.get(4),
            })
            .collect())
    }

    /// Makes this warehouse's applies of `lease.source` check the lease first.
    pub fn fence(&self, lease: Lease) {
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lease.source.clone(), lease);
    }

    /// Forgets the fence of `source` (its lease was given up or lost).
    pub fn unfence(&self, source: &str) {
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(source);
    }

    /// The lease an apply of `source` must still hold, if this process fences it.
    pub(super) fn fence_of(&self, source: &str) -> Option<Lease> {
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()
    }
}

/// Extends `lease` on `client`; false when it expired or was taken over.
async fn renew_on(
    client: &tokio_postgres::Client,
    lease: &Lease,
    ttl: Duration,
) -> Result<bool, WarehouseError> {
    let n = client
        .execute(
            "update ebis.lease set renewed_at = clock_timestamp(),
               expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond'
             where source = $1 and holder = $2 and epoch = $3 and expires_at > clock_timestamp()",
            &[&lease.source, &lease.holder, &lease.epoch, &millis(ttl)],
        )
        .await?;
    Ok(n == 1)
}

/// In an apply transaction, before anything is written: the lease must still be this
/// holder's and unexpired. The row stays locked (FOR KEY SHARE) until the transaction
/// ends, so a take-over, which locks it FOR UPDATE first, waits for this apply to commit
/// or roll back. The holder's renewals (updates of no key) do not wait: under FOR SHARE
/// a renewal queued behind the applies in flight, one after another (250 ms per renewal
/// in a catch-up, with a pooled connection held all the while), and could in principle
/// starve until the lease expired.
pub(super) async fn check_fence(
    tx: &tokio_postgres::Transaction<'_>,
    lease: &Lease,
) -> Result<(), WarehouseError> {
    let held = tx
        .query_opt(
            "select 1 from ebis.lease where source = $1 and holder = $2 and epoch = $3
               and expires_at > clock_timestamp() for key share",
            &[&lease.source, &lease.holder, &lease.epoch],
        )
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(WarehouseError::LeaseLost(lease.source.clone())),
    }
}
