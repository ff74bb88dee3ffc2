//! The memory plan (ONNX Runtime's "memory pattern"): which buffer holds
//! each intermediate value, computed once per set of input shapes from the
//! values' sizes and lifetimes, so that later runs with the same shapes
//! reuse the same buffers and allocate nothing.

use crate::tensor::DataType;

/// What the planner knows of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueSize {
    /// Not an intermediate: a graph input, a constant, or a graph output
    /// (whose buffer the caller owns).
    External,
    /// An intermediate of known type and element count.
    Known(DataType, usize),
    /// An intermediate whose size is only known when running: it gets a
    /// buffer of its own, which grows on the first run and is kept.
    Unknown,
}

/// When a value needs its storage: from the step that writes it to the
/// last step that reads it, inclusive. The CPU's memory plan and the
/// WebGPU provider's arena planner both place values by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub first: usize,
    pub last: usize,
}

impl Lifetime {
    /// Whether the two need their storage at a common step (so cannot
    /// share it).
    pub fn overlaps(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// A buffer of the plan: its element type and capacity in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Buffer {
    pub dtype: Option<DataType>,
    pub capacity: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemoryPlan {
    /// The buffer of each value (`None` for external values).
    pub buffer_of: Vec<Option<usize>>,
    pub buffers: Vec<Buffer>,
    /// The most bytes of known-size intermediates alive at once: no plan can
    /// use less.
    pub lower_bound_bytes: usize,
}

impl MemoryPlan {
    /// Whether `value` lives in a buffer of known size (one that
    /// [`planned_bytes`](Self::planned_bytes) counts).
    pub fn sized(&self, value: usize) -> bool {
        self.buffer_of[value].is_some_and(|b| self.buffers[b].dtype.is_some())
    }

    /// Bytes of the known-size buffers.
    pub fn planned_bytes(&self) -> usize {
        // Saturating: a plan for a crafted model may name sizes whose sum
        // no machine holds (its allocation then fails, with an error).
        self.buffers.iter().map(|b| b.dtype.map_or(0, |d| d.size().saturating_mul(b.capacity))).fold(0, usize::saturating_add)
    }

    /// Assigns buffers with two greedy heuristics and keeps the plan that
    /// needs fewer bytes (neither wins on every graph): in step order, each
    /// new value taking the smallest free buffer of its type that holds it
    /// (else growing the largest free one); and by size (TensorFlow Lite's
    /// planner), values in decreasing size each taking the smallest buffer
    /// whose values' lifetimes do not overlap theirs. A value lives from the
    /// step that writes it to the last step that reads it, inclusive, so a
    /// step's outputs never share a buffer with its own inputs, except the
    /// pairs `in_place` names: (an input, the output that may take its
    /// tensor over at the input's last step), which share one buffer when
    /// both have the same known type and size, as one value living from the
    /// first's start to the second's end. The pairs come in step order, so
    /// that a chain's later pairs find its earlier ones joined already.
    pub fn new(sizes: &[ValueSize], lifetimes: &[Option<Lifetime>], steps: usize, in_place: &[(usize, usize)]) -> Self {
        let mut base = Self { buffer_of: vec![None; sizes.len()], ..Self::default() };
        // Each value's group: itself, or the first value of its chain of
        // buffers taken over (a ResNet's shortcut, block after block).
        let mut group: Vec<usize> = (0..sizes.len()).collect();
        for &(input, output) in in_place {
            if matches!(sizes[input], ValueSize::Known(..)) && sizes[input] == sizes[output] && lifetimes[input].is_some() && lifetimes[output].is_some() {
                group[output] = group[input];
            }
        }
        let mut known: Vec<Interval> = Vec::new();
        let mut at: Vec<Option<usize>> = vec![None; sizes.len()];
        for (v, size) in sizes.iter().enumerate() {
            let Some(l) = lifetimes[v] else { continue };
            let (first, last) = (l.first, l.last.max(l.first));
            match *size {
                ValueSize::External => {}
                ValueSize::Known(dtype, len) => match at[group[v]] {
                    Some(i) => {
                        let joined = &mut known[i];
                        (joined.first, joined.last) = (joined.first.min(first), joined.last.max(last));
                        joined.members.push(v);
                    }
                    None => {
                        at[group[v]] = Some(known.len());
                        known.push(Interval { members: vec![v], dtype, len, first, last });
                    }
                },
                ValueSize::Unknown => {
                    base.buffers.push(Buffer { dtype: None, capacity: 0 });
                    base.buffer_of[v] = Some(base.buffers.len() - 1);
                }
            }
        }
        let mut live_delta = vec![0isize; steps + 1];
        for i in &known {
            live_delta[i.first] += (i.dtype.size() * i.len) as isize;
            live_delta[(i.last + 1).min(steps)] -= (i.dtype.size() * i.len) as isize;
        }
        let mut live = 0isize;
        for delta in &live_delta[..steps] {
            live += delta;
            base.lower_bound_bytes = base.lower_bound_bytes.max(live as usize);
        }
        let in_order = base.clone().in_step_order(&known, steps);
        let by_size = base.by_size(known);
        if in_order.planned_bytes() < by_size.planned_bytes() {
            in_order
        } else {
            by_size
        }
    }

    /// Places interval `i`'s values in `buffer`, or in a new one.
    fn place(&mut self, i: &Interval, buffer: Option<usize>) -> usize {
        let b = buffer.unwrap_or_else(|| {
            self.buffers.push(Buffer { dtype: Some(i.dtype), capacity: 0 });
            self.buffers.len() - 1
        });
        self.buffers[b].capacity = self.buffers[b].capacity.max(i.len);
        for &v in &i.members {
            self.buffer_of[v] = Some(b);
        }
        b
    }

    fn in_step_order(mut self, known: &[Interval], steps: usize) -> Self {
        let mut born: Vec<Vec<&Interval>> = vec![Vec::new(); steps];
        let mut dies: Vec<Vec<&Interval>> = vec![Vec::new(); steps];
        for i in known {
            born[i.first].push(i);
            dies[i.last].push(i);
        }
        let mut free: Vec<usize> = Vec::new();
        for step in 0..steps {
            for i in &born[step] {
                let same = |b: &&usize| self.buffers[**b].dtype == Some(i.dtype);
                let fitting = free.iter().filter(same).filter(|b| self.buffers[**b].capacity >= i.len).min_by_key(|b| self.buffers[**b].capacity);
                let chosen = fitting.or_else(|| free.iter().filter(same).max_by_key(|b| self.buffers[**b].capacity)).copied();
                free.retain(|b| Some(*b) != chosen);
                self.place(i, chosen);
            }
            free.extend(dies[step].iter().filter_map(|i| self.buffer_of[i.members[0]]));
        }
        self
    }

    fn by_size(mut self, mut known: Vec<Interval>) -> Self {
        known.sort_by(|a, b| (b.len * b.dtype.size()).cmp(&(a.len * a.dtype.size())).then(a.members[0].cmp(&b.members[0])));
        // The lifetimes already placed in each buffer.
        let mut occupied: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.buffers.len()];
        for i in known {
            let fits = |b: &usize| self.buffers[*b].dtype == Some(i.dtype) && occupied[*b].iter().all(|&(f, l)| l < i.first || i.last < f);
            let chosen = (0..self.buffers.len()).filter(fits).min_by_key(|&b| self.buffers[b].capacity);
            let b = self.place(&i, chosen);
            occupied.resize(self.buffers.len(), Vec::new());
            occupied[b].push((i.first, i.last));
        }
        self
    }
}

/// The lifetime, inclusive, of known-size values that share a buffer (one
/// value, or a chain taken over in place).
#[derive(Clone, Debug)]
struct Interval {
    members: Vec<usize>,
    dtype: DataType,
    len: usize,
    first: usize,
    last: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(first: usize, last: usize) -> Option<Lifetime> {
        Some(Lifetime { first, last })
    }

    /// Checks that no two values alive at the same step share a buffer.
    fn check_disjoint(plan: &MemoryPlan, lifetimes: &[Option<Lifetime>]) {
        for (a, la) in lifetimes.iter().enumerate() {
            for (b, lb) in lifetimes.iter().enumerate().skip(a + 1) {
                if let (Some(la), Some(lb), Some(x), Some(y)) = (la, lb, plan.buffer_of[a], plan.buffer_of[b]) {
                    let overlap = la.overlaps(lb);
                    assert!(!(overlap && x == y), "values {a} and {b} overlap and share buffer {x}");
                }
            }
        }
    }

    #[test]
    fn a_chain_reuses_two_buffers() {
        // x -> s0 -> v0 -> s1 -> v1 -> ... each value read only by the next step.
        let steps = 10;
        let sizes: Vec<ValueSize> = (0..steps).map(|_| ValueSize::Known(DataType::F32, 100)).collect();
        let lifetimes: Vec<_> = (0..steps).map(|s| life(s, s + 1)).collect();
        let plan = MemoryPlan::new(&sizes, &lifetimes, steps + 1, &[]);
        check_disjoint(&plan, &lifetimes);
        assert_eq!(plan.buffers.len(), 2);
        assert_eq!(plan.lower_bound_bytes, 800);
        assert_eq!(plan.planned_bytes(), 800);
    }

    #[test]
    fn residual_blocks_stay_near_the_lower_bound() {
        // ResNet-like: a block input lives across three convolutions and the Add.
        let mut sizes = Vec::new();
        let mut lifetimes = Vec::new();
        let mut step = 0;
        let mut width = 64 * 56 * 56;
        for block in 0..8 {
            if block % 2 == 1 {
                width /= 2;
            }
            sizes.push(ValueSize::Known(DataType::F32, width));
            lifetimes.push(life(step, step + 4));
            for k in 0..3 {
                sizes.push(ValueSize::Known(DataType::F32, if k == 2 { width } else { width / 4 }));
                lifetimes.push(life(step + 1 + k, step + 2 + k));
            }
            step += 4;
        }
        let plan = MemoryPlan::new(&sizes, &lifetimes, step + 2, &[]);
        check_disjoint(&plan, &lifetimes);
        assert!(plan.planned_bytes() as f64 <= 1.25 * plan.lower_bound_bytes as f64, "{} vs {}", plan.planned_bytes(), plan.lower_bound_bytes);
    }

    #[test]
    fn outputs_taken_over_in_place_share_their_input_buffer() {
        // v0 -> s1 -> v1 (reads v0 too, in place) -> s2 -> v2 (in place over
        // v1) ; v3 has another size, so its pair cannot share.
        let sizes = [ValueSize::Known(DataType::F32, 50), ValueSize::Known(DataType::F32, 50), ValueSize::Known(DataType::F32, 50), ValueSize::Known(DataType::F32, 60)];
        let lifetimes = [life(0, 1), life(1, 2), life(2, 3), life(3, 4)];
        let plan = MemoryPlan::new(&sizes, &lifetimes, 5, &[(0, 1), (1, 2), (2, 3)]);
        let [a, b, c, d] = [0, 1, 2, 3].map(|v| plan.buffer_of[v].expect("placed"));
        assert!(a == b && b == c, "the chain shares one buffer: {plan:?}");
        assert_ne!(c, d, "different sizes never share");
        assert_eq!(plan.lower_bound_bytes, 440, "the chain counts once");
        // Without the pairs, overlapping values never share.
        let plan = MemoryPlan::new(&sizes, &lifetimes, 5, &[]);
        check_disjoint(&plan, &lifetimes);
    }

    #[test]
    fn types_and_unknown_sizes_get_their_own_buffers() {
        let sizes = [ValueSize::Known(DataType::F32, 10), ValueSize::Known(DataType::I64, 10), ValueSize::Unknown, ValueSize::External];
        let lifetimes = [life(0, 0), life(1, 1), life(2, 2), life(0, 3)];
        let plan = MemoryPlan::new(&sizes, &lifetimes, 4, &[]);
        assert_eq!(plan.buffer_of[3], None);
        let used: std::collections::HashSet<_> = plan.buffer_of.iter().flatten().collect();
        assert_eq!(used.len(), 3, "f32, i64 and the unknown value each need a buffer: {plan:?}");
        assert_eq!(plan.buffers[plan.buffer_of[2].unwrap()].dtype, None);
    }
}
