//! Reading the audit log (writing happens in the same transaction as each change), and
//! verifying its hash chain.

use crate::state::AppState;
use crate::store::audit::{self, AuditFilter, AuditRow, ChainBreak, ChainEnds, ChainPoint, ChainWalk};
use crate::store::{Db, Page};

use super::Result;

/// An audit event with the usernames of the users it names, for readers (the console
/// shows names, not ids). A name is absent when the id is not a user's (a client, a
/// session, a key) or the user has been deleted since.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub row: AuditRow,
    pub actor_name: Option<String>,
    pub target_name: Option<String>,
}

pub async fn list(state: &AppState, filter: &AuditFilter, page: Page) -> Result<(Vec<AuditEntry>, u64)> {
    let (rows, total) = audit::list(&state.db, filter, page).await?;
    let mut ids: Vec<String> = rows
        .iter()
        .flat_map(|row| std::iter::once(&row.actor).chain(row.target.as_ref()))
        .filter(|id| uuid::Uuid::try_parse(id).is_ok())
        .cloned()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names = crate::store::users::usernames_of(&state.db, &ids).await?;
    let entries = rows
        .into_iter()
        .map(|row| AuditEntry {
            actor_name: names.get(&row.actor).cloned(),
            target_name: row.target.as_ref().and_then(|t| names.get(t)).cloned(),
            row,
        })
        .collect();
    Ok((entries, total))
}

/// A chain that verified: how many events it holds, between which ends.
#[derive(Debug, Clone)]
pub struct Verified {
    pub events: u64,
    pub ends: ChainEnds,
    /// How many of the points recorded elsewhere were found and matched (the others
    /// were purged since, or are beyond the head; see [`Broken::Unknown`]).
    pub known_matched: usize,
    /// How many of them lie before the anchor: purged since, so they could not be
    /// checked (the CLI says so; a prefix deleted by hand with the anchor moved looks
    /// the same, which is why a recent head is the one to check).
    pub known_purged: usize,
    /// Events written but not linked yet (PostgreSQL links within about a second of
    /// the commit); none on SQLite, where an unlinked event is [`Broken::Outside`].
    pub awaiting_link: u64,
}

/// The first thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// A link does not follow from the one before it.
    Link(ChainBreak),
    /// The chain ends before its head: the newest events are gone (or the head was
    /// moved).
    Truncated { last: ChainPoint, head: ChainPoint },
    /// The head names a link its place does not have.
    HeadAltered { head: ChainPoint, found: String },
    /// An event stands outside the chain: written without a place or link, or at a
    /// place before the anchor or after the head.
    Outside { id: i64, seq: Option<i64> },
    /// A point recorded elsewhere is not in the chain as it was: the chain was rebuilt
    /// since, or cut back below it.
    Unknown { known: ChainPoint, found: Option<String> },
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Link(ChainBreak::Missing { seq, next_id: Some(id) }) => {
                write!(f, "the event at place {seq} is missing (deleted or moved): event {id} comes next")
            }
            Broken::Link(ChainBreak::Missing { seq, next_id: None }) => {
                write!(f, "the event at place {seq} is missing (deleted or moved)")
            }
            Broken::Link(ChainBreak::Altered { id, seq }) => {
                write!(f, "event {id} (place {seq}) was altered: its content or link is not what was chained")
            }
            Broken::Truncated { last, head } => write!(
                f,
                "the chain ends at place {} but its head is place {} ({}): the newest events are gone",
                last.seq, head.seq, head.hash
            ),
            Broken::HeadAltered { head, found } => {
                write!(f, "the head names place {} as {} but the chain has {found} there", head.seq, head.hash)
            }
            Broken::Outside { id, seq: Some(seq) } => {
                write!(f, "event {id} stands outside the chain (place {seq}, beyond its ends)")
            }
            Broken::Outside { id, seq: None } => write!(f, "event {id} stands outside the chain (it has no place)"),
            Broken::Unknown { known, found: Some(found) } => {
                write!(f, "place {} was recorded as {} but is now {found}", known.seq, known.hash)
            }
            Broken::Unknown { known, found: None } => {
                write!(f, "place {} (recorded as {}) is not in the chain", known.seq, known.hash)
            }
        }
    }
}

/// How many events a verification reads at a time.
const VERIFY_PAGE: u64 = 1000;

/// Walks the whole chain in one snapshot, from its anchor to its head, and checks the
/// points an operator recorded elsewhere (`known`) against it. A known point before the
/// anchor was purged and cannot be checked; it is skipped.
pub async fn verify(db: &Db, known: &[ChainPoint]) -> Result<std::result::Result<Verified, Broken>> {
    let snapshot = audit::snapshot(db).await?;
    let ends = audit::chain_ends(&snapshot).await?;
    let mut pending: Vec<&ChainPoint> = known.iter().filter(|point| point.seq >= ends.anchor.seq).collect();
    let known_purged = known.len() - pending.len();
    let mut known_matched = 0;
    let mut check_known = |point: &ChainPoint| -> std::result::Result<(), Broken> {
        for recorded in pending.extract_if(.., |recorded| recorded.seq == point.seq) {
            if recorded.hash != point.hash {
                return Err(Broken::Unknown { known: recorded.clone(), found: Some(point.hash.clone()) });
            }
            known_matched += 1;
        }
        Ok(())
    };
    let mut walk = ChainWalk::from(ends.anchor.clone());
    let mut events = 0;
    if let Err(broken) = check_known(walk.last()) {
        return Ok(Err(broken));
    }
    'pages: loop {
        let page = audit::chain_page(&snapshot, walk.last().seq, VERIFY_PAGE).await?;
        let short = (page.len() as u64) < VERIFY_PAGE;
        for row in &page {
            if walk.last().seq == ends.head.seq {
                break 'pages;
            }
            if let Err(broken) = walk.step(row) {
                return Ok(Err(Broken::Link(broken)));
            }
            events += 1;
            if let Err(broken) = check_known(walk.last()) {
                return Ok(Err(broken));
            }
        }
        if short {
            break;
        }
    }
    if walk.last().seq != ends.head.seq {
        return Ok(Err(Broken::Truncated { last: walk.last().clone(), head: ends.head.clone() }));
    }
    if walk.last().hash != ends.head.hash {
        return Ok(Err(Broken::HeadAltered { head: ends.head.clone(), found: walk.last().hash.clone() }));
    }
    if let Some(row) = audit::first_outside_chain(&snapshot, &ends).await? {
        return Ok(Err(Broken::Outside { id: row.id, seq: row.chain_seq }));
    }
    if let Some(first) = pending.first() {
        return Ok(Err(Broken::Unknown { known: (*first).clone(), found: None }));
    }
    let awaiting_link = if audit::links_after_commit(&snapshot) { audit::awaiting_link(&snapshot).await? } else { 0 };
    snapshot.rollback().await.map_err(crate::store::StoreError::from)?;
    Ok(Ok(Verified { events, ends, known_matched, known_purged, awaiting_link }))
}

/// The chain's ends, for an operator to record elsewhere.
pub async fn chain_ends(state: &AppState) -> Result<ChainEnds> {
    Ok(audit::chain_ends(&state.db).await?)
}
