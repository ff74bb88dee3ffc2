//! The spec's `disconnect` overloads. Each removes the connections it
//! names; naming one that does not exist is an InvalidAccessError, and
//! then nothing is removed.

use super::{AudioGraph, AudioParamId, ConnectError, Edge, NodeId, Target};

impl AudioGraph {
    /// `disconnect()`: every connection out of `from`.
    pub fn disconnect_all(&mut self, from: NodeId) {
        self.remove_edges(|e| e.from == from);
    }

    /// `disconnect(output)`: every connection out of `from`'s `output`.
    pub fn disconnect_output(&mut self, from: NodeId, output: usize) -> Result<(), ConnectError> {
        self.check_output(from, output)?;
        self.remove_edges(|e| e.from == from && e.output == output);
        Ok(())
    }

    /// `disconnect(destinationNode[, output[, input]])`: the connections
    /// from `from` to `to`'s inputs, narrowed to one output and one input
    /// when given.
    pub fn disconnect_node(&mut self, from: NodeId, to: NodeId, output: Option<usize>, input: Option<usize>) -> Result<(), ConnectError> {
        if let Some(output) = output {
            self.check_output(from, output)?;
        }
        if let Some(input) = input {
            let inputs = self.nodes[to.0].number_of_inputs;
            if input >= inputs {
                return Err(ConnectError::NoSuchInput { node: self.label(to).to_string(), index: input, count: inputs });
            }
        }
        let matches = |e: &Edge| {
            e.from == from
                && e.to == to
                && output.is_none_or(|o| e.output == o)
                && matches!(e.target, Target::Input(k) if input.is_none_or(|i| k == i))
        };
        if self.remove_existing(matches) {
            return Ok(());
        }
        Err(ConnectError::NotConnected { what: format!("{} is not connected to {}", self.label(from), self.label(to)) })
    }

    /// `disconnect(destinationParam[, output])`.
    pub fn disconnect_param(&mut self, from: NodeId, param: AudioParamId, output: Option<usize>) -> Result<(), ConnectError> {
        if let Some(output) = output {
            self.check_output(from, output)?;
        }
        let matches = |e: &Edge| e.from == from && e.to == param.node && e.target == Target::Param(param.index) && output.is_none_or(|o| e.output == o);
        if self.remove_existing(matches) {
            return Ok(());
        }
        let name = &self.nodes[param.node.0].params[param.index].descriptor.name;
        Err(ConnectError::NotConnected { what: format!("{} is not connected to {}.{name}", self.label(from), self.label(param.node)) })
    }

    /// Removes the matching connections; false when there were none.
    fn remove_existing(&mut self, matches: impl Fn(&Edge) -> bool) -> bool {
        if !self.edges.iter().any(&matches) {
            return false;
        }
        self.remove_edges(matches);
        true
    }

    fn remove_edges(&mut self, matches: impl Fn(&Edge) -> bool) {
        let before = self.edges.len();
        self.edges.retain(|e| !matches(e));
        if self.edges.len() != before {
            self.pending.rewire = true;
            self.pending.check_releases = true;
        }
    }
}
