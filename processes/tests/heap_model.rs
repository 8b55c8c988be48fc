//! Property test of the payload heap against a model of next fit with boundary tags.
//!
//! Each case formats a region of random length at a random misalignment, runs a random sequence of
//! allocations and frees, and after every step compares the heap with a model that keeps the block list
//! in a `Vec`: the heap must list exactly the model's blocks, keep its rover where the model's is, and
//! hand out exactly the block the model picks (the first free block at or after the rover, wrapping,
//! that fits). Independently of the model it checks that live payloads are disjoint, inside the region,
//! and keep the bytes written into them, and that freeing everything leaves one free block.
//!
//! The default is 256 cases (4 shorter ones under Miri); set `PROPTEST_CASES` for more or fewer.
//!
//! Linux only, like the processes backend itself.
#![cfg(target_os = "linux")]

use cspnet_processes::heap::{Block, Heap, HeapError};
use proptest::prelude::*;
use proptest::sample::Index;

/// Size knobs: Miri runs the same test on small regions and short sequences.
const MAX_LEN: usize = if cfg!(miri) { 512 } else { 3000 };
const MAX_OPS: usize = if cfg!(miri) { 40 } else { 300 };
const DEFAULT_CASES: u32 = if cfg!(miri) { 4 } else { 256 };

/// Bytes of header and footer per block, and the granularity of block sizes: the layout under test.
const TAGS: usize = 16;
const ALIGN: usize = 16;

#[derive(Debug, Clone)]
enum Op {
    /// Allocate this many bytes (may exceed `max_alloc`).
    Alloc(usize),
    /// Allocate exactly the largest free capacity, or `max_alloc` plus the given excess.
    AllocLargest,
    AllocTooLarge(usize),
    /// Free one of the live blocks.
    Free(Index),
    /// Copy the region to another address with another misalignment and attach there.
    Move(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..=64).prop_map(Op::Alloc),
        4 => (0usize..=512).prop_map(Op::Alloc),
        1 => (0usize..=4096).prop_map(Op::Alloc),
        1 => Just(Op::AllocLargest),
        1 => (1usize..=64).prop_map(Op::AllocTooLarge),
        12 => any::<Index>().prop_map(Op::Free),
        1 => (0usize..ALIGN).prop_map(Op::Move),
    ]
}

/// The reference: the block list as a `Vec` in address order, and the rover as a payload offset.
struct Model {
    blocks: Vec<Block>,
    rover: usize,
    max_alloc: usize,
}

impl Model {
    fn index_of(&self, offset: usize) -> usize {
        self.blocks
            .iter()
            .position(|b| b.offset == offset)
            .expect("the model has a block at this offset")
    }

    fn alloc(&mut self, size: usize) -> Result<Option<usize>, HeapError> {
        if size > self.max_alloc {
            return Err(HeapError {
                requested: size,
                largest_possible: self.max_alloc,
            });
        }
        let need = size.div_ceil(ALIGN) * ALIGN;
        let n = self.blocks.len();
        let start = self.index_of(self.rover);
        for i in (start..n).chain(0..start) {
            let block = self.blocks[i];
            if block.used || block.capacity < need {
                continue;
            }
            if block.capacity - need >= TAGS {
                self.blocks[i] = Block {
                    offset: block.offset,
                    capacity: need,
                    used: true,
                };
                let rest = Block {
                    offset: block.offset + need + TAGS,
                    capacity: block.capacity - need - TAGS,
                    used: false,
                };
                self.blocks.insert(i + 1, rest);
                self.rover = rest.offset;
            } else {
                self.blocks[i].used = true;
                self.rover = self.blocks[(i + 1) % n].offset;
            }
            return Ok(Some(block.offset));
        }
        Ok(None)
    }

    fn free(&mut self, offset: usize) {
        let mut i = self.index_of(offset);
        assert!(self.blocks[i].used);
        self.blocks[i].used = false;
        if i + 1 < self.blocks.len() && !self.blocks[i + 1].used {
            let right = self.blocks.remove(i + 1);
            self.blocks[i].capacity += right.capacity + TAGS;
        }
        if i > 0 && !self.blocks[i - 1].used {
            let this = self.blocks.remove(i);
            i -= 1;
            self.blocks[i].capacity += this.capacity + TAGS;
        }
        let merged = self.blocks[i];
        if merged.offset < self.rover && self.rover < merged.offset + merged.capacity + TAGS {
            self.rover = merged.offset;
        }
    }

    fn free_bytes(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| !b.used)
            .map(|b| b.capacity)
            .sum()
    }

    fn largest_free(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| !b.used)
            .map(|b| b.capacity)
            .max()
            .unwrap_or(0)
    }
}

/// A live allocation as the user sees it: where, how long, and the seed of the bytes written into it.
#[derive(Debug, Clone, Copy)]
struct Live {
    offset: usize,
    size: usize,
    seed: u8,
}

fn pattern(seed: u8, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| seed.wrapping_add((i as u8).wrapping_mul(31)))
}

/// The bytes that hold the region at `shift`, so that its start is misaligned by `shift`.
struct Backing {
    bytes: Vec<u8>,
    shift: usize,
    len: usize,
}

impl Backing {
    fn region(&mut self) -> &mut [u8] {
        &mut self.bytes[self.shift..self.shift + self.len]
    }
}

/// Checks the heap against the model and the user's view after one step.
fn check(heap: &Heap<'_>, model: &Model, live: &[Live], len: usize) -> Result<(), TestCaseError> {
    let blocks: Vec<Block> = heap.blocks().collect();
    prop_assert_eq!(&blocks, &model.blocks);
    prop_assert_eq!(heap.rover(), model.rover);
    prop_assert_eq!(heap.free_bytes(), model.free_bytes());
    prop_assert_eq!(heap.largest_free(), model.largest_free());
    prop_assert_eq!(heap.max_alloc(), model.max_alloc);

    // The walk tiles the heap with no gaps, never puts two free blocks side by side, and the rover
    // names one of its blocks.
    for pair in blocks.windows(2) {
        prop_assert_eq!(pair[0].offset + pair[0].capacity + TAGS, pair[1].offset);
        prop_assert!(
            pair[0].used || pair[1].used,
            "adjacent free blocks {:?}",
            pair
        );
    }
    let last = blocks.last().expect("a heap has a block");
    prop_assert!(last.offset + last.capacity <= len);
    prop_assert!(blocks.iter().any(|b| b.offset == heap.rover()));

    // Live payloads: distinct, disjoint, inside the region, in used blocks, with their bytes intact.
    let mut sorted = live.to_vec();
    sorted.sort_by_key(|l| l.offset);
    for pair in sorted.windows(2) {
        prop_assert!(pair[0].offset + pair[0].size <= pair[1].offset);
        prop_assert!(pair[0].offset < pair[1].offset);
    }
    for l in live {
        prop_assert!(l.offset + l.size <= len);
        prop_assert!(
            blocks
                .iter()
                .any(|b| b.offset == l.offset && b.used && b.capacity >= l.size)
        );
        prop_assert!(
            heap.bytes(l.offset, l.size)
                .iter()
                .copied()
                .eq(pattern(l.seed, l.size)),
            "the payload at {} was overwritten",
            l.offset
        );
    }
    prop_assert_eq!(blocks.iter().filter(|b| b.used).count(), live.len());
    Ok(())
}

fn run(len: usize, shift: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut backing = Backing {
        bytes: vec![0x5A; shift + len],
        shift,
        len,
    };
    let mut model = {
        let heap = Heap::format(backing.region());
        let blocks: Vec<Block> = heap.blocks().collect();
        let max_alloc = heap.max_alloc();
        prop_assert_eq!(
            &blocks,
            &vec![Block {
                offset: blocks[0].offset,
                capacity: max_alloc,
                used: false
            }]
        );
        prop_assert_eq!(blocks[0].offset % ALIGN, 0);
        prop_assert!(
            len - max_alloc < 64,
            "overhead of {} bytes",
            len - max_alloc
        );
        Model {
            rover: blocks[0].offset,
            blocks,
            max_alloc,
        }
    };
    let mut live: Vec<Live> = Vec::new();
    let mut seed = 0u8;

    let step = |op: &Op,
                backing: &mut Backing,
                model: &mut Model,
                live: &mut Vec<Live>,
                seed: &mut u8|
     -> Result<(), TestCaseError> {
        if let Op::Move(shift) = *op {
            let mut bytes = vec![0xA5; shift + len];
            bytes[shift..].copy_from_slice(backing.region());
            *backing = Backing { bytes, shift, len };
        }
        // Attach afresh every step: all of the heap's state must be in the bytes.
        let mut heap = Heap::attach(backing.region());
        let size = match *op {
            Op::Alloc(size) => Some(size),
            Op::AllocLargest => Some(model.largest_free()),
            Op::AllocTooLarge(excess) => Some(model.max_alloc + excess),
            Op::Free(_) | Op::Move(_) => None,
        };
        if let Some(size) = size {
            let expected = model.alloc(size);
            let got = heap.alloc(size);
            prop_assert_eq!(got, expected, "alloc({})", size);
            if let Ok(Some(offset)) = got {
                *seed = seed.wrapping_add(1);
                for (byte, value) in heap
                    .bytes_mut(offset, size)
                    .iter_mut()
                    .zip(pattern(*seed, size))
                {
                    *byte = value;
                }
                live.push(Live {
                    offset,
                    size,
                    seed: *seed,
                });
            } else if got == Ok(None) {
                prop_assert!(
                    size > model.largest_free() || (size == 0 && model.largest_free() == 0)
                );
            }
        }
        if let Op::Free(index) = op {
            if !live.is_empty() {
                let l = live.swap_remove(index.index(live.len()));
                prop_assert!(
                    heap.bytes(l.offset, l.size)
                        .iter()
                        .copied()
                        .eq(pattern(l.seed, l.size))
                );
                model.free(l.offset);
                heap.free(l.offset);
            }
        }
        check(&heap, model, live, len)
    };

    for op in &ops {
        step(op, &mut backing, &mut model, &mut live, &mut seed)?;
    }
    // Free everything, oldest first, still checking every step; then the heap is one block again.
    while !live.is_empty() {
        let l = live.remove(0);
        let mut heap = Heap::attach(backing.region());
        model.free(l.offset);
        heap.free(l.offset);
        check(&heap, &model, &live, len)?;
    }
    let heap = Heap::attach(backing.region());
    prop_assert_eq!(heap.largest_free(), heap.max_alloc());
    prop_assert_eq!(heap.free_bytes(), heap.max_alloc());
    prop_assert_eq!(heap.blocks().count(), 1);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn heap_matches_the_next_fit_model(
        len in Heap::MIN_REGION..MAX_LEN,
        shift in 0usize..ALIGN,
        ops in prop::collection::vec(op(), 1..MAX_OPS),
    ) {
        run(len, shift, ops)?;
    }
}
