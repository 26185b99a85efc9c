//! [`PostgresArchive`]: room and direct-message history in two PostgreSQL tables, written in
//! batches by a background task.
//!
//! The tables (created if missing): `<table>` `room text, ms int8, seq int8, frame bytea`,
//! keyed by `(room, ms, seq)` (a Redis stream id is `ms-seq`, so the key orders a room's
//! messages as its history does), and `<table>_dm` `a, b, id text COLLATE "C", ms int8, frame
//! bytea`, keyed by `(a, b, id)` (the conversation's users, the lesser first; a UUIDv7's text
//! in byte order is its time order); each with an index on `ms` for the age trim.
//! [`PostgresArchive::keep`] puts
//! a message on a bounded queue and returns; the writer takes up to [`ArchiveConfig::batch`]
//! at a time and inserts them in one statement (`UNNEST` of arrays, `ON CONFLICT DO
//! NOTHING`: a message kept twice is stored once). While the database is unreachable the
//! writer retries its batch (backing off to 5 s) and the queue fills; past
//! [`ArchiveConfig::queue`] messages or [`ArchiveConfig::queue_bytes`] of frames a message is
//! not archived, counted and logged. A message the database itself refuses (a data or
//! integrity error, SQLSTATE class 22 or 23: say a user id with a NUL, which a `text` column
//! cannot hold) would fail its batch for good: the batch is then written one message at a
//! time, and the refused ones are dropped, counted and logged, so that the others and
//! everything after them are archived. While messages
//! older than a page's `before` still wait to be written, that page is an error, not a page
//! with a gap (this instance's queue only: another instance catching up is not seen). Once an
//! hour rows older than [`ArchiveConfig::max_age`] are deleted, on a connection of its own.
//!
//! One connection, opened again when it breaks (a failed attempt is not repeated for a
//! second: the requests meanwhile fail at once); the reads share it with the writer. Every
//! statement has a time limit ([`STATEMENT_TIMEOUT`]): a stalled database fails a history
//! request, it does not hold it.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::{mpsc, Mutex};
use tokio_postgres::{Client, NoTls};

use super::{Archive, Archived, ArchivedDirect};
use crate::{
    backend::{
        history::{direct_id, HistoryPage},
        Reply,
    },
    error::BackendError,
    logs::Throttled,
    protocol::{now_ms, MessageId, RoomId, UserId},
};

/// How the archive keeps messages.
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// The table of room messages; direct messages go to `<table>_dm` (letters, digits and
    /// `_`, starting with a letter or `_`; at most 52 bytes, so that the names derived from it,
    /// up to `<table>_dm_ms`, fit PostgreSQL's 63). Quoted in every statement:
    /// a reserved word works, and case counts. Default `roomcast_messages`.
    pub table: String,
    /// Messages waiting to be written; past it a message is not archived (counted in
    /// `roomcast_archive_dropped_total`). Default 100,000.
    pub queue: usize,
    /// Bytes of frames waiting to be written (the batch being written included); past it a
    /// message is not archived (counted the same way), so that a database that is down costs
    /// at most this much memory however large the messages. Default 64 MiB.
    pub queue_bytes: usize,
    /// Messages written in one statement at most. Default 500.
    pub batch: usize,
    /// Rows older than this are deleted (once an hour); `None` keeps them for good. Default
    /// 365 days.
    pub max_age: Option<Duration>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            table: "roomcast_messages".into(),
            queue: 100_000,
            queue_bytes: 64 << 20,
            batch: 500,
            max_age: Some(Duration::from_secs(365 * 24 * 3600)),
        }
    }
}

/// Room history in PostgreSQL (see the [module docs](self)).
pub struct PostgresArchive {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Item>,
}

impl std::fmt::Debug for PostgresArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresArchive")
            .field("table", &self.shared.config.table)
            .finish_non_exhaustive()
    }
}

/// How long one statement (or opening the connection) may take.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a failed connection attempt stands for the requests that come after it.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The longest the hourly trim may take.
const TRIM_TIMEOUT: Duration = Duration::from_secs(600);

/// What waits on the queue.
enum Item {
    Room(Archived),
    Direct(ArchivedDirect),
}

impl Item {
    /// What it holds in memory, about: its frame, its ids, and a little for the rest.
    fn bytes(&self) -> usize {
        64 + match self {
            Item::Room(m) => m.frame.len() + m.room.as_str().len() + m.id.as_str().len(),
            Item::Direct(m) => {
                m.frame.len() + m.users.0.as_str().len() + m.users.1.as_str().len() + 36
            }
        }
    }

    /// The message's time as its id carries it, by which it sorts in its history.
    fn ms(&self) -> Option<i64> {
        match self {
            Item::Room(m) => stream_id(m.id.as_str()).map(|(ms, _)| ms),
            Item::Direct(m) => uuid_ms(m.id.as_str()),
        }
    }
}

struct Shared {
    url: String,
    config: ArchiveConfig,
    client: Mutex<Connection>,
    /// The stream id's `ms` of the oldest message taken from the queue and not yet written
    /// (`i64::MAX`: none).
    unwritten_since: AtomicI64,
    /// [`Item::bytes`] of the messages queued or being written.
    queued_bytes: AtomicUsize,
    insert: String,
    select: String,
    insert_direct: String,
    select_direct: String,
    trim: [String; 2],
}

/// The shared connection, or when the last attempt to open one failed.
#[derive(Default)]
struct Connection {
    client: Option<Arc<Client>>,
    failed: Option<(Instant, String)>,
}

impl PostgresArchive {
    /// Connects to `url` (a `postgres://` URL or key-value string), creates the table if it
    /// is missing and starts the writer (and the hourly trim). Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`BackendError::Archive`] for a bad table name or URL, or a database that cannot be
    /// reached or refuses to create the table.
    pub async fn connect(url: &str, config: ArchiveConfig) -> Result<Arc<Self>, BackendError> {
        let table = &config.table;
        let valid = !table.is_empty()
            && table.len() <= 52
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !table.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(BackendError::Archive(format!(
                "the table name {table:?} is not letters, digits and _ (at most 52, not starting with a digit)"
            )));
        }
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            insert: format!(
                "INSERT INTO \"{table}\" (room, ms, seq, frame) \
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::bytea[]) \
                 ON CONFLICT DO NOTHING"
            ),
            select: format!(
                "SELECT ms, seq, frame FROM \"{table}\" WHERE room = $1 AND (ms, seq) < ($2, $3) \
                 ORDER BY ms DESC, seq DESC LIMIT $4"
            ),
            insert_direct: format!(
                "INSERT INTO \"{table}_dm\" (a, b, id, ms, frame) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[]) \
                 ON CONFLICT DO NOTHING"
            ),
            select_direct: format!(
                "SELECT id, frame FROM \"{table}_dm\" WHERE a = $1 AND b = $2 AND id < $3 \
                 ORDER BY id DESC LIMIT $4"
            ),
            trim: [
                format!("DELETE FROM \"{table}\" WHERE ms < $1"),
                format!("DELETE FROM \"{table}_dm\" WHERE ms < $1"),
            ],
            client: Mutex::new(Connection::default()),
            unwritten_since: AtomicI64::new(i64::MAX),
            queued_bytes: AtomicUsize::new(0),
            config: config.clone(),
        });
        let client = shared.client().await?;
        timed(client.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (room text NOT NULL, ms int8 NOT NULL, \
             seq int8 NOT NULL, frame bytea NOT NULL, PRIMARY KEY (room, ms, seq)); \
             CREATE INDEX IF NOT EXISTS \"{table}_ms\" ON \"{table}\" (ms); \
             CREATE TABLE IF NOT EXISTS \"{table}_dm\" (a text COLLATE \"C\" NOT NULL, \
             b text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL, ms int8 NOT NULL, \
             frame bytea NOT NULL, PRIMARY KEY (a, b, id)); \
             CREATE INDEX IF NOT EXISTS \"{table}_dm_ms\" ON \"{table}_dm\" (ms)"
        )))
        .await?;
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        tokio::spawn(write(shared.clone(), rx));
        if let Some(max_age) = config.max_age {
            tokio::spawn(trim(
                url.to_owned(),
                shared.trim.clone(),
                Arc::downgrade(&shared),
                max_age,
            ));
        }
        Ok(Arc::new(Self { shared, queue }))
    }
}

impl Archive for PostgresArchive {
    fn keep(&self, message: Archived) {
        self.enqueue(Item::Room(message));
    }

    fn keep_direct(&self, message: ArchivedDirect) {
        self.enqueue(Item::Direct(message));
    }

    fn direct_page<'a>(
        &'a self,
        users: (&'a UserId, &'a UserId),
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            let (id, ms) = match before {
                Some(before) => {
                    let id = direct_id(before)?;
                    (id, uuid_ms(id).ok_or(BackendError::InvalidCursor)?)
                }
                // Above every UUID's text.
                None => ("g", i64::MAX),
            };
            self.shared.caught_up(before.is_some(), ms)?;
            let client = self.shared.client().await?;
            let want = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
            let (a, b) = (users.0.as_str(), users.1.as_str());
            let rows = self
                .shared
                .settle(
                    &client,
                    timed(client.query(&self.shared.select_direct, &[&a, &b, &id, &want])).await,
                )
                .await?;
            Ok(page_of(
                rows.into_iter().map(|row| {
                    (
                        row.get::<_, String>(0),
                        Bytes::from(row.get::<_, Vec<u8>>(1)),
                    )
                }),
                limit,
            ))
        })
    }

    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            let (ms, seq) = match before {
                Some(before) => stream_id(before.as_str()).ok_or(BackendError::InvalidCursor)?,
                None => (i64::MAX, i64::MAX),
            };
            self.shared.caught_up(before.is_some(), ms)?;
            let client = self.shared.client().await?;
            let want = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
            let rows = self
                .shared
                .settle(
                    &client,
                    timed(client.query(&self.shared.select, &[&room.as_str(), &ms, &seq, &want]))
                        .await,
                )
                .await?;
            Ok(page_of(
                rows.into_iter().map(|row| {
                    let (ms, seq): (i64, i64) = (row.get(0), row.get(1));
                    (format!("{ms}-{seq}"), Bytes::from(row.get::<_, Vec<u8>>(2)))
                }),
                limit,
            ))
        })
    }
}

/// A page from rows newest first (`limit` + 1 asked: one more means there is more).
fn page_of(rows: impl Iterator<Item = (String, Bytes)>, limit: usize) -> HistoryPage {
    let mut rows: Vec<(String, Bytes)> = rows.collect();
    let more = rows.len() > limit;
    rows.truncate(limit);
    rows.reverse();
    HistoryPage {
        next_before: more
            .then(|| rows.first().map(|(id, _)| MessageId::new(id.as_str())))
            .flatten(),
        messages: rows.into_iter().map(|(_, frame)| frame).collect(),
    }
}

impl PostgresArchive {
    fn enqueue(&self, message: Item) {
        let bytes = message.bytes();
        let queued = &self.shared.queued_bytes;
        let fits = queued.fetch_add(bytes, Ordering::AcqRel) + bytes
            <= self.shared.config.queue_bytes.max(1);
        let sent = fits && self.queue.try_send(message).is_ok();
        if !sent {
            queued.fetch_sub(bytes, Ordering::AcqRel);
            crate::metrics::metrics().archive_dropped.increment(1);
            static FULL: Throttled = Throttled::new();
            if let Some(more) = FULL.admit() {
                tracing::warn!(
                    more_since_last_line = more,
                    "history archive queue full: a message was not archived"
                );
            }
        }
    }
}

impl Shared {
    /// The connection, opened again if it broke, unless an attempt failed less than
    /// [`RECONNECT_PAUSE`] ago (then that attempt's error, at once).
    async fn client(&self) -> Result<Arc<Client>, BackendError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        if let Some((at, err)) = &slot.failed {
            if at.elapsed() < RECONNECT_PAUSE {
                return Err(BackendError::Archive(err.clone()));
            }
        }
        match open(&self.url).await {
            Ok(client) => {
                let client = Arc::new(client);
                *slot = Connection {
                    client: Some(client.clone()),
                    failed: None,
                };
                Ok(client)
            }
            Err(err) => {
                let cause = match &err {
                    BackendError::Archive(cause) => cause.clone(),
                    other => other.to_string(),
                };
                *slot = Connection {
                    client: None,
                    failed: Some((Instant::now(), cause)),
                };
                Err(err)
            }
        }
    }

    /// `result` of a statement on `client`; if it timed out (the database may be stalled, or
    /// the connection half-open) the shared connection is dropped, if it is still `client`,
    /// so that the next request opens another.
    async fn settle<T>(
        &self,
        client: &Arc<Client>,
        result: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if matches!(&result, Err(BackendError::Archive(cause)) if cause.starts_with(TIMED_OUT)) {
            let mut slot = self.client.lock().await;
            if slot.client.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
                slot.client = None;
            }
        }
        result
    }

    /// An error if messages as old as `ms` (a page's `before`) still wait to be written
    /// (after an outage, perhaps trimmed from the backend meanwhile): the page would have a
    /// gap.
    fn caught_up(&self, paging_back: bool, ms: i64) -> Result<(), BackendError> {
        if paging_back && self.unwritten_since.load(Ordering::Acquire) <= ms {
            return Err(BackendError::Archive(
                "catching up: older messages are still being written".into(),
            ));
        }
        Ok(())
    }

    async fn insert(&self, batch: &[Item]) -> Result<(), BackendError> {
        let (mut rooms, mut ms, mut seq, mut frames) = (vec![], vec![], vec![], vec![]);
        let (mut a, mut b, mut ids, mut dms, mut direct_frames) =
            (vec![], vec![], vec![], vec![], vec![]);
        for item in batch {
            let message = match item {
                Item::Room(message) => message,
                Item::Direct(message) => {
                    let Some(at) = uuid_ms(message.id.as_str()) else {
                        continue;
                    };
                    a.push(message.users.0.as_str());
                    b.push(message.users.1.as_str());
                    ids.push(message.id.as_str());
                    dms.push(at);
                    direct_frames.push(message.frame.as_ref());
                    continue;
                }
            };
            // Only ids as Redis issues them order a room's history across restarts.
            let Some((m, s)) = stream_id(message.id.as_str()) else {
                static OTHER: Throttled = Throttled::new();
                if let Some(more) = OTHER.admit() {
                    tracing::warn!(
                        more_since_last_line = more,
                        "history archive: a message id that is not a Redis stream id, not archived (the archive needs the Redis backend)"
                    );
                }
                continue;
            };
            rooms.push(message.room.as_str().to_owned());
            ms.push(m);
            seq.push(s);
            frames.push(message.frame.to_vec());
        }
        if rooms.is_empty() && ids.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        if !rooms.is_empty() {
            let result = timed(client.execute(&self.insert, &[&rooms, &ms, &seq, &frames])).await;
            self.settle(&client, result).await?;
        }
        if !ids.is_empty() {
            let result =
                timed(client.execute(&self.insert_direct, &[&a, &b, &ids, &dms, &direct_frames]))
                    .await;
            self.settle(&client, result).await?;
        }
        Ok(())
    }
}

/// Opens a connection and drives it in a task of its own.
async fn open(url: &str) -> Result<Client, BackendError> {
    let (client, connection) = timed(tokio_postgres::connect(url, NoTls)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(cause = %describe(&err), "history archive connection ended");
        }
    });
    Ok(client)
}

const TIMED_OUT: &str = "timed out";

/// `statement` within [`STATEMENT_TIMEOUT`], its error as a [`BackendError::Archive`].
async fn timed<T>(
    statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, statement).await {
        Ok(result) => result.map_err(archive_error),
        Err(_) => Err(BackendError::Archive(format!(
            "{TIMED_OUT} after {STATEMENT_TIMEOUT:?}"
        ))),
    }
}

/// The writer: batches from the queue into the table, retrying a batch until it lands (the
/// queue takes what comes meanwhile). A batch the database refuses for its data is written
/// one message at a time ([`write_one_by_one`]). Ends when the archive is dropped and the
/// queue is drained; a batch that fails after that is tried three times in all, then counted
/// as dropped.
async fn write(shared: Arc<Shared>, mut rx: mpsc::Receiver<Item>) {
    let metrics = crate::metrics::metrics();
    let mut batch = Vec::with_capacity(shared.config.batch.max(1));
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < shared.config.batch.max(1) {
            match rx.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let bytes: usize = batch.iter().map(Item::bytes).sum();
        let oldest = batch.iter().filter_map(Item::ms).min().unwrap_or(i64::MAX);
        shared.unwritten_since.store(oldest, Ordering::Release);
        let mut backoff = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            let failed = match shared.insert(&batch).await {
                Ok(()) => {
                    metrics.archived.increment(batch.len() as u64);
                    batch.clear();
                    None
                }
                Err(err) if refused(&err) => {
                    // Retrying the batch would fail for ever: each message alone, and the
                    // ones that still fail for another reason are retried as a batch.
                    write_one_by_one(&shared, &mut batch).await;
                    (!batch.is_empty()).then_some(err)
                }
                Err(err) => Some(err),
            };
            let Some(err) = failed else {
                // Messages behind this batch are newer than it; a page asked meanwhile
                // waits at most for the next batch's mark.
                if rx.is_empty() {
                    shared.unwritten_since.store(i64::MAX, Ordering::Release);
                }
                break;
            };
            if rx.is_closed() && tries >= 3 {
                metrics.archive_dropped.increment(batch.len() as u64);
                tracing::warn!(cause = %err, messages = batch.len(), "history archive closed: messages not archived");
                break;
            }
            static FAILED: Throttled = Throttled::new();
            if let Some(more) = FAILED.admit() {
                tracing::warn!(cause = %err, more_since_last_line = more, "history archive write failed; retrying");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        batch.clear();
        shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Writes `batch` one message at a time after the database refused it for its data: the
/// messages it refuses alone are dropped (counted in `roomcast_archive_dropped_total` and
/// logged); those that fail for another reason stay in `batch`.
async fn write_one_by_one(shared: &Shared, batch: &mut Vec<Item>) {
    let metrics = crate::metrics::metrics();
    let mut left = Vec::new();
    for item in batch.drain(..) {
        match shared.insert(std::slice::from_ref(&item)).await {
            Ok(()) => metrics.archived.increment(1),
            Err(err) if refused(&err) => {
                metrics.archive_dropped.increment(1);
                static REFUSED: Throttled = Throttled::new();
                if let Some(more) = REFUSED.admit() {
                    tracing::warn!(cause = %err, more_since_last_line = more, "history archive: the database refused a message; not archived");
                }
            }
            Err(_) => left.push(item),
        }
    }
    *batch = left;
}

/// Whether the database refused a statement for its data (SQLSTATE class 22, data exception,
/// or 23, integrity constraint violation): the same rows would be refused again.
fn refused(err: &BackendError) -> bool {
    matches!(err, BackendError::Archive(cause) if sqlstate(cause).is_some_and(|code| code.starts_with("22") || code.starts_with("23")))
}

/// The SQLSTATE in a [`describe`]d database error ("SEVERITY (CODE): message").
fn sqlstate(cause: &str) -> Option<&str> {
    let (_, rest) = cause.split_once(" (")?;
    let (code, _) = rest.split_once("): ")?;
    (code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(code)
}

/// Deletes rows older than `max_age` once an hour, while the archive exists, on a connection
/// of its own (a long delete does not hold the reads up).
async fn trim(
    url: String,
    statements: [String; 2],
    shared: std::sync::Weak<Shared>,
    max_age: Duration,
) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        if shared.strong_count() == 0 {
            return;
        }
        let floor = now_ms().saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let deletes = async {
            let client = open(&url).await?;
            for statement in &statements {
                client
                    .execute(statement, &[&floor])
                    .await
                    .map_err(archive_error)?;
            }
            Ok::<_, BackendError>(())
        };
        let result = match tokio::time::timeout(TRIM_TIMEOUT, deletes).await {
            Ok(done) => done,
            Err(_) => Err(BackendError::Archive(format!(
                "{TIMED_OUT} after {TRIM_TIMEOUT:?}"
            ))),
        };
        if let Err(err) = result {
            tracing::warn!(cause = %err, "history archive trim failed; trying again in an hour");
        }
    }
}

/// The time a UUIDv7 `id` carries (its first 48 bits, milliseconds).
fn uuid_ms(id: &str) -> Option<i64> {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    (hex.len() == 12)
        .then(|| i64::from_str_radix(&hex, 16).ok())
        .flatten()
}

/// A Redis stream id `ms-seq` (decimal, no sign or leading zero) as two `int8`s.
fn stream_id(id: &str) -> Option<(i64, i64)> {
    let (ms, seq) = id.split_once('-')?;
    let part = |p: &str| {
        p.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && n.to_string() == p)
    };
    Some((part(ms)?, part(seq)?))
}

fn archive_error(err: tokio_postgres::Error) -> BackendError {
    BackendError::Archive(describe(&err))
}

/// What went wrong, in full: the server's own message and code for a database error (the
/// driver's `Display` says only "db error"), else the error and its causes.
fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{refused, sqlstate, stream_id};
    use crate::error::BackendError;

    #[test]
    fn a_refusal_for_the_data_is_told_by_its_sqlstate() {
        let error = |cause: &str| BackendError::Archive(cause.into());
        assert_eq!(
            sqlstate("ERROR (22021): invalid byte sequence for encoding \"UTF8\": 0x00"),
            Some("22021")
        );
        assert!(refused(&error(
            "ERROR (22021): invalid byte sequence for encoding \"UTF8\": 0x00"
        )));
        assert!(refused(&error("ERROR (23505): duplicate key value")));
        // Not the data: the connection, a timeout, the server going away, a lock.
        for cause in [
            "timed out after 3s",
            "error connecting to server: Connection refused (os error 111)",
            "FATAL (57P01): terminating connection due to administrator command",
            "ERROR (40P01): deadlock detected",
            "ERROR (22): short",
        ] {
            assert!(!refused(&error(cause)), "{cause}");
        }
    }

    #[test]
    fn cursors_are_stream_ids_that_fit_int8() {
        assert_eq!(stream_id("1795946218367-0"), Some((1_795_946_218_367, 0)));
        for bad in [
            "",
            "17",
            "1-",
            "-1",
            "01-0",
            "1-01",
            "+1-0",
            "9223372036854775808-0",
        ] {
            assert_eq!(stream_id(bad), None, "{bad}");
        }
    }
}
