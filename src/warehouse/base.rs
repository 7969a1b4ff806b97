//! The enterprise base's queue (migration 0019): the exchange tables' triggers queue what
//! each statement touched; these calls bring the base up to date with it.

use super::{Warehouse, WarehouseError};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

/// How far behind the enterprise base is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaseStatus {
    /// Statements queued and not yet taken in.
    pub queued: i64,
    /// When the oldest of them was queued.
    pub oldest: Option<DateTime<Utc>>,
    /// When the oldest a drain would take was queued: not counting those of sources whose
    /// first snapshot still runs, which wait for it to end however long it takes.
    pub oldest_drainable: Option<DateTime<Utc>>,
    /// When a drain last emptied the queue.
    pub drained_at: Option<DateTime<Utc>>,
    /// Statements the base could not take in, parked with their reasons.
    pub parked: i64,
    /// Of the queued statements, those of sources whose first snapshot is still running:
    /// they wait for it to end (migration 0048).
    pub waiting_for_loads: i64,
    /// A rebuild of the base at work, as its backend shows it (migration 0050).
    pub rebuild: Option<BaseWork>,
    /// A drain at work (on the base's lead connection), as its backend shows it.
    pub drain: Option<BaseWork>,
}

/// Which work on the enterprise base a backend names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseWorkKind {
    /// A rebuild: one transaction (`core.rebuild_all`).
    Rebuild,
    /// A drain: statements on the lead connection that holds the base's lock
    /// ([`Warehouse::drain_base`]).
    Drain,
}

/// Work on the enterprise base at work, as its backend names itself in its
/// `application_name`, which every role sees at once in `pg_stat_activity`:
/// `ebis:base-rebuild:<start, Unix milliseconds>:<step>` (set by `core.rebuild_step`, for
/// the rest of the rebuild's transaction) or `ebis:base-drain:<start>:<step>` (set by the
/// drain on its lead connection, for its session until the drain ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseWork {
    /// A rebuild or a drain.
    pub kind: BaseWorkKind,
    /// When it started.
    pub started: DateTime<Utc>,
    /// What it does now. A rebuild: `resolve` (records resolved), `enterprises` (the
    /// enterprises built from them; migration 0051), `index` (keys and indexes built
    /// again), `analyze`, `commit`. A drain: `take` (queued statements taken in: their
    /// records resolved and, fewer than [`PARALLEL_REFRESH_MIN`], their enterprises
    /// refreshed), `refresh:<enterprises>` (more, on two connections), `finish`.
    pub step: String,
}

impl BaseWork {
    /// The work an `application_name` names, if it names one.
    pub fn from_application_name(name: &str) -> Option<BaseWork> {
        let (kind, rest) = if let Some(rest) = name.strip_prefix("ebis:base-rebuild:") {
            (BaseWorkKind::Rebuild, rest)
        } else {
            (BaseWorkKind::Drain, name.strip_prefix("ebis:base-drain:")?)
        };
        let (started, step) = rest.split_once(':')?;
        Some(BaseWork {
            kind,
            started: DateTime::from_timestamp_millis(started.parse().ok()?)?,
            step: step.to_owned(),
        })
    }

    /// The `application_name` a drain started at `started` gives its lead connection
    /// while at `step`.
    fn drain_name(started: DateTime<Utc>, step: &str) -> String {
        format!("ebis:base-drain:{}:{step}", started.timestamp_millis())
    }

    /// Its step in words.
    pub fn doing(&self) -> String {
        match (self.kind, self.step.as_str()) {
            (BaseWorkKind::Rebuild, "resolve") => "resolving the records".into(),
            (BaseWorkKind::Rebuild, "enterprises") => "building the enterprises".into(),
            (BaseWorkKind::Rebuild, "index") => "building the keys and indexes".into(),
            (BaseWorkKind::Rebuild, "analyze") => "analyzing".into(),
            (BaseWorkKind::Rebuild, "commit") => "committing".into(),
            (BaseWorkKind::Drain, "take") => "taking queued statements in".into(),
            (BaseWorkKind::Drain, "finish") => "removing what it took from the queue".into(),
            (BaseWorkKind::Drain, step) => match step.strip_prefix("refresh:") {
                Some(n) => format!("refreshing {n} enterprises"),
                None => step.to_owned(),
            },
            (BaseWorkKind::Rebuild, step) => step.to_owned(),
        }
    }
}

/// A drain at work this long or longer is logged by the drainer when it ends and shown
/// by `ebis status` while it runs (a rebuild, a large catch-up's refresh); a drain beside
/// live capture takes milliseconds.
pub const LONG_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Enterprises from which a drain refreshes on two connections at once (half each): a
/// drain is otherwise one backend's work, on one core. Drains beside live capture stay
/// below it (a drain takes what about a second queued: 9,000 enterprises at 6,000
/// changes/s), so they never take both cores from the applies; what queued during a
/// catch-up or one large source transaction is above it.
pub const PARALLEL_REFRESH_MIN: i32 = 20_000;

/// How long a drain waits for a helper connection from the pool before refreshing on
/// its lead connection alone.
const HELPER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Statements a settle takes per drain (as `core.settle` does).
const SETTLE_BATCH: i32 = 2000;

/// A pooled connection that may hold the base's advisory lock as a session lock: unless
/// [`SessionLocked::unlocked`] says the lock is let go, it is closed instead of going
/// back to the pool (a drain that failed or was dropped midway), which ends the lock
/// with the session.
struct SessionLocked(Option<deadpool_postgres::Object>);

impl SessionLocked {
    fn client(&self) -> &deadpool_postgres::Object {
        self.0.as_ref().expect("held until dropped")
    }

    /// The lock is not held (any more): the connection may go back to the pool.
    fn unlocked(&mut self) {
        self.0.take();
    }
}

impl Drop for SessionLocked {
    fn drop(&mut self) {
        if let Some(held) = self.0.take() {
            drop(deadpool_postgres::Object::take(held));
        }
    }
}

impl Warehouse {
    /// Takes up to `max` queued statements into the base — or, when `rebuild_allowed`
    /// and the queue is large against the base, the whole queue by rebuilding the base
    /// (migration 0024); how many it took, or -1 when another drainer is at work (it
    /// never waits for one). Many enterprises to refresh are refreshed on two
    /// connections at once (migration 0033).
    pub async fn drain_base(&self, max: i32, rebuild_allowed: bool) -> Result<i64, WarehouseError> {
        self.drain_locked(max, rebuild_allowed, false).await
    }

    /// [`Warehouse::drain_base`] holding the base's advisory lock as a session lock on a
    /// lead connection, so that its refresh can run on two: `core.drain_prepare` takes
    /// and resolves, the lead and a helper connection each refresh half of the
    /// enterprises it hands back, and `core.drain_finish` removes what was taken. With
    /// `wait`, it waits for a drainer at work instead of returning -1.
    async fn drain_locked(
        &self,
        max: i32,
        rebuild_allowed: bool,
        wait: bool,
    ) -> Result<i64, WarehouseError> {
        let mut lead = SessionLocked(Some(self.client().await?));
        let client = lead.client();
        let locked: bool = if wait {
            client
                .execute("select pg_advisory_lock(hashtext('ebis.core'))", &[])
                .await?;
            true
        } else {
            client
                .query_one("select pg_try_advisory_lock(hashtext('ebis.core'))", &[])
                .await?
                .get(0)
        };
        if !locked {
            lead.unlocked();
            return Ok(-1);
        }
        // Named for `ebis status` while it works (a rebuild's own name overrides it for
        // its transaction); should the drain fail, the lead is closed, name and all.
        let started = Utc::now();
        let at = |step: String| {
            let name = BaseWork::drain_name(started, &step);
            async move {
                client
                    .execute("select set_config('application_name', $1, false)", &[&name])
                    .await
            }
        };
        at("take".into()).await?;
        let row = client
            .query_one(
                "select taken, ids, sources, keys from core.drain_prepare($1, $2, $3)",
                &[&max, &rebuild_allowed, &PARALLEL_REFRESH_MIN],
            )
            .await?;
        let taken: i64 = row.get(0);
        if let Some(mut keys) = row.get::<_, Option<Vec<String>>>(3) {
            // In the base's key order (migration 0046): each connection writes one range
            // of the base, page after page, instead of pages all over it.
            keys.sort_unstable();
            let ids: Vec<i64> = row.get(1);
            let sources: serde_json::Value = row.get(2);
            let refresh = "select core.refresh_enterprises($1)";
            at(format!("refresh:{}", keys.len())).await?;
            // A helper connection, unless the pool has none to spare soon (every other
            // one busy, or waiting for this drain's lock): then the lead refreshes all.
            match tokio::time::timeout(HELPER_WAIT, self.client()).await {
                Ok(Ok(helper)) => {
                    let (mine, theirs) = keys.split_at(keys.len() / 2);
                    let (mine, theirs): (&[&(dyn ToSql + Sync)], &[&(dyn ToSql + Sync)]) =
                        (&[&mine], &[&theirs]);
                    let (a, b) = tokio::join!(
                        client.execute(refresh, mine),
                        helper.execute(refresh, theirs)
                    );
                    a?;
                    b?;
                }
                _ => {
                    client.execute(refresh, &[&keys]).await?;
                }
            }
            at("finish".into()).await?;
            client
                .execute(
                    "select core.drain_finish($1, $2, $3)",
                    &[&ids, &sources, &(taken < i64::from(max))],
                )
                .await?;
        }
        client
            .batch_execute(
                "reset application_name; select pg_advisory_unlock(hashtext('ebis.core'))",
            )
            .await?;
        lead.unlocked();
        Ok(taken)
    }

    /// True when draining should wait: a streaming source is catching up a backlog
    /// (migration 0033) and the oldest queued statement a drain would take (not a loading
    /// source's) is younger than `during_catch_up`. A source counts as catching up only while it keeps applying (its
    /// status written in the last 30 seconds): a process that died mid-way holds nothing
    /// back. (A first load needs no wait here: each drain leaves its statements queued,
    /// migration 0048.)
    pub async fn defer_drain(
        &self,
        during_catch_up: std::time::Duration,
    ) -> Result<bool, WarehouseError> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "select exists (select 1 from ebis.source_status
                                 where backlog_since is not null
                                   and updated_at > clock_timestamp() - interval '30 seconds')
                        and coalesce((select min(queued_at) from core.pending
                                       where source is null or source <> all((select core.loading_sources())::text[]))
                                       > clock_timestamp() - make_interval(secs => $1::float8),
                                     true)",
                &[&during_catch_up.as_secs_f64()],
            )
            .await?
            .get(0))
    }

    /// Takes the whole queue in now (waiting for a drainer at work), with statistics
    /// refreshed first: afterwards the base holds every record applied before the call.
    pub async fn settle_base(&self) -> Result<i64, WarehouseError> {
        self.analyze_stale().await?;
        let mut n = 0;
        loop {
            let took = self.drain_locked(SETTLE_BATCH, true, true).await?;
            n += took.max(0);
            if took < i64::from(SETTLE_BATCH) {
                return Ok(n);
            }
        }
    }

    /// Analyzes the warehouse tables that changed by more than autovacuum's threshold
    /// since they were last analyzed; their names.
    pub async fn analyze_stale(&self) -> Result<Vec<String>, WarehouseError> {
        let client = self.client().await?;
        Ok(client
            .query_one("select ebis.analyze_stale()", &[])
            .await?
            .get(0))
    }

    /// Parks the oldest queued statement, which the base refuses, with `reason`; its
    /// number, or `None` when a drainer is at work or nothing is queued.
    pub async fn park_oldest(&self, reason: &str) -> Result<Option<i64>, WarehouseError> {
        let client = self.client().await?;
        let parked: Option<i64> = client
            .query_one("select core.park_oldest($1)", &[&reason])
            .await?
            .get(0);
        Ok(parked.filter(|n| *n >= 0))
    }

    /// The queue's length and age, and a rebuild or drain at work.
    pub async fn base_status(&self) -> Result<BaseStatus, WarehouseError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "with l as (select core.loading_sources() as sources)
                 select (select count(*) from core.pending),
                        (select min(queued_at) from core.pending),
                        (select max(drained_at) from core.base_complete),
                        (select count(*) from core.pending_parked),
                        (select count(*) from core.pending, l where source = any(l.sources)),
                        w.rebuild,
                        (select min(queued_at) from core.pending, l
                          where source is null or source <> all(l.sources)),
                        w.drain
                 from (select min(a.application_name) filter (where a.application_name like 'ebis:base-rebuild:%') as rebuild,
                              min(a.application_name) filter (where a.application_name like 'ebis:base-drain:%') as drain
                       from pg_stat_activity a
                       where a.datname = current_database() and a.application_name like 'ebis:base-%') w",
                &[],
            )
            .await?;
        let work = |i: usize| {
            row.get::<_, Option<String>>(i)
                .as_deref()
                .and_then(BaseWork::from_application_name)
        };
        Ok(BaseStatus {
            queued: row.get(0),
            oldest: row.get(1),
            drained_at: row.get(2),
            parked: row.get(3),
            waiting_for_loads: row.get(4),
            rebuild: work(5),
            oldest_drainable: row.get(6),
            drain: work(7),
        })
    }
}
