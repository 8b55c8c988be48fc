//! The commit protocol: one engine behind reads, writes and alternations, over the records of
//! `shm.rs`.
//!
//! Under the segment lock, an operation first tries every guard in the policy's order: an input
//! takes a buffered value or commits a waiting writer; an output commits a waiting reader or fills
//! the buffer. If nothing is ready (and no Skip/Timeout is due), it registers one entry per guard on
//! the guard channels' queues, in the same order, all pointing at one waiter record whose state word
//! is its futex, unlocks, and sleeps. Whoever matches an entry moves the waiter from `WAITING` to
//! `DONE` with a compare-and-swap (so exactly one guard commits), hands over the payload, and wakes
//! exactly that waiter. Poison or retirement moves waiters to `ALERTED` instead, and they look
//! again. A value handed to a committed input is returned, full stop: nothing checks the channel
//! after the commit.
//!
//! The module is laid out bottom-up: the lock and the heap as the protocol uses them; queues and
//! the commit; channel records (buffer, poison, retirement, recovery after a crash); each thread's
//! waiter record; and the operation itself, [`run`].

use crate::codec;
use crate::futex;
use crate::heap::HeapError;
use crate::shm::{
    ChanRec, ENTRY_SIZE, Locked, NIL, Orphaned, SLOT_SIZE, Slot, SlotCell, WAITER_SIZE, WaiterRec,
    segment,
};
use cspnet_core::{ChannelError, Deadline};
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::mem::{offset_of, size_of};
use std::sync::atomic::Ordering;

/// A channel's state word.
pub(crate) const OPEN: u32 = 0;
pub(crate) const RETIRED: u32 = 1;
pub(crate) const POISONED: u32 = 2;

/// A waiter's state word (its futex).
const WAITING: u32 = 0;
const DONE: u32 = 1;
const ALERTED: u32 = 2;
const ABORTED: u32 = 3;

/// What a queue entry offers.
const K_READ: u32 = 0;
const K_WRITE: u32 = 1;
/// A write whose payload is not in the heap yet (the heap was full): never matched, only alerted.
const K_WRITE_PENDING: u32 = 2;
/// Waits for heap space (linked on the header's heap queue).
const K_HEAP: u32 = 3;

/// Payloads up to this size are copied out under the lock and freed at once.
const SMALL: u64 = 4096;

// ---------------------------------------------------------------------------------------------
// The lock and the heap, as the protocol uses them.

/// Takes the segment lock for a critical section that may change the channels in `touching`.
pub(crate) fn lock(touching: &[u64]) -> Locked {
    segment().lock(touching, recover)
}

/// Frees a heap block and wakes everyone waiting for space.
fn free(l: &mut Locked, off: u64) {
    l.heap_free(off);
    let heapq = l.seg().heapq();
    if l.list(heapq).head.get() != NIL {
        alert_list(l, heapq);
    }
}

/// A channel's state, read without the lock (for error reports and `Debug`).
pub(crate) fn state_now(c: u64) -> u32 {
    segment().rec::<ChanRec>(c).state.load(Ordering::Acquire)
}

fn state(l: &Locked, c: u64) -> u32 {
    l.chan(c).state.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Queues and the commit.

fn readq(c: u64) -> u64 {
    c + offset_of!(ChanRec, readq) as u64
}

fn writeq(c: u64) -> u64 {
    c + offset_of!(ChanRec, writeq) as u64
}

/// Offset of entry `k` of waiter record `w` (the entries follow the record).
fn entry_off(w: u64, k: u64) -> u64 {
    w + WAITER_SIZE as u64 + k * ENTRY_SIZE as u64
}

/// Appends entry `e` to the list at offset `list`.
fn push_back(l: &Locked, list: u64, e: u64) {
    let (q, ent) = (l.list(list), l.entry(e));
    let tail = q.tail.get();
    ent.list.set(list);
    ent.next.set(NIL);
    ent.prev.set(tail);
    if tail == NIL {
        q.head.set(e);
    } else {
        l.entry(tail).next.set(e);
    }
    q.tail.set(e);
}

/// Unlinks entry `e` from whatever list holds it (no-op when unlinked).
fn unlink(l: &Locked, e: u64) {
    let ent = l.entry(e);
    let list = ent.list.get();
    if list == NIL {
        return;
    }
    let (next, prev, q) = (ent.next.get(), ent.prev.get(), l.list(list));
    if prev == NIL {
        q.head.set(next);
    } else {
        l.entry(prev).next.set(next);
    }
    if next == NIL {
        q.tail.set(prev);
    } else {
        l.entry(next).prev.set(prev);
    }
    ent.list.set(NIL);
    ent.next.set(NIL);
    ent.prev.set(NIL);
}

/// Fills in entry `k` of waiter `w` and links it on `list`.
fn add_entry(l: &Locked, w: u64, k: u64, guard: u32, kind: u32, payload: Slot, list: u64) {
    let e = entry_off(w, k);
    let ent = l.entry(e);
    ent.waiter.set(w);
    ent.guard.set(guard);
    ent.kind.set(kind);
    ent.payload.set(payload);
    ent.list.set(NIL);
    push_back(l, list, e);
}

/// Commits waiter `w` (if it still waits) with guard `guard` and wakes it after unlock.
fn commit(l: &mut Locked, w: u64, guard: u32, got: Slot) -> bool {
    let rec = l.waiter(w);
    if rec.state.load(Ordering::Relaxed) != WAITING {
        return false;
    }
    rec.chosen.set(guard);
    rec.got.set(got);
    // Unlink the waiter's entries for it, so that it can finish without taking the lock.
    for k in 0..rec.used.get() {
        unlink(l, entry_off(w, k));
    }
    // Exactly one guard commits: the waiter leaves WAITING once (every transition happens under
    // the lock, so this cannot fail after the check above; the CAS states the rule). Its release
    // publishes `chosen` and `got` to the waiter, which reads the state with acquire.
    if rec
        .state
        .compare_exchange(WAITING, DONE, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    l.wake_later(w); // the state word is at offset 0 of the record
    true
}

/// Alerts every waiting entry's waiter on list `list` so it looks again.
fn alert_list(l: &mut Locked, list: u64) {
    let mut e = l.list(list).head.get();
    while e != NIL {
        let ent = l.entry(e);
        let (w, next) = (ent.waiter.get(), ent.next.get());
        if l.waiter(w)
            .state
            .compare_exchange(WAITING, ALERTED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            l.wake_later(w);
        }
        e = next;
    }
}

// ---------------------------------------------------------------------------------------------
// Channel records: the buffer, poison and retirement, creation and release, recovery.

fn buf_slot(l: &Locked, c: u64, i: u64) -> &SlotCell {
    let ch = l.chan(c);
    let at = ch.buf.get() + ((ch.buf_head.get() + i) % ch.capacity.get()) * SLOT_SIZE as u64;
    l.slot(at)
}

fn buf_pop(l: &Locked, c: u64) -> Option<Slot> {
    let ch = l.chan(c);
    let len = ch.buf_len.get();
    if len == 0 {
        return None;
    }
    let s = buf_slot(l, c, 0).get();
    ch.buf_head.set((ch.buf_head.get() + 1) % ch.capacity.get());
    ch.buf_len.set(len - 1);
    Some(s)
}

fn buf_push(l: &Locked, c: u64, s: Slot) {
    let ch = l.chan(c);
    let len = ch.buf_len.get();
    buf_slot(l, c, len).set(s);
    ch.buf_len.set(len + 1);
}

/// Frees the values buffered in channel `c`.
fn drop_buffer(l: &mut Locked, c: u64) {
    while let Some(s) = buf_pop(l, c) {
        free(l, s.off);
    }
}

/// Moves a channel to `to` (RETIRED or POISONED; poison overrides, nothing undoes it) and alerts
/// its waiters. Poison discards buffered values.
pub(crate) fn end_channel(l: &mut Locked, c: u64, to: u32) {
    let ch = l.chan(c);
    if ch.state.load(Ordering::Relaxed) >= to {
        return;
    }
    ch.state.store(to, Ordering::Release);
    if to == POISONED {
        drop_buffer(l, c);
    }
    alert_list(l, readq(c));
    alert_list(l, writeq(c));
    // A writer waiting for heap space without a record must see the channel's end too.
    l.wake_space_waiters();
}

/// Creates a channel record with one handle (the `Channel` being made) and room for `capacity`
/// buffered values.
pub(crate) fn new_channel(l: &mut Locked, capacity: usize) -> Result<u64, HeapError> {
    let c = l.alloc_wait(size_of::<ChanRec>())?;
    let buf = if capacity == 0 {
        NIL
    } else {
        match l.alloc_wait(capacity.saturating_mul(SLOT_SIZE)) {
            Ok(b) => b,
            Err(e) => {
                free(l, c);
                return Err(e);
            }
        }
    };
    let head = l.seg().chans().head.get();
    let ch = l.chan(c);
    ch.state.store(OPEN, Ordering::Relaxed);
    for n in [&ch.readers, &ch.writers] {
        n.set(0);
    }
    ch.handles.set(1);
    ch.capacity.set(capacity as u64);
    ch.buf.set(buf);
    ch.buf_head.set(0);
    ch.buf_len.set(0);
    for q in [&ch.readq, &ch.writeq] {
        q.head.set(NIL);
        q.tail.set(NIL);
    }
    ch.all_next.set(head);
    ch.all_prev.set(NIL);
    if head != NIL {
        l.chan(head).all_prev.set(c);
    }
    l.seg().chans().head.set(c);
    Ok(c)
}

/// Drops one handle of channel `c`; frees the record when it was the last.
pub(crate) fn release_handle(l: &mut Locked, c: u64) {
    let ch = l.chan(c);
    let handles = ch.handles.get() - 1;
    ch.handles.set(handles);
    if handles > 0 {
        return;
    }
    drop_buffer(l, c);
    let ch = l.chan(c);
    let (next, prev, buf) = (ch.all_next.get(), ch.all_prev.get(), ch.buf.get());
    if prev == NIL {
        l.seg().chans().head.set(next);
    } else {
        l.chan(prev).all_next.set(next);
    }
    if next != NIL {
        l.chan(next).all_prev.set(prev);
    }
    if buf != NIL {
        free(l, buf);
    }
    free(l, c);
}

/// The owner of the lock died in a critical section: poison what it was changing (the segment
/// calls this with the lock held, before making the lock consistent).
fn recover(l: &mut Locked, orphaned: Orphaned) {
    let victims = match orphaned {
        Orphaned::Channels(chans) => chans,
        Orphaned::All => {
            let mut all = Vec::new();
            let mut c = l.seg().chans().head.get();
            while c != NIL {
                all.push(c);
                c = l.chan(c).all_next.get();
            }
            all
        }
    };
    for c in victims {
        // Poison without freeing (the heap may be inconsistent): mark, then alert and wake every
        // entry, even ones already committed whose wake the dead process never sent.
        l.chan(c).state.store(POISONED, Ordering::Release);
        for q in [readq(c), writeq(c)] {
            alert_list(l, q);
            let mut e = l.list(q).head.get();
            while e != NIL {
                let ent = l.entry(e);
                let (w, next) = (ent.waiter.get(), ent.next.get());
                l.wake_later(w);
                e = next;
            }
        }
    }
    let heapq = l.seg().heapq();
    alert_list(l, heapq);
    l.wake_space_waiters();
}

// ---------------------------------------------------------------------------------------------
// Each thread's waiter record.

/// The calling thread's waiter record, kept between operations.
struct WaiterCache {
    off: Cell<u64>,
    cap: Cell<u64>,
    /// A small payload already read, freed at the next operation.
    deferred: Cell<u64>,
}

impl Drop for WaiterCache {
    fn drop(&mut self) {
        release(self);
    }
}

fn release(cache: &WaiterCache) {
    let off = cache.off.replace(NIL);
    let deferred = cache.deferred.replace(NIL);
    cache.cap.set(0);
    if (off != NIL || deferred != NIL) && crate::shm::existing().is_some() {
        let mut l = lock(&[]);
        for o in [off, deferred] {
            if o != NIL {
                free(&mut l, o);
            }
        }
    }
}

/// Remembers a small payload to free at this thread's next operation (which takes the lock
/// anyway), so that a committed read finishes without taking it.
fn defer_free(off: u64) {
    WAITER.with(|w| {
        let old = w.deferred.replace(off);
        debug_assert_eq!(old, NIL, "every operation frees the deferred payload first");
    });
}

fn flush_deferred(l: &mut Locked) {
    let off = WAITER.with(|w| w.deferred.replace(NIL));
    if off != NIL {
        free(l, off);
    }
}

thread_local! {
    static WAITER: WaiterCache = const {
        WaiterCache { off: Cell::new(NIL), cap: Cell::new(0), deferred: Cell::new(NIL) }
    };
}

/// In a forked child: the inherited cache belongs to the parent's thread; forget it.
pub(crate) fn forget_waiter() {
    WAITER.with(|w| {
        w.off.set(NIL);
        w.cap.set(0);
        w.deferred.set(NIL);
    });
}

/// In a new child: set up this thread's waiter record now, so that the child's first blocking
/// operation does not allocate (a child killed inside the allocator would break the whole heap,
/// while one killed elsewhere in a critical section poisons only the channels it was changing).
pub(crate) fn prepare_waiter() {
    let mut l = lock(&[]);
    let _ = waiter_for(&mut l, 4);
}

/// Before a child exits: give the waiter record back to the heap.
pub(crate) fn release_waiter() {
    WAITER.with(release);
}

/// A waiter record with room for `need` entries (allocated or grown under the lock).
fn waiter_for(l: &mut Locked, need: usize) -> Option<u64> {
    WAITER.with(|w| {
        if w.off.get() != NIL && w.cap.get() as usize >= need {
            return Some(w.off.get());
        }
        let cap = need.max(4);
        let off = l.alloc(WAITER_SIZE + cap * ENTRY_SIZE).ok().flatten()?;
        let old = w.off.replace(off);
        w.cap.set(cap as u64);
        if old != NIL {
            free(l, old);
        }
        Some(off)
    })
}

// ---------------------------------------------------------------------------------------------
// The operation.

/// What one guard wants from its channel.
pub(crate) enum Want<'v> {
    Read,
    Write(&'v [u8]),
}

/// One guard of an operation.
pub(crate) struct Spec<'v> {
    pub(crate) chan: u64,
    pub(crate) want: Want<'v>,
}

/// How an operation ended.
pub(crate) enum Fired {
    /// Guard `i` committed; inputs carry the value taken.
    Guard(usize, Option<Taken>),
    /// The Skip or Timeout fired.
    Fallback,
}

/// A value taken by an input guard.
pub(crate) enum Taken {
    /// Copied out of the segment already (and its slot freed).
    Local(Vec<u8>),
    /// Still in the segment: this process owns the slot until `decode` frees it.
    Shared(Slot),
}

impl Taken {
    pub(crate) fn decode<T: DeserializeOwned + 'static>(self) -> T {
        match self {
            Taken::Local(bytes) => codec::decode_owned(bytes),
            Taken::Shared(slot) => {
                let value = segment().with_payload(slot, codec::decode::<T>);
                let mut l = lock(&[]);
                flush_deferred(&mut l);
                free(&mut l, slot.off);
                value
            }
        }
    }
}

/// Takes a value from channel `c` if one is ready: buffered, or offered by a waiting writer.
fn try_read(l: &mut Locked, c: u64) -> Option<Slot> {
    if let Some(s) = buf_pop(l, c) {
        // Room in the buffer now: move the first waiting writer's value in.
        if let Some(payload) = commit_first(l, writeq(c), K_WRITE, Slot::default()) {
            buf_push(l, c, payload);
        }
        return Some(s);
    }
    commit_first(l, writeq(c), K_WRITE, Slot::default())
}

/// Commits the first waiter on `list` whose entry is of `kind`, handing it `got`; returns the
/// payload its entry offered.
fn commit_first(l: &mut Locked, list: u64, kind: u32, got: Slot) -> Option<Slot> {
    let mut e = l.list(list).head.get();
    while e != NIL {
        let ent = l.entry(e);
        let (k, w, guard, payload, next) = (
            ent.kind.get(),
            ent.waiter.get(),
            ent.guard.get(),
            ent.payload.get(),
            ent.next.get(),
        );
        if k == kind && commit(l, w, guard, got) {
            return Some(payload);
        }
        e = next;
    }
    None
}

/// Delivers `slot` on channel `c` if it can be now: to a waiting reader, or into the buffer.
fn try_write(l: &mut Locked, c: u64, slot: Slot) -> bool {
    if state(l, c) != OPEN {
        return false;
    }
    if commit_first(l, readq(c), K_READ, slot).is_some() {
        return true;
    }
    let ch = l.chan(c);
    if ch.buf_len.get() < ch.capacity.get() {
        buf_push(l, c, slot);
        return true;
    }
    false
}

/// Takes the value in `slot` (now ours): small ones are copied out and freed at once.
fn take(l: &mut Locked, slot: Slot) -> Taken {
    if slot.len <= SMALL {
        let bytes = l.seg().read_payload(slot);
        free(l, slot.off);
        Taken::Local(bytes)
    } else {
        Taken::Shared(slot)
    }
}

fn free_offered(l: &mut Locked, offered: &mut [Option<Slot>]) {
    for s in offered.iter_mut() {
        if let Some(s) = s.take() {
            free(l, s.off);
        }
    }
}

/// Runs one operation: commits exactly one guard of `specs` (tried in `order`), or fires the
/// fallback at `deadline` when no guard became ready.
pub(crate) fn run(
    specs: &[Spec<'_>],
    order: &[usize],
    deadline: Deadline,
) -> Result<Fired, ChannelError> {
    let seg = segment();
    let n = specs.len();
    let chans: Vec<u64> = specs.iter().map(|s| s.chan).collect();
    let mut offered: Vec<Option<Slot>> = vec![None; n];
    loop {
        let mut l = lock(&chans);
        flush_deferred(&mut l);
        if l.broken() {
            return Err(ChannelError::Poisoned);
        }
        if chans.iter().any(|&c| state(&l, c) == POISONED) {
            free_offered(&mut l, &mut offered);
            return Err(ChannelError::Poisoned);
        }
        // Put the output guards' values in the heap, so a reader can take them. Large values are
        // copied with the lock released (the fresh allocation is ours alone until offered).
        let mut pending = false;
        let mut copy_out_of_lock = Vec::new();
        for &i in order {
            if let Want::Write(bytes) = specs[i].want
                && offered[i].is_none()
                && state(&l, specs[i].chan) == OPEN
            {
                match l.alloc(bytes.len()) {
                    Err(e) => {
                        free_offered(&mut l, &mut offered);
                        return Err(ChannelError::TooLarge {
                            size: e.requested,
                            max: e.largest_possible,
                        });
                    }
                    Ok(None) => pending = true,
                    Ok(Some(off)) => {
                        let slot = Slot {
                            off,
                            len: bytes.len() as u64,
                        };
                        if slot.len > SMALL {
                            copy_out_of_lock.push((slot, bytes));
                        } else {
                            l.seg().write_payload(slot, bytes);
                        }
                        offered[i] = Some(slot);
                    }
                }
            }
        }
        if !copy_out_of_lock.is_empty() {
            drop(l);
            for (slot, bytes) in copy_out_of_lock {
                // The fresh allocation is ours alone: it is offered only once the loop comes
                // round again.
                seg.write_payload(slot, bytes);
            }
            continue;
        }
        // Try every guard in order.
        for &i in order {
            let c = specs[i].chan;
            match specs[i].want {
                Want::Read => {
                    if let Some(slot) = try_read(&mut l, c) {
                        free_offered(&mut l, &mut offered);
                        let taken = take(&mut l, slot);
                        return Ok(Fired::Guard(i, Some(taken)));
                    }
                }
                Want::Write(_) => {
                    if let Some(slot) = offered[i]
                        && try_write(&mut l, c, slot)
                    {
                        offered[i] = None;
                        free_offered(&mut l, &mut offered);
                        return Ok(Fired::Guard(i, None));
                    }
                }
            }
        }
        if !chans.iter().any(|&c| state(&l, c) == OPEN) {
            // Every channel guard is retired, or there were none and nothing could ever fire.
            free_offered(&mut l, &mut offered);
            drop(l);
            if n > 0 || deadline == Deadline::Never {
                return Err(ChannelError::Retired);
            }
            if let Some(left) = deadline.remaining() {
                std::thread::sleep(left);
            }
            return Ok(Fired::Fallback);
        }
        if deadline.has_passed() {
            free_offered(&mut l, &mut offered);
            return Ok(Fired::Fallback);
        }
        // Nothing ready: register one entry per open guard channel and sleep.
        let Some(w) = waiter_for(&mut l, n + 1) else {
            let ticket = l.space_ticket();
            drop(l);
            seg.wait_for_space(ticket, deadline);
            continue;
        };
        let rec = seg.rec::<WaiterRec>(w);
        rec.state.store(WAITING, Ordering::Relaxed);
        rec.used.set(0);
        // Register in the policy's order: a matcher walks a queue from its head, so when two
        // guards wait on the same channel the one registered first is the one it commits.
        let mut used = 0u64;
        for &i in order {
            let spec = &specs[i];
            let c = spec.chan;
            if state(&l, c) != OPEN {
                continue;
            }
            let (kind, payload, list) = match spec.want {
                Want::Read => (K_READ, Slot::default(), readq(c)),
                Want::Write(_) => match offered[i] {
                    Some(s) => (K_WRITE, s, writeq(c)),
                    None => (K_WRITE_PENDING, Slot::default(), writeq(c)),
                },
            };
            add_entry(&l, w, used, i as u32, kind, payload, list);
            used += 1;
        }
        if pending {
            let hq = seg.heapq();
            add_entry(&l, w, used, u32::MAX, K_HEAP, Slot::default(), hq);
            used += 1;
        }
        rec.used.set(used);
        drop(l);

        let word = &rec.state;
        let mut timed_out = false;
        while word.load(Ordering::Acquire) == WAITING {
            if !futex::wait(word, WAITING, deadline) {
                timed_out = true;
                break;
            }
        }

        let st = word.load(Ordering::Acquire);
        if !timed_out && st == DONE {
            // Committed: the committer unlinked our entries, so finish without the lock when
            // nothing of ours is left in the heap but the value we were given. `chosen` and `got`
            // were written before the state became DONE (release), which we read with acquire.
            let (i, got) = (rec.chosen.get() as usize, rec.got.get());
            let others = offered
                .iter()
                .enumerate()
                .any(|(k, s)| k != i && s.is_some());
            if !others {
                match specs[i].want {
                    Want::Write(_) => return Ok(Fired::Guard(i, None)),
                    Want::Read if got.len <= SMALL => {
                        let bytes = seg.read_payload(got);
                        defer_free(got.off);
                        return Ok(Fired::Guard(i, Some(Taken::Local(bytes))));
                    }
                    Want::Read => {}
                }
            }
        }
        let mut l = lock(&chans);
        let st = if timed_out {
            match word.compare_exchange(WAITING, ABORTED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => ABORTED,
                Err(s) => s,
            }
        } else {
            word.load(Ordering::Acquire)
        };
        for k in 0..used {
            unlink(&l, entry_off(w, k));
        }
        match st {
            DONE => {
                let (i, got) = (rec.chosen.get() as usize, rec.got.get());
                return Ok(match specs[i].want {
                    Want::Read => {
                        free_offered(&mut l, &mut offered);
                        let taken = take(&mut l, got);
                        Fired::Guard(i, Some(taken))
                    }
                    Want::Write(_) => {
                        // The reader (or the buffer) owns our payload now.
                        offered[i] = None;
                        free_offered(&mut l, &mut offered);
                        Fired::Guard(i, None)
                    }
                });
            }
            ABORTED => {
                free_offered(&mut l, &mut offered);
                return Ok(Fired::Fallback);
            }
            ALERTED => {}
            other => unreachable!("a waiter woke in state {other}"),
        }
    }
}
