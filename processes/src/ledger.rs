//! Ledgers: what each child OS process holds of which channel, kept in the segment for its parent.
//!
//! A child that reports releases its own ends. One that dies without reporting (killed, crashed)
//! cannot, so its parent must: poison what it held (PyCSP's rule) or, for a supervised child,
//! make exactly those ends leave as if it had ended, so channels it shared with healthy
//! processes keep working. "Exactly" needs more than the census taken at the fork, because the
//! child may have dropped some of those ends, or made or received others, before it died. So each
//! child counts, in a ledger record the parent allocated for it, every end it joins (+1) and leaves
//! (-1); the parent adds the census (+1 each). When the child is gone, a positive count is an end
//! it still held. The counts are atomics, so child and parent add without the segment lock.
//!
//! A child that dies in the middle of an extended read also holds a writer, which waits until the
//! reader lets it go. The ledger keeps those writers too (noted before the commit that holds them),
//! so the parent lets them go when the reader cannot.

use crate::engine;
use crate::shm::{LEDGER_ENTRIES, LEDGER_HOLDING, LedgerRec, NIL, segment};
use cspnet_core::Role;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};

/// This process's ledger: [`NIL`] in a process its own parent did not give one.
static MINE: AtomicU64 = AtomicU64::new(NIL);

fn key(chan: u64, role: Role) -> u64 {
    // Channel records are 8-aligned, so the role fits in the low bits; never 0 (offsets are
    // past the header).
    chan | match role {
        Role::Reader => 1,
        Role::Writer => 2,
        Role::Handle => 3,
    }
}

fn unkey(key: u64) -> (u64, Role) {
    let role = match key & 7 {
        1 => Role::Reader,
        2 => Role::Writer,
        _ => Role::Handle,
    };
    (key & !7, role)
}

/// A fresh, empty ledger for a child about to start; `None` if the heap has no room (the child
/// then has none, and its parent falls back to poisoning what the census says it held).
pub(crate) fn create() -> Option<u64> {
    let mut l = engine::lock(&[]);
    let off = l.alloc(size_of::<LedgerRec>()).ok().flatten()?;
    let rec: &LedgerRec = segment().rec(off);
    rec.overflow.set(0);
    for e in &rec.entries {
        e.key.store(0, Ordering::Relaxed);
        e.count.store(0, Ordering::Relaxed);
    }
    for h in &rec.holding {
        h.store(0, Ordering::Relaxed);
    }
    Some(off)
}

/// This process's ledger, or [`NIL`].
pub(crate) fn mine() -> u64 {
    MINE.load(Ordering::Acquire)
}

/// The extended reader whose ledger is `ledger` (`NIL`: none) now holds the writer whose waiter
/// record is `writer`. Noted before the commit, so no moment exists at which the reader could die
/// holding a writer its ledger does not name. With no room left (more than [`LEDGER_HOLDING`]
/// writers held at once by one process) it is not noted, and a writer held by a reader that dies
/// stays held, as it would without a ledger.
pub(crate) fn hold(ledger: u64, writer: u64) {
    if ledger == NIL {
        return;
    }
    let rec: &LedgerRec = segment().rec(ledger);
    for h in &rec.holding {
        if h.compare_exchange(0, writer, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
}

/// The reader whose ledger is `ledger` no longer holds `writer` (it let it go, or the commit that
/// would have held it failed).
pub(crate) fn let_go(ledger: u64, writer: u64) {
    if ledger == NIL {
        return;
    }
    let rec: &LedgerRec = segment().rec(ledger);
    for h in &rec.holding {
        if h.compare_exchange(writer, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
}

/// The writers the child whose ledger this is still holds in extended reads. Call it once the
/// child is gone, before [`close`].
pub(crate) fn holding(ledger: u64) -> Vec<u64> {
    let rec: &LedgerRec = segment().rec(ledger);
    rec.holding
        .iter()
        .map(|h| h.load(Ordering::Acquire))
        .filter(|&w| w != 0)
        .collect()
}

/// In a child: from now on, this process counts its ends in `ledger`.
pub(crate) fn adopt(ledger: Option<u64>) {
    MINE.store(ledger.unwrap_or(NIL), Ordering::Release);
}

/// This process joined (`+1`) or left (`-1`) an end of `chan`.
pub(crate) fn note(chan: u64, role: Role, delta: i64) {
    let mine = MINE.load(Ordering::Acquire);
    if mine != NIL {
        add(mine, chan, role, delta);
    }
}

/// Adds `delta` to the count of `(chan, role)` in `ledger`.
pub(crate) fn add(ledger: u64, chan: u64, role: Role, delta: i64) {
    let rec: &LedgerRec = segment().rec(ledger);
    let k = key(chan, role);
    for e in &rec.entries {
        let mut current = e.key.load(Ordering::Acquire);
        if current == 0 {
            current = match e
                .key
                .compare_exchange(0, k, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => k,
                Err(other) => other,
            };
        }
        if current == k {
            e.count.fetch_add(delta as u64, Ordering::AcqRel);
            return;
        }
    }
    rec.overflow.set(1);
}

/// What the child whose ledger this is still holds, each end as often as it holds it; `None` if
/// the ledger overflowed. Frees the ledger: call it once the child is gone.
pub(crate) fn close(ledger: u64) -> Option<Vec<(u64, Role)>> {
    let rec: &LedgerRec = segment().rec(ledger);
    let overflowed = rec.overflow.get() != 0;
    let mut held = Vec::new();
    for e in &rec.entries {
        let k = e.key.load(Ordering::Acquire);
        let n = e.count.load(Ordering::Acquire) as i64;
        if k != 0 && n > 0 {
            let (chan, role) = unkey(k);
            held.extend(std::iter::repeat_n((chan, role), n as usize));
        }
    }
    let mut l = engine::lock(&[]);
    l.heap_free(ledger);
    drop(l);
    (!overflowed).then_some(held)
}

const _: () = assert!(LEDGER_ENTRIES > 0 && LEDGER_HOLDING > 0 && size_of::<AtomicU64>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_channel_and_the_role() {
        for role in [Role::Reader, Role::Writer, Role::Handle] {
            assert_eq!(unkey(key(4096 + 64, role)), (4096 + 64, role));
        }
    }

    #[test]
    fn a_ledger_counts_what_is_still_held() {
        let _alone = crate::SEGMENT_TESTS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let l = create().expect("room for a ledger");
        add(l, 8192, Role::Reader, -1); // the child left before the census was added
        add(l, 8192, Role::Reader, 1);
        add(l, 8192, Role::Reader, 1);
        add(l, 8192, Role::Writer, 1);
        add(l, 8200, Role::Writer, 1);
        add(l, 8200, Role::Writer, -1);
        let mut held = close(l).unwrap();
        held.sort_by_key(|&(c, r)| (c, r as u8));
        assert_eq!(held, vec![(8192, Role::Reader), (8192, Role::Writer)]);
    }

    #[test]
    fn a_ledger_keeps_the_writers_still_held() {
        let _alone = crate::SEGMENT_TESTS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let l = create().expect("room for a ledger");
        hold(l, 4096);
        hold(l, 8192);
        let_go(l, 4096);
        let_go(l, 12288); // never held: nothing changes
        assert_eq!(holding(l), vec![8192]);
        hold(NIL, 4096); // a process without a ledger: nothing to note
        assert_eq!(close(l), Some(vec![]));
    }

    #[test]
    fn a_full_ledger_says_so() {
        let _alone = crate::SEGMENT_TESTS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let l = create().expect("room for a ledger");
        for i in 0..=LEDGER_ENTRIES as u64 {
            add(l, 8192 + 8 * i, Role::Reader, 1);
        }
        assert_eq!(close(l), None);
    }
}
