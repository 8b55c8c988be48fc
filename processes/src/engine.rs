//! The commit protocol: one engine behind reads, writes and alternations, over the records of
//! `shm.rs`.
//!
//! Under the segment lock, an operation first tries every guard in the policy's order: an input
//! takes a buffered value or commits a waiting writer; an output commits a waiting reader or fills
//! the buffer. If nothing is ready (and no Skip/Timeout is due), it registers one entry per guard
//! on the guard channels' queues, in the same order, all pointing at one waiter record whose claim
//! word (core's [`ClaimWord`]) is its futex, unlocks, spins briefly, and sleeps. Whoever matches an
//! entry claims the waiter with `Claim::Fired(guard)` (one compare-and-swap, so exactly one guard
//! commits), hands over the payload, and wakes exactly that waiter if it went to sleep. Poison or
//! retirement claims waiters with `Claim::Ended` instead, and they look again; a waiter whose
//! deadline passes claims itself with `Claim::TimedOut`. A value handed to a committed input is
//! returned, full stop: nothing checks the channel after the commit.
//!
//! The rules that are not the engine's come from core: a channel's state only moves forward
//! ([`ChannelState::after`]), an end leaving retires or poisons it as [`Membership::leave`] says,
//! and an operation with no live guard fails as [`live_guards`] says.
//!
//! The module is laid out bottom-up: the lock and the heap as the protocol uses them; queues and
//! the commit; channel records (buffer, poison, retirement, recovery after a crash); each thread's
//! waiter record; and the operation itself, [`run`].

use crate::codec;
use crate::futex;
use crate::heap::HeapError;
use crate::ledger;
use crate::shm::{
    ChanRec, ENTRY_SIZE, Locked, NIL, Orphaned, SLOT_SIZE, Slot, SlotCell, WAITER_SIZE, WaiterRec,
    segment,
};
use cspnet_core::{
    ChannelError, ChannelState, Claim, ClaimWord, Deadline, GuardStatus, Leave, Membership, Role,
    live_guards,
};
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::mem::{offset_of, size_of};
use std::sync::OnceLock;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

/// What a queue entry offers.
const K_READ: u32 = 0;
const K_WRITE: u32 = 1;
/// A write whose payload is not in the heap yet (the heap was full): never matched, only alerted.
const K_WRITE_PENDING: u32 = 2;
/// Waits for heap space (linked on the header's heap queue).
const K_HEAP: u32 = 3;
/// An extended read: the writer it commits stays held until the reader releases it.
const K_READ_HELD: u32 = 4;

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

/// The state a channel record's word holds (an unknown number reads as poisoned).
fn state_of(word: u32) -> ChannelState {
    ChannelState::from_u8(u8::try_from(word).unwrap_or(u8::MAX))
}

/// A channel's state, read without the lock (for error reports and `Debug`).
pub(crate) fn state_now(c: u64) -> ChannelState {
    state_of(segment().rec::<ChanRec>(c).state.load(Ordering::Acquire))
}

fn state(l: &Locked, c: u64) -> ChannelState {
    state_of(l.chan(c).state.load(Ordering::Relaxed))
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
    if !rec.state.load(Ordering::Relaxed).is_waiting() {
        return false;
    }
    rec.got.set(got);
    // Unlink the waiter's entries for it, so that it can finish without taking the lock.
    for k in 0..rec.used.get() {
        unlink(l, entry_off(w, k));
    }
    // Exactly one guard commits: the waiter is claimed once (every claim, a time-out's included,
    // happens under the lock, so this cannot fail after the check above; the claim states the
    // rule). Its release publishes `got` to the
    // waiter, which loads the word with acquire; the word itself says which guard fired.
    if !rec.state.claim(Claim::Fired(guard)) {
        return false;
    }
    l.wake_waiter_later(w);
    true
}

/// Alerts every waiting entry's waiter on list `list` so it looks again.
fn alert_list(l: &mut Locked, list: u64) {
    let mut e = l.list(list).head.get();
    while e != NIL {
        let ent = l.entry(e);
        let (w, next) = (ent.waiter.get(), ent.next.get());
        if l.waiter(w).state.claim(Claim::Ended) {
            l.wake_waiter_later(w);
        }
        e = next;
    }
}

// ---------------------------------------------------------------------------------------------
// Channel records: the buffer, poison and retirement, creation and release, recovery.

/// How many slots a buffer's ring starts with (fewer if the buffer is smaller).
const FIRST_RING: u64 = 16;

fn buf_slot(l: &Locked, c: u64, i: u64) -> &SlotCell {
    let ch = l.chan(c);
    let at = ch.buf.get() + ((ch.buf_head.get() + i) % ch.buf_cap.get()) * SLOT_SIZE as u64;
    l.slot(at)
}

/// Doubles channel `c`'s ring (up to its capacity), moving the buffered slots to the front of the
/// new one; `false` when the heap has no room for it now (the buffer then counts as full: the
/// writer waits for a reader). Sizes are checked: a ring's bytes never wrap.
fn buf_grow(l: &mut Locked, c: u64) -> bool {
    let ch = l.chan(c);
    let (old, old_cap, capacity) = (ch.buf.get(), ch.buf_cap.get(), ch.capacity.get());
    let new_cap = old_cap.saturating_mul(2).clamp(1, capacity);
    let Some(bytes) = new_cap
        .checked_mul(SLOT_SIZE as u64)
        .and_then(|b| usize::try_from(b).ok())
    else {
        return false;
    };
    let Ok(Some(new)) = l.alloc(bytes) else {
        return false;
    };
    let len = l.chan(c).buf_len.get();
    for i in 0..len {
        let s = buf_slot(l, c, i).get();
        l.slot(new + i * SLOT_SIZE as u64).set(s);
    }
    // The ring reads as empty while it changes: a process killed half-way leaves a ring that
    // recovery drains as empty (leaking the values, not freeing slots it misreads).
    let ch = l.chan(c);
    ch.buf_len.set(0);
    ch.buf.set(new);
    ch.buf_cap.set(new_cap);
    ch.buf_head.set(0);
    ch.buf_len.set(len);
    if old != NIL {
        free(l, old);
    }
    true
}

fn buf_pop(l: &Locked, c: u64) -> Option<Slot> {
    let ch = l.chan(c);
    let len = ch.buf_len.get();
    if len == 0 {
        return None;
    }
    let s = buf_slot(l, c, 0).get();
    ch.buf_head.set((ch.buf_head.get() + 1) % ch.buf_cap.get());
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

/// Moves a channel on to `to` (as [`ChannelState::after`] rules: poison overrides retirement,
/// nothing undoes either) and alerts its waiters. Poison discards buffered values.
pub(crate) fn end_channel(l: &mut Locked, c: u64, to: ChannelState) {
    let now = state(l, c);
    let next = now.after(to);
    if next == now {
        return;
    }
    l.chan(c).state.store(next as u32, Ordering::Release);
    if next == ChannelState::Poisoned {
        drop_buffer(l, c);
    }
    alert_list(l, readq(c));
    alert_list(l, writeq(c));
    // A writer waiting for heap space without a record must see the channel's end too.
    l.wake_space_waiters();
    if next == ChannelState::Poisoned {
        wake_word(c); // and so must a process in `wait_word`
    }
}

/// `Carries::wait_word`: sleeps on the channel's wake sequence, read before the word, so a change
/// of the word (or poison) after that read is followed by a bump that the futex sees.
pub(crate) fn wait_word(c: u64, done: &mut dyn FnMut(u64) -> bool) -> Result<(), ChannelError> {
    let rec = segment().rec::<ChanRec>(c);
    loop {
        let seq = rec.word_seq.load(Ordering::SeqCst);
        // Poison wins, also over a change of the word that came before it.
        if state_now(c) == ChannelState::Poisoned {
            return Err(ChannelError::Poisoned);
        }
        if done(rec.word.load(Ordering::SeqCst)) {
            return Ok(());
        }
        futex::wait(&rec.word_seq, seq, Deadline::Never);
    }
}

/// `Carries::wake_word`: bumps the wake sequence and wakes every sleeper.
pub(crate) fn wake_word(c: u64) {
    let rec = segment().rec::<ChanRec>(c);
    rec.word_seq.fetch_add(1, Ordering::SeqCst);
    futex::wake(&rec.word_seq, i32::MAX);
}

/// Creates a channel record with no handles or ends counted yet (the caller joins at once) for up
/// to `capacity` buffered values, with a ring for the first few.
pub(crate) fn new_channel(l: &mut Locked, capacity: usize) -> Result<u64, HeapError> {
    let c = l.alloc_wait(size_of::<ChanRec>())?;
    // The ring starts small and grows as values are buffered (`buf_grow`).
    let ring = (capacity as u64).min(FIRST_RING);
    let buf = if ring == 0 {
        NIL
    } else {
        match l.alloc_wait(ring as usize * SLOT_SIZE) {
            Ok(b) => b,
            Err(e) => {
                free(l, c);
                return Err(e);
            }
        }
    };
    let head = l.seg().chans().head.get();
    let ch = l.chan(c);
    ch.state.store(ChannelState::Open as u32, Ordering::Relaxed);
    ch.handles.set(0);
    set_members(l, c, Membership::default());
    ch.capacity.set(capacity as u64);
    ch.buf.set(buf);
    ch.buf_cap.set(ring);
    ch.buf_head.set(0);
    ch.buf_len.set(0);
    for q in [&ch.readq, &ch.writeq] {
        q.head.set(NIL);
        q.tail.set(NIL);
    }
    ch.word.store(0, Ordering::Relaxed);
    ch.word_seq.store(0, Ordering::Relaxed);
    ch.all_next.set(head);
    ch.all_prev.set(NIL);
    if head != NIL {
        l.chan(head).all_prev.set(c);
    }
    l.seg().chans().head.set(c);
    Ok(c)
}

/// The reader and writer ends channel `c` counts.
fn members(l: &Locked, c: u64) -> Membership {
    let ch = l.chan(c);
    Membership {
        readers: ch.readers.get(),
        writers: ch.writers.get(),
    }
}

fn set_members(l: &Locked, c: u64, m: Membership) {
    let ch = l.chan(c);
    ch.readers.set(m.readers);
    ch.writers.set(m.writers);
}

/// Counts one more handle of channel `c`, and one more end when `role` is a reader or writer.
pub(crate) fn join(l: &mut Locked, c: u64, role: Role) {
    let ch = l.chan(c);
    ch.handles.set(ch.handles.get() + 1);
    let mut m = members(l, c);
    m.join(role);
    set_members(l, c, m);
}

/// One handle of channel `c` leaves with `how`: an end as [`Membership::leave`] rules (the last
/// reader or writer retires the channel, poison poisons it); the record goes with its last handle.
pub(crate) fn leave(l: &mut Locked, c: u64, role: Role, how: Leave) {
    let mut m = members(l, c);
    let to = m.leave(role, how);
    set_members(l, c, m);
    if let Some(to) = to {
        end_channel(l, c, to);
    }
    release_handle(l, c);
}

/// Drops one handle of channel `c`; frees the record when it was the last.
fn release_handle(l: &mut Locked, c: u64) {
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
        l.chan(c)
            .state
            .store(ChannelState::Poisoned as u32, Ordering::Release);
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
        // A fresh allocation holds old bytes; nobody holds this thread's writes yet. (A grown
        // record replaces one that is not held either: its thread is not waiting.)
        let rec = l.waiter(off);
        rec.hold.store(0, Ordering::Relaxed);
        rec.holder.set(NIL);
        rec.ledger.set(ledger::mine());
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
    /// An extended read: the writer committed stays held until [`release_writer`].
    ReadHeld,
    Write(&'v [u8]),
}

/// One guard of an operation.
pub(crate) struct Spec<'v> {
    pub(crate) chan: u64,
    pub(crate) want: Want<'v>,
}

/// How an operation ended.
pub(crate) enum Fired {
    /// Guard `i` committed; inputs carry the value taken, an extended read also the record of
    /// the writer it holds (`NIL` for none: pass it to [`release_writer`]).
    Guard(usize, Option<Taken>, u64),
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

/// Takes a value from channel `c` for an extended read: as [`try_read`], but a waiting writer it
/// commits (on a rendezvous channel) is held: its record's `hold` is set before the claim. Returns
/// the value and the held writer's record (`NIL` for a buffered value).
fn try_read_held(l: &mut Locked, c: u64) -> Option<(Slot, u64)> {
    if l.chan(c).capacity.get() > 0 {
        return try_read(l, c).map(|s| (s, NIL));
    }
    let mut e = l.list(writeq(c)).head.get();
    while e != NIL {
        let ent = l.entry(e);
        let (k, w, guard, payload, next) = (
            ent.kind.get(),
            ent.waiter.get(),
            ent.guard.get(),
            ent.payload.get(),
            ent.next.get(),
        );
        if k == K_WRITE && l.waiter(w).state.load(Ordering::Relaxed).is_waiting() {
            // Published by the claim's release, before the writer can see it is committed.
            l.waiter(w).hold.store(1, Ordering::Relaxed);
            ledger::hold(ledger::mine(), w);
            if commit(l, w, guard, Slot::default()) {
                return Some((payload, w));
            }
            ledger::let_go(ledger::mine(), w);
            l.waiter(w).hold.store(0, Ordering::Relaxed);
        }
        e = next;
    }
    None
}

/// Lets go of the writer an extended read held (`NIL`: none).
pub(crate) fn release_writer(w: u64) {
    if w == NIL {
        return;
    }
    ledger::let_go(ledger::mine(), w);
    wake_held(w);
}

/// Lets go of the writer whose waiter record is `w`, held by an extended reader that is gone (or
/// letting it go itself).
pub(crate) fn wake_held(w: u64) {
    let hold = &segment().rec::<WaiterRec>(w).hold;
    hold.store(0, Ordering::SeqCst);
    futex::wake(hold, 1);
}

/// After a write committed: waits while an extended reader holds it.
fn wait_while_held() {
    let w = WAITER.with(|w| w.off.get());
    if w == NIL {
        return;
    }
    let hold = &segment().rec::<WaiterRec>(w).hold;
    while hold.load(Ordering::Acquire) != 0 {
        futex::wait(hold, 1, Deadline::Never);
    }
}

/// Commits the first waiting reader of channel `c` with `slot`. An extended reader (on a
/// rendezvous channel) holds the writer, whose record `me` it is told about before the claim;
/// with no record (`None`: the heap is full) the writer passes extended readers by.
fn commit_reader(l: &mut Locked, c: u64, slot: Slot, me: Option<u64>) -> bool {
    let rendezvous = l.chan(c).capacity.get() == 0;
    let mut e = l.list(readq(c)).head.get();
    while e != NIL {
        let ent = l.entry(e);
        let (k, w, guard, next) = (
            ent.kind.get(),
            ent.waiter.get(),
            ent.guard.get(),
            ent.next.get(),
        );
        match (k, me) {
            (K_READ, _) if commit(l, w, guard, slot) => return true,
            (K_READ_HELD, Some(me))
                if rendezvous && l.waiter(w).state.load(Ordering::Relaxed).is_waiting() =>
            {
                l.waiter(w).holder.set(me);
                l.waiter(me).hold.store(1, Ordering::Relaxed);
                let readers = l.waiter(w).ledger.get();
                ledger::hold(readers, me);
                if commit(l, w, guard, slot) {
                    return true;
                }
                ledger::let_go(readers, me);
                l.waiter(me).hold.store(0, Ordering::Relaxed);
            }
            (K_READ_HELD, _) if !rendezvous => {
                l.waiter(w).holder.set(NIL);
                if commit(l, w, guard, slot) {
                    return true;
                }
            }
            _ => {}
        }
        e = next;
    }
    false
}

/// Delivers `slot` on channel `c` if it can be now: to a waiting reader, or into the buffer.
/// `me` is the writer's waiter record, for an extended reader to hold.
fn try_write(l: &mut Locked, c: u64, slot: Slot, me: Option<u64>) -> bool {
    if state(l, c) != ChannelState::Open {
        return false;
    }
    if commit_reader(l, c, slot, me) {
        return true;
    }
    let ch = l.chan(c);
    let (len, ring, capacity) = (ch.buf_len.get(), ch.buf_cap.get(), ch.capacity.get());
    if len < capacity && (len < ring || buf_grow(l, c)) {
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

// ---------------------------------------------------------------------------------------------
// Adaptive spinning before the futex sleep.

/// The longest a waiter spins before it sleeps. A hop between two running processes takes a
/// couple of µs; a wait longer than this is one the other side was descheduled for.
const SPIN_MAX: Duration = Duration::from_micros(10);
/// Below this a halved budget drops to nothing (no spin at all).
const SPIN_MIN: Duration = Duration::from_nanos(500);

thread_local! {
    /// How long this thread's next wait spins: doubled (up to [`SPIN_MAX`]) after a wait that
    /// was over within `SPIN_MAX`, so spinning would have paid, halved after a longer one. A
    /// ring of many processes on few cores, where every wait is long, soon stops spinning. It
    /// starts small, so such a ring pays almost nothing before it learns.
    static SPIN: Cell<Duration> = const { Cell::new(SPIN_MIN) };
    /// Waits since the budget last dropped to nothing, to time one in [`PROBE_EVERY`].
    static UNTIMED: Cell<u32> = const { Cell::new(0) };
}

/// With no budget, one wait in this many is still timed, so that the budget can grow back.
const PROBE_EVERY: u32 = 16;

/// When this wait starts, if it is to be timed: always while there is a spin budget, else one in
/// [`PROBE_EVERY`] (reading the clock twice per wait is measurable in a long ring that never
/// spins).
fn timed_wait() -> Option<Instant> {
    if SPIN.with(Cell::get).is_zero() {
        let n = UNTIMED.with(|u| {
            let n = u.get().wrapping_add(1);
            u.set(n);
            n
        });
        if n % PROBE_EVERY != 0 {
            return None;
        }
    }
    Some(Instant::now())
}

/// Whether spinning can pay at all: not on one CPU, where the claimer cannot run meanwhile.
fn can_spin() -> bool {
    static MANY: OnceLock<bool> = OnceLock::new();
    *MANY.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// Spins on `word` for this thread's budget (from `start`) with exponential backoff: `true` as
/// soon as it is claimed, `false` when the budget ran out (or there is none).
fn spin_until_claimed(word: &ClaimWord, start: Instant) -> bool {
    let budget = SPIN.with(Cell::get);
    if budget.is_zero() || !can_spin() {
        return false;
    }
    let mut pause = 1u32;
    loop {
        if !word.load(Ordering::Acquire).is_waiting() {
            return true;
        }
        if start.elapsed() >= budget {
            return false;
        }
        for _ in 0..pause {
            std::hint::spin_loop();
        }
        pause = (pause * 2).min(64);
    }
}

/// Adjusts the spin budget after a wait that took `waited`, spinning and sleeping included.
fn adapt_spin(waited: Duration) {
    SPIN.with(|s| {
        let next = if waited <= SPIN_MAX {
            (s.get() * 2).clamp(SPIN_MIN, SPIN_MAX)
        } else if s.get() / 2 < SPIN_MIN {
            Duration::ZERO
        } else {
            s.get() / 2
        };
        s.set(next);
    });
}

/// Runs one operation: commits exactly one guard of `specs` (tried in `order`), or fires the
/// fallback at `deadline` when no guard became ready. `specs` is never empty (core runs an
/// alternation without channel guards itself).
pub(crate) fn run(
    specs: &[Spec<'_>],
    order: &[usize],
    deadline: Deadline,
) -> Result<Fired, ChannelError> {
    debug_assert!(!specs.is_empty(), "an operation has at least one guard");
    let fired = run_locked(specs, order, deadline)?;
    if let Fired::Guard(i, None, _) = fired
        && matches!(specs[i].want, Want::Write(_))
    {
        // Unlocked now: an extended reader that took the value may still hold us.
        wait_while_held();
    }
    Ok(fired)
}

fn run_locked(
    specs: &[Spec<'_>],
    order: &[usize],
    deadline: Deadline,
) -> Result<Fired, ChannelError> {
    let mut op = Operation::new(specs, order, deadline);
    loop {
        op.lock();
        op.check_poison()?;
        let offer = op.offer()?;
        if !offer.copy_outside.is_empty() {
            // Large values are copied with the lock released: each fresh allocation is ours
            // alone until it is offered, which happens only once the loop comes round again.
            op.unlock();
            let seg = segment();
            for (slot, bytes) in offer.copy_outside {
                seg.write_payload(slot, bytes);
            }
            continue;
        }
        if let Some(fired) = op.try_guards() {
            return Ok(fired);
        }
        op.nothing_can_fire()?;
        if deadline.has_passed() {
            return Ok(Fired::Fallback);
        }
        let Some(waiter) = op.register(offer.pending) else {
            op.wait_for_space();
            continue;
        };
        if let Some(fired) = op.sleep(waiter) {
            return Ok(fired);
        }
    }
}

/// What [`Operation::offer`] did: large values still to copy in, and whether a value did not fit.
struct Offer<'v> {
    copy_outside: Vec<(Slot, &'v [u8])>,
    pending: bool,
}

/// A waiter record with the operation's entries linked on their queues.
struct Registered {
    waiter: u64,
    used: u64,
}

/// One read, write or alternation under way: its guards, the payloads it has put in the heap for
/// its output guards, and the segment lock while it holds it.
///
/// Dropping it frees every payload it still offers (under the lock it holds, or taking the lock
/// if it holds none) and then unlocks: every way out of [`run`], an error included, gives back
/// what it offered. A committed output hands its payload over by taking it out of `offered`.
struct Operation<'s, 'v> {
    specs: &'s [Spec<'v>],
    order: &'s [usize],
    deadline: Deadline,
    chans: Vec<u64>,
    offered: Vec<Option<Slot>>,
    lock: Option<Locked>,
}

impl<'s, 'v> Operation<'s, 'v> {
    fn new(specs: &'s [Spec<'v>], order: &'s [usize], deadline: Deadline) -> Self {
        Operation {
            specs,
            order,
            deadline,
            chans: specs.iter().map(|s| s.chan).collect(),
            offered: vec![None; specs.len()],
            lock: None,
        }
    }

    /// Takes the lock unless already held, and frees the payload the last read left behind.
    fn lock(&mut self) {
        if self.lock.is_none() {
            let mut l = lock(&self.chans);
            flush_deferred(&mut l);
            self.lock = Some(l);
        }
    }

    fn unlock(&mut self) {
        self.lock = None;
    }

    /// Step 1: any poisoned guard channel (or a broken heap) fails the operation.
    fn check_poison(&mut self) -> Result<(), ChannelError> {
        let l = self.lock.as_ref().expect("the operation holds the lock");
        if l.broken()
            || self
                .chans
                .iter()
                .any(|&c| state(l, c) == ChannelState::Poisoned)
        {
            return Err(ChannelError::Poisoned);
        }
        Ok(())
    }

    /// Step 2: puts each open output guard's value in the heap (once), so a reader can take it.
    fn offer(&mut self) -> Result<Offer<'v>, ChannelError> {
        let l = self.lock.as_mut().expect("the operation holds the lock");
        let mut offer = Offer {
            copy_outside: Vec::new(),
            pending: false,
        };
        for &i in self.order {
            let spec = &self.specs[i];
            let Want::Write(bytes) = spec.want else {
                continue;
            };
            if self.offered[i].is_some() || state(l, spec.chan) != ChannelState::Open {
                continue;
            }
            match l.alloc(bytes.len()) {
                Err(e) => {
                    return Err(ChannelError::TooLarge {
                        size: e.requested,
                        max: e.largest_possible,
                    });
                }
                Ok(None) => offer.pending = true,
                Ok(Some(off)) => {
                    let slot = Slot {
                        off,
                        len: bytes.len() as u64,
                    };
                    if slot.len > SMALL {
                        offer.copy_outside.push((slot, bytes));
                    } else {
                        l.seg().write_payload(slot, bytes);
                    }
                    self.offered[i] = Some(slot);
                }
            }
        }
        Ok(offer)
    }

    /// Step 3: tries every guard in order; the first that can commit does.
    fn try_guards(&mut self) -> Option<Fired> {
        for &i in self.order {
            let c = self.specs[i].chan;
            let l = self.lock.as_mut().expect("the operation holds the lock");
            match self.specs[i].want {
                Want::Read => {
                    if let Some(slot) = try_read(l, c) {
                        return Some(Fired::Guard(i, Some(take(l, slot)), NIL));
                    }
                }
                Want::ReadHeld => {
                    if let Some((slot, writer)) = try_read_held(l, c) {
                        return Some(Fired::Guard(i, Some(take(l, slot)), writer));
                    }
                }
                Want::Write(_) => {
                    if let Some(slot) = self.offered[i] {
                        // The record an extended reader would hold (the one `register` uses).
                        let me = waiter_for(l, self.specs.len() + 1);
                        if try_write(l, c, slot, me) {
                            self.offered[i] = None; // handed over to a reader or the buffer
                            return Some(Fired::Guard(i, None, NIL));
                        }
                    }
                }
            }
        }
        None
    }

    /// Step 4a: fails the operation when no guard is live, as core's [`live_guards`] rules (a
    /// Skip or Timeout does not save it). Step 3 has just drained whatever a retired input
    /// channel still buffered, so a guard on a retired channel is dead.
    fn nothing_can_fire(&self) -> Result<(), ChannelError> {
        let l = self.lock.as_ref().expect("the operation holds the lock");
        // The common case, decided without building the list: some guard channel is open.
        if self
            .chans
            .iter()
            .any(|&c| state(l, c) == ChannelState::Open)
        {
            return Ok(());
        }
        live_guards(self.order, |i| match state(l, self.chans[i]) {
            ChannelState::Open => GuardStatus::Live,
            ChannelState::Retired => GuardStatus::Dead,
            ChannelState::Poisoned => GuardStatus::Poisoned,
        })
        .map(drop)
    }

    /// Step 4b: registers one entry per open guard channel, in the policy's order, all pointing
    /// at this thread's waiter record (plus one on the heap queue when a value did not fit).
    /// `None` when the heap has no room for the waiter record itself.
    fn register(&mut self, pending: bool) -> Option<Registered> {
        let l = self.lock.as_mut().expect("the operation holds the lock");
        let w = waiter_for(l, self.specs.len() + 1)?;
        let rec = l.waiter(w);
        // Published to the matchers by the unlock; every entry of the previous wait is unlinked.
        rec.state.reset();
        rec.sleeping.store(0, Ordering::Relaxed);
        rec.used.set(0);
        rec.holder.set(NIL);
        // A matcher walks a queue from its head, so when two guards wait on the same channel the
        // one registered first is the one it commits: register in the policy's order.
        let mut used = 0u64;
        for &i in self.order {
            let c = self.specs[i].chan;
            if state(l, c) != ChannelState::Open {
                continue;
            }
            let (kind, payload, list) = match self.specs[i].want {
                Want::Read => (K_READ, Slot::default(), readq(c)),
                Want::ReadHeld => (K_READ_HELD, Slot::default(), readq(c)),
                Want::Write(_) => match self.offered[i] {
                    Some(s) => (K_WRITE, s, writeq(c)),
                    None => (K_WRITE_PENDING, Slot::default(), writeq(c)),
                },
            };
            add_entry(l, w, used, i as u32, kind, payload, list);
            used += 1;
        }
        if pending {
            let hq = l.seg().heapq();
            add_entry(l, w, used, u32::MAX, K_HEAP, Slot::default(), hq);
            used += 1;
        }
        rec.used.set(used);
        Some(Registered { waiter: w, used })
    }

    /// No room for a waiter record: wait, without the lock, until space is freed.
    fn wait_for_space(&mut self) {
        let ticket = self
            .lock
            .as_ref()
            .expect("the operation holds the lock")
            .space_ticket();
        self.unlock();
        segment().wait_for_space(ticket, self.deadline);
    }

    /// Step 5: unlocks and sleeps on the waiter's state word until a commit, an alert or the
    /// deadline. `Some` when the operation is over; `None` (still holding the lock) to look again.
    fn sleep(&mut self, reg: Registered) -> Option<Fired> {
        self.unlock();
        let seg = segment();
        let rec = seg.rec::<WaiterRec>(reg.waiter);
        let word: &ClaimWord = &rec.state;
        let mut timed_out = false;
        let start = timed_wait();
        if !start.is_some_and(|start| spin_until_claimed(word, start)) {
            // Announce the sleep, then look at the word once more (Dekker's handshake with
            // `Locked::wake_waiter_later`): a claimer that missed the announcement made its claim
            // visible to the loads below, and the futex sleeps only while the word still reads
            // `Waiting`, so no wake is lost.
            rec.sleeping.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            while word.load(Ordering::SeqCst).is_waiting() {
                if !futex::wait(word.as_atomic(), Claim::Waiting.to_u32(), self.deadline) {
                    timed_out = true;
                    break;
                }
            }
        }
        if let Some(start) = start {
            adapt_spin(start.elapsed());
        }
        if !timed_out
            && let Claim::Fired(i) = word.load(Ordering::Acquire)
            && let Some(fired) = self.finish_unlocked(i as usize, rec.got.get(), rec.holder.get())
        {
            return Some(fired);
        }
        self.lock();
        let l = self.lock.as_mut().expect("the operation holds the lock");
        // A time-out claims the waiter itself; losing that race to a commit means the commit counts.
        let claim = if timed_out && word.claim(Claim::TimedOut) {
            Claim::TimedOut
        } else {
            word.load(Ordering::Acquire)
        };
        for k in 0..reg.used {
            unlink(l, entry_off(reg.waiter, k));
        }
        match claim {
            Claim::Fired(i) => {
                let (i, got) = (i as usize, rec.got.get());
                Some(match self.specs[i].want {
                    Want::Read => Fired::Guard(i, Some(take(l, got)), NIL),
                    Want::ReadHeld => Fired::Guard(i, Some(take(l, got)), rec.holder.get()),
                    Want::Write(_) => {
                        self.offered[i] = None; // the reader (or the buffer) owns it now
                        Fired::Guard(i, None, NIL)
                    }
                })
            }
            Claim::TimedOut => Some(Fired::Fallback),
            Claim::Ended => None,
            Claim::Waiting => unreachable!("a waiter woke unclaimed"),
        }
    }

    /// Committed as guard `i`: the committer unlinked our entries, so finish without the lock when
    /// nothing of ours is left in the heap but the value we were given. `None` when the lock is
    /// needed after all (other output values to free, or a large value to decode in place).
    fn finish_unlocked(&mut self, i: usize, got: Slot, holder: u64) -> Option<Fired> {
        let others = self
            .offered
            .iter()
            .enumerate()
            .any(|(k, s)| k != i && s.is_some());
        if others {
            return None;
        }
        match self.specs[i].want {
            Want::Write(_) => {
                self.offered[i] = None; // the reader (or the buffer) owns it now
                Some(Fired::Guard(i, None, NIL))
            }
            Want::Read | Want::ReadHeld if got.len <= SMALL => {
                let bytes = segment().read_payload(got);
                defer_free(got.off);
                let holder = match self.specs[i].want {
                    Want::ReadHeld => holder,
                    _ => NIL,
                };
                Some(Fired::Guard(i, Some(Taken::Local(bytes)), holder))
            }
            Want::Read | Want::ReadHeld => None,
        }
    }

    /// Frees every payload still offered (taking the lock if it is not held) and unlocks. A
    /// broken heap is never touched again, so then they stay where they are.
    fn release(&mut self) {
        if self.offered.iter().any(Option::is_some) {
            self.lock();
            let l = self.lock.as_mut().expect("the operation holds the lock");
            let broken = l.broken();
            for slot in self.offered.iter_mut().filter_map(Option::take) {
                if !broken {
                    free(l, slot.off);
                }
            }
        }
        self.unlock();
    }
}

impl Drop for Operation<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A panic inside a critical section may have left the records half-changed: unlock
            // without touching them again (the payloads still offered stay allocated).
            self.unlock();
        } else {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lock;
    use crate::{Alternation, Channel, ChannelError};
    use std::time::Duration;

    fn heap_free() -> usize {
        let mut l = lock(&[]);
        super::flush_deferred(&mut l);
        l.heap_free_bytes()
    }

    /// Every way out of an operation gives back the payloads it put in the heap for output guards
    /// that did not commit: a commit of another guard, poison, retirement, Skip and Timeout, for
    /// small values and for large ones (copied with the lock released).
    #[test]
    fn every_exit_frees_what_it_offered() {
        // Another test's processes would allocate in the same heap while this one measures it.
        let _alone = crate::SEGMENT_TESTS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for size in [8usize, 3 * 4096] {
            let value = vec![7u8; size];
            let (a, b) = (
                Channel::<Vec<u8>>::with_buffer(1),
                Channel::<Vec<u8>>::with_buffer(1),
            );
            let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
            let rendezvous = Channel::<Vec<u8>>::new();
            let (_rr, rw) = (rendezvous.reader(), rendezvous.writer());
            // Warm up: this thread's waiter record exists (it waited once) before measuring.
            let _ = Alternation::new()
                .input(&_rr, |_| ())
                .timeout(Duration::from_millis(1), || ())
                .select();
            let before = heap_free();

            // Both outputs ready: one commits, the other's value is freed.
            let which = Alternation::new()
                .output(&aw, value.clone(), || 0)
                .output(&bw, value.clone(), || 1)
                .pri_select();
            assert_eq!(which, Ok(0));
            assert_eq!(ar.read().map(|v| v.len()), Ok(size));
            // Skip: nobody reads the rendezvous channel.
            let skipped = Alternation::new()
                .output(&rw, value.clone(), || false)
                .skip(|| true)
                .select();
            assert_eq!(skipped, Ok(true));
            // Timeout: the output waited on the queue, then gave up.
            let timed_out = Alternation::new()
                .output(&rw, value.clone(), || false)
                .timeout(Duration::from_millis(5), || true)
                .select();
            assert_eq!(timed_out, Ok(true));
            assert_eq!(
                heap_free(),
                before,
                "size {size}: commit, skip or timeout leaked"
            );

            // Retired: the only reader leaves.
            drop(br);
            assert_eq!(bw.write(value.clone()), Err(ChannelError::Retired));
            // Poisoned.
            a.poison();
            assert_eq!(aw.write(value.clone()), Err(ChannelError::Poisoned));
            drop((a, b, ar, aw, bw, rendezvous, rw, _rr));
            let _ = Alternation::new().skip(|| ()).select();
            assert!(
                heap_free() > before,
                "size {size}: the channels were not freed"
            );
        }
    }
}
