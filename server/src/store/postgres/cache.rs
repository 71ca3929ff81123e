//! This node's copies of the rows every request on PostgreSQL reads and that almost
//! never change — a session with its user (the bearer check of `me`, userinfo and the
//! admin API), a user's and a client's role names, a client, a role's permissions —
//! kept only while they are known to be current.
//!
//! Every change to those rows commits a `NOTIFY latchkey_changes` in its own
//! transaction (triggers, migration 16: whoever changes the row — this server, another
//! node, the CLI, an operator's SQL — cannot forget it), and each node's listener
//! ([`listen`]) drops what the notification names. So a revocation on one node is seen by
//! every other node as soon as the notification arrives, with no polling interval and
//! no time-to-live to wait out. Two rules keep a stale row out:
//!
//! - **Distrust while deaf.** Until the listener has connected and issued `LISTEN`, and
//!   from the moment its connection fails until it has reconnected, the caches answer
//!   nothing and keep nothing: every read goes to the database. Reconnecting empties them
//!   (a change may have committed while nobody listened), then trusts them again.
//! - **No late fills.** A read that misses takes a [`Ticket`] before going to the
//!   database; its answer is kept only if no change was applied meanwhile (the
//!   generation it saw is still current), so a row read just before a revocation
//!   committed cannot be put back after the revocation's notification dropped it.
//! - **Read your own writes.** A write this node commits that may touch a cached row
//!   (counted by [`crate::store::Db`]) empties this node's caches before their next
//!   answer, so its own change is seen at once, before its notification comes back.
//!
//! What a refresh touches on a session (`last_used_at`, `idle_expires_at`, `dpop_jkt`)
//! notifies nothing (the trigger skips it), so a cached session's idle deadline may be
//! older than the database's: it only ever moves later, and a cached session that looks
//! idle-expired is read again ([`super::PostgresTokens`]).
//!
//! Memory is bounded: each map holds at most its capacity, and a full map makes room by
//! dropping an arbitrary entry (any entry can be read again).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::sqlx::{self, PgPool};
use tokio::sync::watch;

use crate::store::clients::ClientRow;
use crate::store::sessions::SessionRow;
use crate::store::users::UserRow;

/// The channel the triggers of migration 16 notify.
pub const CHANNEL: &str = "latchkey_changes";

/// Entries per map: at about half a KiB a session and as much a user, the two stay under
/// 16 MiB together; clients and roles are few.
const SESSIONS: usize = 16_384;
const USERS: usize = 16_384;
const USER_ROLES: usize = 16_384;
const CLIENTS: usize = 4_096;
const ROLES: usize = 1_024;

/// Every node sends a `ping:` on the channel this often, and a listener that has heard
/// nothing (no change, no node's ping) for [`SILENCE`] takes its connection for dead: a
/// half-open TCP connection (a failover, a firewall dropping the flow) reports no error,
/// and would otherwise leave the caches trusted while nothing arrives.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_secs(12);

/// After a lost connection or a failed attempt, wait this long before the next attempt
/// (doubling up to the maximum while attempts fail): a database that is restarting is
/// not hammered, and meanwhile every read goes to it.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The caches' counters, registered with the server's metrics.
#[derive(Clone)]
pub struct CacheMetrics {
    /// Lookups by cache (`session`, `user_roles`, `client`, `client_roles`,
    /// `permissions`) and outcome (`hit`, `miss`, `bypass` while not trusted).
    pub lookups: IntCounterVec,
    /// Change notifications applied.
    pub changes: prometheus::IntCounter,
    /// 1 while the listener is connected (and the caches trusted).
    pub listening: IntGauge,
}

/// What the listener has done so far (for tests and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStatus {
    /// Connected and listening: the caches are trusted.
    pub listening: bool,
    /// The listener connection's server process id, while listening.
    pub backend_pid: Option<i32>,
    /// Times the listener (re)connected and emptied the caches.
    pub connects: u64,
    /// Change notifications applied, by what they named.
    pub sessions_changed: u64,
    pub users_changed: u64,
    pub clients_changed: u64,
    pub roles_changed: u64,
}

/// Taken before a read that missed; the answer is kept only if it is still current.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

pub struct Caches {
    maps: Mutex<Maps>,
    /// This node's committed writes ([`crate::store::Db`] counts them): when it moves,
    /// the maps are emptied before they answer, so a change made here is seen here at
    /// once, before its notification arrives. (Writes that change no cached row — a
    /// rotation, a DPoP proof — go around the count.)
    local_writes: Arc<AtomicU64>,
    trusted: AtomicBool,
    status: watch::Sender<ListenerStatus>,
    metrics: CacheMetrics,
}

struct Maps {
    /// Bumped by every change applied, every local write and every (re)connection.
    generation: u64,
    /// The node's count of committed writes when the maps were last emptied for one.
    seen_writes: u64,
    sessions: Bounded<String, SessionRow>,
    /// The users of cached sessions, apart, so a user's change drops one entry.
    users: Bounded<String, UserRow>,
    user_roles: Bounded<String, Vec<String>>,
    clients: Bounded<String, Option<ClientRow>>,
    client_roles: Bounded<String, Vec<String>>,
    permissions: Bounded<String, BTreeSet<String>>,
}

impl Maps {
    fn empty(generation: u64) -> Self {
        Maps {
            generation,
            seen_writes: 0,
            sessions: Bounded::new(SESSIONS),
            users: Bounded::new(USERS),
            user_roles: Bounded::new(USER_ROLES),
            clients: Bounded::new(CLIENTS),
            client_roles: Bounded::new(CLIENTS),
            permissions: Bounded::new(ROLES),
        }
    }

    fn clear(&mut self) {
        let seen_writes = self.seen_writes;
        *self = Maps { seen_writes, ..Maps::empty(self.generation + 1) };
    }

    /// Drops what a notification's payload names.
    fn apply(&mut self, payload: &str) {
        self.generation += 1;
        match payload.split_once(':') {
            Some(("session", id)) => self.sessions.remove(id),
            Some(("user", id)) => {
                self.users.remove(id);
                self.user_roles.remove(id);
            }
            Some(("client", id)) => {
                self.clients.remove(id);
                self.client_roles.remove(id);
            }
            Some(("role", name)) => self.permissions.remove(name),
            // Names no row (a truncate) or is not a payload this version knows (a newer
            // node's?): forget everything.
            _ => self.clear(),
        }
    }
}

/// Which map a lookup is for.
#[derive(Clone, Copy)]
pub enum Cached {
    Session,
    UserRoles,
    Client,
    ClientRoles,
    Permissions,
}

impl Cached {
    fn label(self) -> &'static str {
        match self {
            Cached::Session => "session",
            Cached::UserRoles => "user_roles",
            Cached::Client => "client",
            Cached::ClientRoles => "client_roles",
            Cached::Permissions => "permissions",
        }
    }
}

impl Caches {
    pub fn new(local_writes: Arc<AtomicU64>, metrics: CacheMetrics) -> Self {
        metrics.listening.set(0);
        Self {
            maps: Mutex::new(Maps::empty(0)),
            local_writes,
            trusted: AtomicBool::new(false),
            status: watch::Sender::new(ListenerStatus::default()),
            metrics,
        }
    }

    /// Follows the listener's status (tests wait on it instead of sleeping).
    pub fn status(&self) -> watch::Receiver<ListenerStatus> {
        self.status.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // Every change to the maps is a whole insert or removal: a panic cannot leave
        // one half-made.
        self.maps.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The maps, emptied first if this node committed a write since they last were.
    fn current(&self) -> MutexGuard<'_, Maps> {
        let mut maps = self.lock();
        let writes = self.local_writes.load(Ordering::Acquire);
        if writes != maps.seen_writes {
            maps.clear();
            maps.seen_writes = writes;
        }
        maps
    }

    fn count(&self, cache: Cached, outcome: &str) {
        self.metrics.lookups.with_label_values(&[cache.label(), outcome]).inc();
    }

    /// The cached value, or a ticket to fill it with (`None`: not trusted now, read and
    /// keep nothing).
    fn lookup<V: Clone>(&self, cache: Cached, key: &str, map: impl Fn(&Maps) -> &Bounded<String, V>) -> Lookup<V> {
        if !self.trusted.load(Ordering::Acquire) {
            self.count(cache, "bypass");
            return Lookup::Bypass;
        }
        let maps = self.current();
        match map(&maps).get(key) {
            Some(value) => {
                self.count(cache, "hit");
                Lookup::Hit(value.clone())
            }
            None => {
                self.count(cache, "miss");
                Lookup::Miss(Ticket(maps.generation))
            }
        }
    }

    /// Keeps `value`, read from the database after `ticket` was taken, unless a change
    /// was applied (or the listener reconnected) since.
    fn fill<V>(&self, ticket: Ticket, key: &str, value: V, map: impl FnOnce(&mut Maps) -> &mut Bounded<String, V>) {
        let mut maps = self.current();
        if maps.generation == ticket.0 && self.trusted.load(Ordering::Acquire) {
            map(&mut maps).insert(key.to_string(), value);
        }
    }

    /// A session with its user: a hit only when both are cached.
    pub fn session(&self, id: &str) -> Lookup<(SessionRow, UserRow)> {
        if !self.trusted.load(Ordering::Acquire) {
            self.count(Cached::Session, "bypass");
            return Lookup::Bypass;
        }
        let maps = self.current();
        let found = maps.sessions.get(id).and_then(|session| Some((session, maps.users.get(&session.user_id)?)));
        match found {
            Some((session, user)) => {
                self.count(Cached::Session, "hit");
                Lookup::Hit((session.clone(), user.clone()))
            }
            None => {
                self.count(Cached::Session, "miss");
                Lookup::Miss(Ticket(maps.generation))
            }
        }
    }

    /// Keeps a session and its user (a session whose user is gone is not kept).
    pub fn fill_session(&self, ticket: Ticket, id: &str, session: SessionRow, user: UserRow) {
        let mut maps = self.current();
        if maps.generation == ticket.0 && self.trusted.load(Ordering::Acquire) {
            maps.users.insert(user.id.clone(), user);
            maps.sessions.insert(id.to_string(), session);
        }
    }

    /// Drops one cached session (read again when it looked idle-expired).
    pub fn forget_session(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    pub fn user_roles(&self, user_id: &str) -> Lookup<Vec<String>> {
        self.lookup(Cached::UserRoles, user_id, |m| &m.user_roles)
    }

    pub fn fill_user_roles(&self, ticket: Ticket, user_id: &str, roles: Vec<String>) {
        self.fill(ticket, user_id, roles, |m| &mut m.user_roles);
    }

    /// A client, or that there is none (an unknown id is asked about as often as a
    /// known one, by whoever sends it; a new client notifies nothing, so `None` is not
    /// kept).
    pub fn client(&self, id: &str) -> Lookup<Option<ClientRow>> {
        self.lookup(Cached::Client, id, |m| &m.clients)
    }

    pub fn fill_client(&self, ticket: Ticket, id: &str, client: Option<ClientRow>) {
        if client.is_some() {
            self.fill(ticket, id, client, |m| &mut m.clients);
        }
    }

    pub fn client_roles(&self, client_id: &str) -> Lookup<Vec<String>> {
        self.lookup(Cached::ClientRoles, client_id, |m| &m.client_roles)
    }

    pub fn fill_client_roles(&self, ticket: Ticket, client_id: &str, roles: Vec<String>) {
        self.fill(ticket, client_id, roles, |m| &mut m.client_roles);
    }

    pub fn permissions(&self, role: &str) -> Lookup<BTreeSet<String>> {
        self.lookup(Cached::Permissions, role, |m| &m.permissions)
    }

    pub fn fill_permissions(&self, ticket: Ticket, role: &str, permissions: BTreeSet<String>) {
        self.fill(ticket, role, permissions, |m| &mut m.permissions);
    }

    /// Connected and listening: empty the caches (changes may have been missed while
    /// nobody listened), then trust them.
    fn connected(&self, backend_pid: i32) {
        self.lock().clear();
        self.trusted.store(true, Ordering::Release);
        self.metrics.listening.set(1);
        self.status.send_modify(|s| {
            s.listening = true;
            s.backend_pid = Some(backend_pid);
            s.connects += 1;
        });
    }

    /// The listener's connection failed: stop trusting (and holding) anything.
    fn disconnected(&self) {
        self.trusted.store(false, Ordering::Release);
        self.lock().clear();
        self.metrics.listening.set(0);
        self.status.send_modify(|s| {
            s.listening = false;
            s.backend_pid = None;
        });
    }

    fn applied(&self, payload: &str) {
        if payload.starts_with("ping:") {
            return; // a heartbeat (see `HEARTBEAT`): heard, and nothing changed
        }
        self.lock().apply(payload);
        self.metrics.changes.inc();
        self.status.send_modify(|s| match payload.split_once(':').map(|(kind, _)| kind) {
            Some("session") => s.sessions_changed += 1,
            Some("user") => s.users_changed += 1,
            Some("client") => s.clients_changed += 1,
            Some("role") => s.roles_changed += 1,
            _ => {}
        });
    }
}

/// A lookup's outcome.
pub enum Lookup<V> {
    Hit(V),
    /// Not cached: read, then fill with this ticket.
    Miss(Ticket),
    /// The caches are not trusted now: read, and keep nothing.
    Bypass,
}

/// The listener: connects (a connection of its own from the pool), `LISTEN`s, trusts the
/// caches and applies each notification; on any failure distrusts them and connects
/// again. Ends when the caches are gone (their server stopped) or the pool is closed.
pub async fn listen(caches: Weak<Caches>, pool: PgPool) {
    // However this task ends — returning, panicking, its runtime shutting down — the
    // caches stop being trusted with it.
    let _deaf_when_gone = DistrustOnDrop(caches.clone());
    let mut retry = RETRY_FIRST;
    loop {
        let mut listener = match subscribe(&pool).await {
            Ok((listener, pid)) => {
                let Some(caches) = caches.upgrade() else { return };
                caches.connected(pid);
                tracing::info!(backend_pid = pid, "listening for changes to cached rows");
                retry = RETRY_FIRST;
                listener
            }
            Err(e) if pool.is_closed() => {
                tracing::debug!(error = %e, "the pool closed: the change listener stops");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = retry.as_millis() as u64, "cannot listen for changes; the caches are off");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        let lost = loop {
            // Dropping `try_recv` on silence is safe: the connection is given up then.
            match tokio::time::timeout(SILENCE, listener.try_recv()).await {
                Ok(Ok(Some(notification))) => {
                    let Some(caches) = caches.upgrade() else { return };
                    caches.applied(notification.payload());
                }
                Ok(Ok(None)) => break "the connection closed".to_string(),
                Ok(Err(e)) => break e.to_string(),
                Err(_) => break format!("nothing heard for {} s, not even a heartbeat", SILENCE.as_secs()),
            }
        };
        let Some(live) = caches.upgrade() else { return };
        live.disconnected();
        drop(live);
        if pool.is_closed() {
            return;
        }
        tracing::warn!(reason = %lost, "lost the change listener's connection; the caches are off until it is back");
        tokio::time::sleep(retry).await;
    }
}

/// Sends this node's heartbeat every [`HEARTBEAT`] while the caches live (through the
/// pool, so it also shows the listener that the database still answers).
pub async fn heartbeat(caches: Weak<Caches>, pool: PgPool) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    loop {
        ticks.tick().await;
        if caches.strong_count() == 0 {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify($1, 'ping:')").bind(CHANNEL).execute(&pool).await;
        if let Err(e) = sent {
            // The listener hears the silence; nothing more to do here.
            tracing::debug!(error = %e, "the cache heartbeat was not sent");
        }
    }
}

struct DistrustOnDrop(Weak<Caches>);

impl Drop for DistrustOnDrop {
    fn drop(&mut self) {
        if let Some(caches) = self.0.upgrade() {
            caches.disconnected();
        }
    }
}

/// A listening connection and its server process id.
async fn subscribe(pool: &PgPool) -> Result<(PgListener, i32), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is reported (`Ok(None)`), not silently replaced: the caches
    // must be emptied when it comes back.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut listener).await?;
    Ok((listener, pid))
}

/// A map of at most `capacity` entries; a full one drops an arbitrary entry to make room.
struct Bounded<K, V> {
    entries: HashMap<K, V>,
    capacity: usize,
}

impl<V> Bounded<String, V> {
    fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), capacity }
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }

    fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

impl<K: Eq + Hash + Clone, V> Bounded<K, V> {
    fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&key)
            && let Some(victim) = self.entries.keys().next().cloned()
        {
            self.entries.remove(&victim);
        }
        self.entries.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches() -> (Caches, Arc<AtomicU64>) {
        let metrics = CacheMetrics {
            lookups: IntCounterVec::new(prometheus::Opts::new("lookups", "-"), &["cache", "outcome"]).unwrap(),
            changes: prometheus::IntCounter::new("changes", "-").unwrap(),
            listening: IntGauge::new("listening", "-").unwrap(),
        };
        let writes = Arc::new(AtomicU64::new(0));
        (Caches::new(writes.clone(), metrics), writes)
    }

    fn miss<V>(lookup: Lookup<V>) -> Ticket {
        match lookup {
            Lookup::Miss(ticket) => ticket,
            Lookup::Hit(_) => panic!("a hit"),
            Lookup::Bypass => panic!("bypassed"),
        }
    }

    #[test]
    fn nothing_is_answered_or_kept_until_the_listener_is_connected() {
        let (caches, _) = caches();
        assert!(matches!(caches.user_roles("u"), Lookup::Bypass));
        caches.connected(1);
        let ticket = miss(caches.user_roles("u"));
        caches.fill_user_roles(ticket, "u", vec!["admin".into()]);
        assert!(matches!(caches.user_roles("u"), Lookup::Hit(roles) if roles == ["admin"]));
        caches.disconnected();
        assert!(matches!(caches.user_roles("u"), Lookup::Bypass));
        caches.connected(2);
        miss(caches.user_roles("u")); // emptied: changes may have been missed meanwhile
    }

    #[test]
    fn a_read_that_a_change_or_a_local_write_overtook_is_not_kept() {
        let (caches, writes) = caches();
        caches.connected(1);
        let ticket = miss(caches.user_roles("u"));
        caches.applied("user:someone-else");
        caches.fill_user_roles(ticket, "u", vec!["stale".into()]);
        miss(caches.user_roles("u"));

        let ticket = miss(caches.user_roles("u"));
        writes.fetch_add(1, Ordering::Release);
        caches.fill_user_roles(ticket, "u", vec!["stale".into()]);
        miss(caches.user_roles("u"));
    }

    #[test]
    fn a_notification_drops_what_it_names_a_heartbeat_nothing_and_a_truncate_everything() {
        let (caches, _) = caches();
        caches.connected(1);
        for role in ["a", "b"] {
            let ticket = miss(caches.permissions(role));
            caches.fill_permissions(ticket, role, BTreeSet::from([format!("{role}:read")]));
        }
        caches.applied("role:a");
        miss(caches.permissions("a"));
        assert!(matches!(caches.permissions("b"), Lookup::Hit(_)));
        caches.applied("ping:");
        assert!(matches!(caches.permissions("b"), Lookup::Hit(_)), "a heartbeat drops nothing");
        caches.applied("truncate:roles");
        miss(caches.permissions("b"));
    }

    #[test]
    fn a_full_map_makes_room_and_stays_bounded() {
        let mut map = Bounded::new(2);
        for key in ["a", "b", "c", "d"] {
            map.insert(key.to_string(), ());
        }
        assert_eq!(map.entries.len(), 2);
        assert!(map.get("d").is_some(), "the newest entry is kept");
        map.insert("d".to_string(), ());
        assert_eq!(map.entries.len(), 2, "replacing an entry evicts nothing");
    }
}
