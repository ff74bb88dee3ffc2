//! The regions a worklet node's processor has lent, per port, and the
//! checks a new registration must pass.

use crate::lent::{ByobMemory, LendingTable, LentRegion, CHANNEL_BYTES, REGION_ALIGNMENT};

/// What a registered region serves (the ABI's `kind` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferKind {
    /// The engine mixes the port's input into the region.
    Input = 1,
    /// The processor writes the port's output into the region; downstream
    /// nodes read it from there.
    Output = 2,
    /// In-place: input `port` is mixed into the region and output `port` is
    /// read from it.
    InPlace = 3,
}

impl BufferKind {
    pub fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            1 => Some(Self::Input),
            2 => Some(Self::Output),
            3 => Some(Self::InPlace),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Input => "INPUT",
            Self::Output => "OUTPUT",
            Self::InPlace => "INPUT|OUTPUT",
        }
    }
}

/// Why `register_buffers` refused a region. The previous registration stays
/// in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    #[error("{kind} port {port} does not exist (the node has {count} {side} port(s))")]
    NoSuchPort { kind: &'static str, port: usize, count: usize, side: &'static str },
    #[error("region at offset {offset} with max length {max_len} reaches past the end of the memory ({memory_len} bytes)")]
    OutOfBounds { offset: usize, max_len: usize, memory_len: usize },
    #[error("offset {offset} is not a multiple of {REGION_ALIGNMENT} bytes")]
    Misaligned { offset: usize },
    #[error("region of {max_len} bytes is too small for the current {channels} channel(s) ({needed} bytes needed)")]
    TooSmall { max_len: usize, channels: usize, needed: usize },
    #[error("region overlaps the region registered for {other} port {port}; register it as INPUT|OUTPUT for in-place processing")]
    Overlap { other: &'static str, port: usize },
    #[error("region overlaps the region the engine is using for {other} port {port} in the current render quantum")]
    InUse { other: &'static str, port: usize },
    #[error("range at offset {offset}, {len} floats, is outside the memory, misaligned, or lent to the engine")]
    NotAvailable { offset: usize, len: usize },
}

/// A port's lent region.
#[derive(Clone)]
pub(crate) struct Registered {
    pub region: LentRegion,
    pub in_place: bool,
}

fn overlaps(a: &LentRegion, memory: u64, range: &std::ops::Range<usize>) -> bool {
    let b = a.range();
    a.memory_id() == memory && b.start < range.end && range.start < b.end
}

/// Every port's registration, the current topology, and what changed
/// during the current `process` call.
pub(crate) struct Registrations {
    pub inputs: Vec<Option<Registered>>,
    pub outputs: Vec<Option<Registered>>,
    /// Input registrations made during `process`: they take effect when the
    /// next quantum's input is mixed.
    pub pending_inputs: Vec<Option<Registered>>,
    /// Regions replaced during this `process` call: the processor gets them
    /// back from the next call on.
    pub retired: Vec<Option<LentRegion>>,
    pub input_channels: Vec<usize>,
    pub output_channels: Vec<usize>,
    /// True while the processor's `process` runs.
    pub in_process: bool,
    /// Whether `retired` holds anything.
    any_retired: bool,
}

impl Registrations {
    pub fn new(input_channels: Vec<usize>, output_channels: Vec<usize>) -> Self {
        let (n_in, n_out) = (input_channels.len(), output_channels.len());
        Self {
            inputs: vec![None; n_in],
            outputs: vec![None; n_out],
            pending_inputs: vec![None; n_in],
            retired: vec![None; n_in + n_out],
            input_channels,
            output_channels,
            in_process: false,
            any_retired: false,
        }
    }

    /// The region that input `port` is mixed into from the next mix on.
    pub fn next_input(&self, port: usize) -> Option<&Registered> {
        self.pending_inputs[port].as_ref().or(self.inputs[port].as_ref())
    }

    /// Checks and records a registration; on error nothing changes.
    pub fn register(
        &mut self,
        memory: &ByobMemory,
        offset: usize,
        max_len: usize,
        kind: BufferKind,
        port: usize,
    ) -> Result<(), RegistrationError> {
        let ports = |count: usize, side: &'static str| {
            if port >= count {
                Err(RegistrationError::NoSuchPort { kind: kind.name(), port, count, side })
            } else {
                Ok(())
            }
        };
        if kind != BufferKind::Output {
            ports(self.inputs.len(), "input")?;
        }
        if kind != BufferKind::Input {
            ports(self.outputs.len(), "output")?;
        }
        if !offset.is_multiple_of(REGION_ALIGNMENT) {
            return Err(RegistrationError::Misaligned { offset });
        }
        if offset.checked_add(max_len).is_none_or(|end| end > memory.len()) {
            return Err(RegistrationError::OutOfBounds { offset, max_len, memory_len: memory.len() });
        }
        let channels = match kind {
            BufferKind::Input => self.input_channels[port],
            BufferKind::Output => self.output_channels[port],
            BufferKind::InPlace => self.input_channels[port].max(self.output_channels[port]),
        };
        let needed = channels * CHANNEL_BYTES;
        if max_len < needed {
            return Err(RegistrationError::TooSmall { max_len, channels, needed });
        }
        let range = offset..offset + max_len;
        let (id, replaces_input, replaces_output) = (memory.id(), kind != BufferKind::Output, kind != BufferKind::Input);
        // Regions the engine touches during this quantum (only while
        // `process` runs): everything currently lent, except what this call
        // replaces on the same port.
        if self.in_process {
            for (k, r) in self.inputs.iter().enumerate() {
                if let Some(r) = r {
                    // Replacing a port's own region (input, or an in-place
                    // region on the output side) is not a conflict.
                    let own = k == port && (replaces_input || (r.in_place && replaces_output));
                    if overlaps(&r.region, id, &range) && !own {
                        return Err(RegistrationError::InUse { other: "input", port: k });
                    }
                }
            }
            for (k, r) in self.outputs.iter().enumerate() {
                if let Some(r) = r {
                    if overlaps(&r.region, id, &range) && !(replaces_output && k == port) {
                        return Err(RegistrationError::InUse { other: "output", port: k });
                    }
                }
            }
        }
        // Regions that stay registered beside this one must not overlap it.
        for k in 0..self.inputs.len() {
            if replaces_input && k == port {
                continue;
            }
            if let Some(r) = self.next_input(k) {
                if overlaps(&r.region, id, &range) {
                    return Err(RegistrationError::Overlap { other: "input", port: k });
                }
            }
        }
        for (k, r) in self.outputs.iter().enumerate() {
            if replaces_output && k == port {
                continue;
            }
            if let Some(r) = r {
                if overlaps(&r.region, id, &range) {
                    return Err(RegistrationError::Overlap { other: "output", port: k });
                }
            }
        }
        let registered = Registered { region: memory.lend(offset, max_len), in_place: kind == BufferKind::InPlace };
        let n_in = self.inputs.len();
        if replaces_output {
            let old = self.outputs[port].replace(registered.clone());
            if self.in_process {
                self.retired[n_in + port] = old.map(|r| r.region);
                self.any_retired = true;
            }
        }
        if replaces_input {
            if self.in_process {
                // This quantum's input is already mixed; the new region
                // receives the next one.
                self.pending_inputs[port] = Some(registered);
            } else {
                self.inputs[port] = Some(registered);
            }
        }
        // An in-place port given a new region on one side only keeps the
        // old region on the other, no longer shared.
        match kind {
            BufferKind::Input => {
                if let Some(Some(output)) = self.outputs.get_mut(port) {
                    output.in_place = false;
                }
            }
            BufferKind::Output if port < self.inputs.len() => {
                for input in [&mut self.inputs[port], &mut self.pending_inputs[port]].into_iter().flatten() {
                    input.in_place = false;
                }
            }
            BufferKind::Output | BufferKind::InPlace => {}
        }
        Ok(())
    }

    /// Ends a `process` call: replaced regions go back to the processor.
    pub fn finish_process(&mut self) {
        self.in_process = false;
        if std::mem::take(&mut self.any_retired) {
            for r in &mut self.retired {
                *r = None;
            }
        }
    }

    /// Moves input registrations made during `process` into force.
    pub fn apply_pending_input(&mut self, port: usize) -> bool {
        match self.pending_inputs[port].take() {
            Some(r) => {
                if r.in_place {
                    self.outputs[port] = Some(r.clone());
                }
                self.inputs[port] = Some(r);
                true
            }
            None => false,
        }
    }
}

impl LendingTable for Registrations {
    fn available(&self, memory: &ByobMemory, offset: usize, len: usize) -> bool {
        let Some(end) = len.checked_mul(4).and_then(|b| b.checked_add(offset)) else {
            return false;
        };
        if !offset.is_multiple_of(4) || end > memory.len() {
            return false;
        }
        let range = offset..end;
        let id = memory.id();
        let lent = self
            .inputs
            .iter()
            .chain(&self.outputs)
            .chain(&self.pending_inputs)
            .flatten()
            .map(|r| &r.region)
            .chain(self.retired.iter().flatten());
        !lent.into_iter().any(|r| overlaps(r, id, &range))
    }
}
