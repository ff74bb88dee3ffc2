//! Liveness-planned placement of intermediate tensors into a few large
//! buffers ("arenas"): the memory pattern that JSEP had to disable because
//! its tensors were whole buffers. Here a tensor is a buffer slice, so two
//! tensors never alive at the same step may share bytes.
//!
//! The plan is greedy by size: the largest tensors are placed first, each
//! in the smallest gap between tensors alive at the same time that holds
//! it (best fit), else where it grows an arena least. On networks this
//! lands within a few percent of the lower bound, the most bytes alive at
//! once.

use byob_tensor::Lifetime;

/// A tensor's size and its lifetime (byob-tensor's, as the CPU's memory
/// plan counts it: producer to last consumer, inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub size: u64,
    pub lifetime: Lifetime,
}

impl Interval {
    fn overlaps(&self, other: &Interval) -> bool {
        self.lifetime.overlaps(&other.lifetime)
    }
}

/// Where a tensor lives: an arena and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub arena: usize,
    pub offset: u64,
}

/// Placements in the order of the intervals, and the size of each arena.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolPlan {
    pub placements: Vec<Placement>,
    pub arena_sizes: Vec<u64>,
}

impl PoolPlan {
    pub fn total_size(&self) -> u64 {
        self.arena_sizes.iter().sum()
    }
}

/// The most bytes alive at one step: no plan can use less.
pub fn lower_bound(intervals: &[Interval]) -> u64 {
    let steps = intervals.iter().map(|i| i.lifetime.last + 1).max().unwrap_or(0);
    // Sizes enter at first use and leave after last use.
    let mut delta = vec![0i128; steps + 1];
    for i in intervals {
        delta[i.lifetime.first] += i128::from(i.size);
        delta[i.lifetime.last + 1] -= i128::from(i.size);
    }
    let mut live = 0i128;
    delta.iter().map(|d| {
        live += d;
        live
    }).max().unwrap_or(0) as u64
}

/// Places `intervals` at offsets that are multiples of `alignment` (the
/// device's `min_storage_buffer_offset_alignment`) in arenas of at most
/// `max_arena_size` bytes (the device's largest storage binding), unless a
/// single tensor is larger, which then gets an arena of its own.
pub fn plan_pool(intervals: &[Interval], alignment: u64, max_arena_size: u64) -> PoolPlan {
    let alignment = alignment.max(4);
    // Every tensor takes whole alignment units, so that its neighbours'
    // offsets stay aligned; empty tensors still need a bindable byte range.
    let footprint = |i: &Interval| i.size.max(4).div_ceil(alignment) * alignment;
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(footprint(&intervals[i])), intervals[i].lifetime.first, i));

    let mut plan = PoolPlan { placements: vec![Placement { arena: 0, offset: 0 }; intervals.len()], arena_sizes: Vec::new() };
    // Placed tensors per arena, as (offset, footprint, interval index).
    let mut placed: Vec<Vec<(u64, u64, usize)>> = Vec::new();
    for &t in &order {
        let size = footprint(&intervals[t]);
        // (wasted gap or growth, arena, offset); a gap that fits beats growth.
        let mut best: Option<(bool, u64, usize, u64)> = None;
        for (arena, tensors) in placed.iter().enumerate() {
            let mut conflicts: Vec<(u64, u64)> = tensors.iter().filter(|&&(_, _, o)| intervals[o].overlaps(&intervals[t])).map(|&(off, sz, _)| (off, sz)).collect();
            conflicts.sort_unstable();
            let mut end = 0;
            for (offset, footprint) in conflicts {
                if offset >= end + size {
                    let candidate = (false, offset - end - size, arena, end);
                    best = Some(best.map_or(candidate, |b| b.min(candidate)));
                }
                end = end.max(offset + footprint);
            }
            if end + size <= max_arena_size {
                let growth = (end + size).saturating_sub(plan.arena_sizes[arena]);
                let candidate = (true, growth, arena, end);
                best = Some(best.map_or(candidate, |b| b.min(candidate)));
            }
        }
        let (arena, offset) = match best {
            Some((_, _, arena, offset)) => (arena, offset),
            None => {
                placed.push(Vec::new());
                plan.arena_sizes.push(0);
                (placed.len() - 1, 0)
            }
        };
        placed[arena].push((offset, size, t));
        plan.arena_sizes[arena] = plan.arena_sizes[arena].max(offset + size);
        plan.placements[t] = Placement { arena, offset };
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence.
    fn rng(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }

    /// No two tensors alive at once share a byte; offsets are aligned.
    fn check(intervals: &[Interval], plan: &PoolPlan, alignment: u64) {
        assert_eq!(plan.placements.len(), intervals.len());
        for (i, (a, pa)) in intervals.iter().zip(&plan.placements).enumerate() {
            assert_eq!(pa.offset % alignment, 0, "tensor {i} at {}", pa.offset);
            assert!(pa.offset + a.size <= plan.arena_sizes[pa.arena], "tensor {i} past its arena");
            for (j, (b, pb)) in intervals.iter().zip(&plan.placements).enumerate().skip(i + 1) {
                if pa.arena == pb.arena && a.overlaps(b) {
                    let disjoint = pa.offset + a.size.max(1) <= pb.offset || pb.offset + b.size.max(1) <= pa.offset;
                    assert!(disjoint, "tensors {i} {a:?} at {pa:?} and {j} {b:?} at {pb:?} overlap");
                }
            }
        }
        assert!(plan.total_size() >= lower_bound(intervals));
    }

    /// A ResNet-like network: a stem, then bottleneck blocks whose input
    /// stays alive for the skip connection until the Add.
    fn resnet_like() -> Vec<Interval> {
        let mut intervals = Vec::new();
        let mut step = 0;
        let mut tensor = |size: u64, first: usize, last: usize| {
            intervals.push(Interval { size, lifetime: Lifetime { first, last } });
        };
        let f = 4u64;
        tensor(64 * 112 * 112 * f, step, step + 1); // conv1
        step += 1;
        let mut input_step = step;
        tensor(64 * 56 * 56 * f, step, step + 1); // max pool
        step += 1;
        for (blocks, width, side) in [(3u64, 64u64, 56u64), (4, 128, 28), (6, 256, 14), (3, 512, 7)] {
            for b in 0..blocks {
                let x_first = input_step;
                let x_size = if b == 0 && width == 64 { 64 * side * side * f } else { 4 * width * side * side * f };
                let block_start = step;
                tensor(width * side * side * f, step, step + 1); // 1x1 reduce (+relu fused)
                step += 1;
                tensor(width * side * side * f, step, step + 1); // 3x3
                step += 1;
                tensor(4 * width * side * side * f, step, step + 1); // 1x1 expand
                step += 1;
                let skip_last = if b == 0 {
                    tensor(4 * width * side * side * f, step, step + 1); // projection shortcut
                    step += 1;
                    step
                } else {
                    step
                };
                // The block input lives until the Add (or the projection).
                tensor(x_size, x_first, skip_last.max(block_start));
                tensor(4 * width * side * side * f, step, step + 1); // add + relu
                input_step = step;
                step += 1;
            }
        }
        tensor(2048 * f, step, step + 1);
        tensor(1000 * f, step + 1, step + 2);
        intervals
    }

    #[test]
    fn resnet_like_network_is_within_a_quarter_of_the_lower_bound() {
        let intervals = resnet_like();
        let plan = plan_pool(&intervals, 256, u64::MAX);
        check(&intervals, &plan, 256);
        let (total, bound) = (plan.total_size(), lower_bound(&intervals));
        assert_eq!(plan.arena_sizes.len(), 1);
        assert!(total as f64 <= 1.25 * bound as f64, "{total} bytes planned, lower bound {bound}");
    }

    #[test]
    fn random_lifetimes_never_overlap() {
        let mut r = rng(0x9e3779b97f4a7c15);
        for case in 0..40 {
            let n = 1 + r(60) as usize;
            let intervals: Vec<Interval> = (0..n)
                .map(|_| {
                    let first = r(50) as usize;
                    Interval { size: r(5000), lifetime: Lifetime { first, last: first + r(8) as usize } }
                })
                .collect();
            let alignment = [4, 16, 256][case % 3];
            let plan = plan_pool(&intervals, alignment, u64::MAX);
            check(&intervals, &plan, alignment);
        }
    }

    #[test]
    fn a_chain_reuses_memory() {
        // Each tensor dies as the next is born but one: two slots suffice.
        let intervals: Vec<Interval> = (0..20).map(|i| Interval { size: 1000, lifetime: Lifetime { first: i, last: i + 1 } }).collect();
        let plan = plan_pool(&intervals, 256, u64::MAX);
        check(&intervals, &plan, 256);
        assert_eq!(plan.total_size(), 2 * 1024);
    }

    #[test]
    fn arenas_respect_the_size_limit() {
        let intervals: Vec<Interval> = (0..6).map(|i| Interval { size: 1000, lifetime: Lifetime { first: 0, last: i } }).chain([Interval { size: 5000, lifetime: Lifetime { first: 2, last: 3 } }]).collect();
        let plan = plan_pool(&intervals, 256, 2048);
        check(&intervals, &plan, 256);
        assert!(plan.arena_sizes.iter().all(|&s| s <= 2048 || s == 5120), "{:?}", plan.arena_sizes);
        assert!(plan.arena_sizes.len() >= 3);
    }

    #[test]
    fn lower_bound_counts_what_is_alive_together() {
        let intervals = [Interval { size: 10, lifetime: Lifetime { first: 0, last: 1 } }, Interval { size: 20, lifetime: Lifetime { first: 1, last: 2 } }, Interval { size: 5, lifetime: Lifetime { first: 2, last: 3 } }];
        assert_eq!(lower_bound(&intervals), 30);
        assert_eq!(lower_bound(&[]), 0);
    }
}
