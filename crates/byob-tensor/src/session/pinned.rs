//! Inputs fixed when a session is built ([`SessionBuilder::with_input_shape`]
//! and [`SessionBuilder::with_constant_input`]): their shapes or values
//! become facts of the graph before it is folded.
//!
//! [`SessionBuilder::with_input_shape`]: super::SessionBuilder::with_input_shape
//! [`SessionBuilder::with_constant_input`]: super::SessionBuilder::with_constant_input

use super::{check_input, check_shape, SessionError};
use crate::model::{Dim, Graph};
use crate::tensor::Tensor;

#[derive(Default)]
pub(super) struct Pinned {
    pub(super) shapes: Vec<(String, Vec<usize>)>,
    pub(super) constants: Vec<(String, Tensor)>,
}

/// Writes the pinned shapes into the inputs' declarations and turns the
/// pinned constants into initializers, each checked against what the
/// model declares.
pub(super) fn apply(pinned: Pinned, graph: &mut Graph) -> Result<(), SessionError> {
    let known = graph.inputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
    let fail = |name: &str, what: String| SessionError::Pinned { name: name.to_string(), what };
    for (name, shape) in pinned.shapes {
        let Some(info) = graph.inputs.iter().position(|v| v.name == name) else {
            return Err(fail(&name, format!("the model has no such input (its inputs: {})", known)));
        };
        let info = &mut graph.inputs[info];
        check_shape(info, &shape).map_err(|e| fail(&name, format!("shape {shape:?} does not fit the model: {e}")))?;
        info.shape = Some(shape.into_iter().map(Dim::Known).collect());
    }
    for (name, value) in pinned.constants {
        let Some(at) = graph.inputs.iter().position(|v| v.name == name) else {
            return Err(fail(&name, format!("the model has no such input (its inputs: {})", known)));
        };
        check_input(&graph.inputs[at], value.dtype(), value.shape()).map_err(|e| fail(&name, format!("the constant does not fit the model: {e}")))?;
        graph.inputs.remove(at);
        graph.initializers.insert(name, value);
    }
    Ok(())
}
