//! The commit protocol (one engine behind reads, writes and alternations) and the `Alternation` API.
//!
//! Under the segment lock, an operation first tries every guard in the policy's order: an input
//! takes a buffered value or commits a waiting writer; an output commits a waiting reader or fills
//! the buffer. If nothing is ready (and no Skip/Timeout is due), it registers one entry per guard on
//! the guard channels' queues, all pointing at one waiter record whose state word is its futex,
//! unlocks, and sleeps. Whoever matches an entry moves the waiter from `WAITING` to `DONE` with a
//! compare-and-swap (so exactly one guard commits), hands over the payload, and wakes exactly that
//! waiter. Poison or retirement moves waiters to `ALERTED` instead, and they look again. A value
//! handed to a committed input is returned, full stop: nothing checks the channel after the commit.

use crate::ThreadSlot;
use crate::channel::{Reader, Writer};
use crate::codec::{self, Encoded};
use crate::futex;
use crate::shm::{
    ABORTED, ALERTED, ChanRec, DONE, ENTRY_SIZE, Entry, K_HEAP, K_READ, K_WRITE, K_WRITE_PENDING,
    List, Locked, NIL, OPEN, POISONED, Slot, WAITER_SIZE, WAITING, WaiterRec, segment,
};
use cspnet_core::{ChannelError, Deadline, Fallback, Policy, flush_dropped_ends};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::fmt;
use std::mem::offset_of;
use std::panic::Location;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Payloads up to this size are copied out under the lock and freed at once.
const SMALL: u64 = 4096;

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
    Local(Vec<u8>),
    Shared(Slot),
}

impl Taken {
    pub(crate) fn decode<T: DeserializeOwned + 'static>(self) -> T {
        match self {
            Taken::Local(bytes) => codec::decode_owned(bytes),
            Taken::Shared(slot) => {
                let seg = segment();
                // SAFETY: the slot was handed to this process by the commit; nobody else reads or
                // frees it until we free it below.
                let bytes =
                    unsafe { std::slice::from_raw_parts(seg.ptr(slot.off), slot.len as usize) };
                let value = codec::decode(bytes);
                let mut l = seg.lock(&[]);
                flush_deferred(&mut l);
                l.free(slot.off);
                value
            }
        }
    }
}

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
    if (off != NIL || deferred != NIL)
        && let Some(seg) = crate::shm::existing()
    {
        let mut l = seg.lock(&[]);
        for o in [off, deferred] {
            if o != NIL {
                l.free(o);
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
        l.free(off);
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
    let mut l = segment().lock(&[]);
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
            l.free(old);
        }
        Some(off)
    })
}

fn entry_off(w: u64, k: u64) -> u64 {
    w + WAITER_SIZE as u64 + k * ENTRY_SIZE as u64
}

fn readq(c: u64) -> u64 {
    c + offset_of!(ChanRec, readq) as u64
}

fn writeq(c: u64) -> u64 {
    c + offset_of!(ChanRec, writeq) as u64
}

fn state(l: &Locked, c: u64) -> u32 {
    l.chan(c).state.load(Ordering::Relaxed)
}

/// Takes a value from channel `c` if one is ready: buffered, or offered by a waiting writer.
fn try_read(l: &mut Locked, c: u64) -> Option<Slot> {
    if let Some(s) = l.buf_pop(c) {
        // Room in the buffer now: move the first waiting writer's value in.
        let mut e = l.rec::<List>(writeq(c)).head;
        while e != NIL {
            let (kind, w, guard, payload, next) = {
                let ent = l.entry(e);
                (ent.kind, ent.waiter, ent.guard, ent.payload, ent.next)
            };
            if kind == K_WRITE && l.commit(w, guard, Slot::default()) {
                l.buf_push(c, payload);
                break;
            }
            e = next;
        }
        return Some(s);
    }
    let mut e = l.rec::<List>(writeq(c)).head;
    while e != NIL {
        let (kind, w, guard, payload, next) = {
            let ent = l.entry(e);
            (ent.kind, ent.waiter, ent.guard, ent.payload, ent.next)
        };
        if kind == K_WRITE && l.commit(w, guard, Slot::default()) {
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
    let mut e = l.rec::<List>(readq(c)).head;
    while e != NIL {
        let (kind, w, guard, next) = {
            let ent = l.entry(e);
            (ent.kind, ent.waiter, ent.guard, ent.next)
        };
        if kind == K_READ && l.commit(w, guard, slot) {
            return true;
        }
        e = next;
    }
    let ch = l.chan(c);
    if ch.buf_len < ch.capacity {
        l.buf_push(c, slot);
        return true;
    }
    false
}

fn take(l: &mut Locked, slot: Slot) -> Taken {
    if slot.len <= SMALL {
        // SAFETY: the slot is ours now (committed to us) and `len` bytes long.
        let bytes = unsafe {
            std::slice::from_raw_parts(l.seg().ptr(slot.off), slot.len as usize).to_vec()
        };
        l.free(slot.off);
        Taken::Local(bytes)
    } else {
        Taken::Shared(slot)
    }
}

fn free_offered(l: &mut Locked, offered: &mut [Option<Slot>]) {
    for s in offered.iter_mut() {
        if let Some(s) = s.take() {
            l.free(s.off);
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
        let mut l = seg.lock(&chans);
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
                        if bytes.len() as u64 > SMALL {
                            copy_out_of_lock.push((off, bytes));
                        } else {
                            l.copy_in(off, bytes);
                        }
                        offered[i] = Some(Slot {
                            off,
                            len: bytes.len() as u64,
                        });
                    }
                }
            }
        }
        if !copy_out_of_lock.is_empty() {
            drop(l);
            for (off, bytes) in copy_out_of_lock {
                // SAFETY: `off` is a fresh allocation of `bytes.len()` bytes that only this
                // operation knows about (it is offered only once the loop comes round again).
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), seg.ptr(off), bytes.len()) };
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
        {
            let rec: &mut WaiterRec = l.waiter(w);
            rec.state.store(WAITING, Ordering::Relaxed);
            rec.used = 0;
        }
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
            let hq = l.heapq();
            add_entry(&l, w, used, u32::MAX, K_HEAP, Slot::default(), hq);
            used += 1;
        }
        l.waiter(w).used = used;
        drop(l);

        // SAFETY: the waiter record stays allocated (it is this thread's cached record) and its
        // state word is atomic.
        let word: &AtomicU32 = unsafe { &*(seg.ptr(w) as *const AtomicU32) };
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
            // nothing of ours is left in the heap but the value we were given.
            let (i, got) = {
                // SAFETY: our own waiter record; `chosen` and `got` were written before the
                // state became DONE (release), which we read with acquire.
                let rec = unsafe { &*(seg.ptr(w) as *const WaiterRec) };
                (rec.chosen as usize, rec.got)
            };
            let others = offered
                .iter()
                .enumerate()
                .any(|(k, s)| k != i && s.is_some());
            if !others {
                match specs[i].want {
                    Want::Write(_) => return Ok(Fired::Guard(i, None)),
                    Want::Read if got.len <= SMALL => {
                        // SAFETY: the slot is ours now and `len` bytes long.
                        let bytes = unsafe {
                            std::slice::from_raw_parts(seg.ptr(got.off), got.len as usize).to_vec()
                        };
                        defer_free(got.off);
                        return Ok(Fired::Guard(i, Some(Taken::Local(bytes))));
                    }
                    Want::Read => {}
                }
            }
        }
        let mut l = seg.lock(&chans);
        let st = if timed_out {
            match word.compare_exchange(WAITING, ABORTED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => ABORTED,
                Err(s) => s,
            }
        } else {
            word.load(Ordering::Acquire)
        };
        for k in 0..used {
            l.unlink(entry_off(w, k));
        }
        match st {
            DONE => {
                let (i, got) = {
                    let rec = l.waiter(w);
                    (rec.chosen as usize, rec.got)
                };
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

fn add_entry(l: &Locked, w: u64, k: u64, guard: u32, kind: u32, payload: Slot, list: u64) {
    let e = entry_off(w, k);
    {
        let ent: &mut Entry = l.entry(e);
        ent.waiter = w;
        ent.guard = guard;
        ent.kind = kind;
        ent.payload = payload;
        ent.list = NIL;
    }
    l.push_back(list, e);
}

/// One channel guard with its action, type-erased over the payload type.
trait Guard<'a, R> {
    fn chan(&self) -> u64;
    fn offer(&self) -> Option<&[u8]>;
    fn complete(self: Box<Self>, taken: Option<Taken>) -> R;
}

struct Input<'a, T, F> {
    reader: &'a Reader<T>,
    action: F,
}

impl<'a, T: DeserializeOwned + 'static, R, F: FnOnce(T) -> R> Guard<'a, R> for Input<'a, T, F> {
    fn chan(&self) -> u64 {
        self.reader.chan()
    }
    fn offer(&self) -> Option<&[u8]> {
        None
    }
    fn complete(self: Box<Self>, taken: Option<Taken>) -> R {
        let value = taken.expect("an input commits with a value").decode();
        (self.action)(value)
    }
}

struct Output<F> {
    chan: u64,
    value: Encoded,
    action: F,
}

impl<'a, R, F: FnOnce() -> R> Guard<'a, R> for Output<F> {
    fn chan(&self) -> u64 {
        self.chan
    }
    fn offer(&self) -> Option<&[u8]> {
        Some(self.value.bytes())
    }
    fn complete(self: Box<Self>, _: Option<Taken>) -> R {
        (self.action)()
    }
}

/// A choice between guards: exactly one ready guard commits and its action runs.
///
/// Input guards ([`input`](Self::input)) and output guards ([`output`](Self::output)) may be mixed;
/// [`skip`](Self::skip) and [`timeout`](Self::timeout) fire only when no channel guard is ready.
/// Finish with [`select`](Self::select) (any ready guard), [`pri_select`](Self::pri_select) (the
/// first ready in the order given) or [`fair_select`](Self::fair_select) (rotating).
///
/// ```
/// use cspnet_processes::{Alternation, Channel};
/// use std::time::Duration;
///
/// let a = Channel::<u32>::with_buffer(1);
/// let b = Channel::<String>::new();
/// let (ar, aw, br) = (a.reader(), a.writer(), b.reader());
/// # let _bw = b.writer();
/// aw.write(7).unwrap();
/// let got = Alternation::new()
///     .input(&ar, |n| format!("number {n}"))
///     .input(&br, |s| format!("text {s}"))
///     .timeout(Duration::from_secs(1), || "nothing".to_string())
///     .select();
/// assert_eq!(got.unwrap(), "number 7");
/// ```
#[must_use = "an alternation does nothing until select, pri_select or fair_select is called"]
pub struct Alternation<'a, R> {
    guards: Vec<Box<dyn Guard<'a, R> + 'a>>,
    fallback: Fallback<Box<dyn FnOnce() -> R + 'a>>,
}

impl<R> Default for Alternation<'_, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> fmt::Debug for Alternation<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alternation")
            .field("guards", &self.guards.len())
            .field("fallback", &self.fallback.deadline())
            .finish()
    }
}

impl<'a, R> Alternation<'a, R> {
    /// An alternation with no guards yet.
    ///
    /// ```
    /// let alt = cspnet_processes::Alternation::<()>::new().skip(|| ());
    /// assert_eq!(alt.select(), Ok(()));
    /// ```
    pub fn new() -> Self {
        Alternation {
            guards: Vec::new(),
            fallback: Fallback::new(),
        }
    }

    /// An input guard: ready when `reader` can read; the value read is passed to `action`.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(2).unwrap();
    /// let doubled = cspnet_processes::Alternation::new().input(&r, |v| v * 2).select();
    /// assert_eq!(doubled, Ok(4));
    /// ```
    pub fn input<T: DeserializeOwned + 'static>(
        mut self,
        reader: &'a Reader<T>,
        action: impl FnOnce(T) -> R + 'a,
    ) -> Self {
        self.guards.push(Box::new(Input { reader, action }));
        self
    }

    /// An output guard: ready when `writer` can write `value`; `action` runs once it is delivered.
    /// If another guard commits, `value` is dropped undelivered.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// let sent = cspnet_processes::Alternation::new().output(&w, 5, || "sent").select();
    /// assert_eq!(sent, Ok("sent"));
    /// assert_eq!(r.read(), Ok(5));
    /// ```
    pub fn output<T: Serialize + 'static>(
        mut self,
        writer: &'a Writer<T>,
        value: T,
        action: impl FnOnce() -> R + 'a,
    ) -> Self {
        self.guards.push(Box::new(Output {
            chan: writer.chan(),
            value: codec::encode(value),
            action,
        }));
        self
    }

    /// A timeout guard: fires once `duration` has passed with no channel guard ready.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ch = cspnet_processes::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_processes::Alternation::new()
    ///     .input(&r, |v| v)
    ///     .timeout(Duration::from_millis(1), || 0)
    ///     .select();
    /// assert_eq!(got, Ok(0));
    /// ```
    pub fn timeout(mut self, duration: Duration, action: impl FnOnce() -> R + 'a) -> Self {
        self.fallback
            .add(Deadline::after(duration), Box::new(action));
        self
    }

    /// A skip guard: always ready, but fires only when no channel guard is ready, so the
    /// alternation never blocks.
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::new();
    /// let (r, _w) = (ch.reader(), ch.writer());
    /// let got = cspnet_processes::Alternation::new().input(&r, Some).skip(|| None).select();
    /// assert_eq!(got, Ok(None));
    /// ```
    pub fn skip(mut self, action: impl FnOnce() -> R + 'a) -> Self {
        self.fallback.add(Deadline::Now, Box::new(action));
        self
    }

    /// Commits any one ready guard (no promise which) and returns its action's result.
    ///
    /// Fails with `Poisoned` if any guard's channel is poisoned, and with `Retired` once every
    /// channel guard's channel is retired (or there are no guards at all).
    ///
    /// ```
    /// let ch = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (r, w) = (ch.reader(), ch.writer());
    /// w.write(1).unwrap();
    /// assert_eq!(cspnet_processes::Alternation::new().input(&r, |v| v).select(), Ok(1));
    /// ```
    pub fn select(self) -> Result<R, ChannelError> {
        self.run(Policy::Arbitrary)
    }

    /// Commits the first ready guard in the order the guards were given.
    ///
    /// ```
    /// let a = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let b = cspnet_processes::Channel::<u32>::with_buffer(1);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// aw.write(1).unwrap();
    /// bw.write(2).unwrap();
    /// let got = cspnet_processes::Alternation::new().input(&br, |v| v).input(&ar, |v| v).pri_select();
    /// assert_eq!(got, Ok(2));
    /// ```
    pub fn pri_select(self) -> Result<R, ChannelError> {
        self.run(Policy::Priority)
    }

    /// Commits a ready guard, rotating priority past the guard chosen last time at this call site
    /// in this process, so a guard that stays ready is served within as many rounds as there are
    /// guards.
    ///
    /// ```
    /// let a = cspnet_processes::Channel::<u32>::with_buffer(4);
    /// let b = cspnet_processes::Channel::<u32>::with_buffer(4);
    /// let (ar, aw, br, bw) = (a.reader(), a.writer(), b.reader(), b.writer());
    /// for _ in 0..2 { aw.write(1).unwrap(); bw.write(2).unwrap(); }
    /// let mut got = Vec::new();
    /// for _ in 0..4 {
    ///     got.push(cspnet_processes::Alternation::new().input(&ar, |v| v).input(&br, |v| v).fair_select().unwrap());
    /// }
    /// assert_eq!(got, vec![1, 2, 1, 2]);
    /// ```
    #[track_caller]
    pub fn fair_select(self) -> Result<R, ChannelError> {
        self.run(Policy::Fair(Location::caller()))
    }

    fn run(mut self, policy: Policy) -> Result<R, ChannelError> {
        flush_dropped_ends::<ThreadSlot>();
        let n = self.guards.len();
        let mut order = policy.order::<ThreadSlot>(n);
        if policy == Policy::Arbitrary && n > 1 {
            // Any ready guard: start at a varying place so no guard is systematically favoured.
            let start = (arbitrary_seed() as usize) % n;
            order.rotate_left(start);
        }
        let fired = {
            let specs: Vec<Spec<'_>> = self
                .guards
                .iter()
                .map(|g| Spec {
                    chan: g.chan(),
                    want: match g.offer() {
                        Some(bytes) => Want::Write(bytes),
                        None => Want::Read,
                    },
                })
                .collect();
            run(&specs, &order, self.fallback.deadline())?
        };
        match fired {
            Fired::Guard(i, taken) => {
                policy.chose::<ThreadSlot>(n, i);
                Ok(self.guards.swap_remove(i).complete(taken))
            }
            Fired::Fallback => {
                let action = self
                    .fallback
                    .take_action()
                    .expect("a fallback with a deadline has an action");
                Ok(action())
            }
        }
    }
}

fn arbitrary_seed() -> u32 {
    thread_local! { static SEED: Cell<u32> = const { Cell::new(0x9E37_79B9) }; }
    SEED.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.set(x);
        x
    })
}
