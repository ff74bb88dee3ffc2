//! The `env` imports Faust modules expect: the C math library (single and
//! double precision), and the `memoryBase`/`tableBase` globals.

use crate::host::HostState;
use crate::LoadError;
use wasmtime::{Global, GlobalType, Linker, Module, Mutability, Val, ValType};

type Unary32 = fn(f32) -> f32;
type Binary32 = fn(f32, f32) -> f32;
type Unary64 = fn(f64) -> f64;
type Binary64 = fn(f64, f64) -> f64;

const UNARY: [(&str, Unary32, Unary64); 25] = [
    ("acos", f32::acos, f64::acos),
    ("asin", f32::asin, f64::asin),
    ("atan", f32::atan, f64::atan),
    ("ceil", f32::ceil, f64::ceil),
    ("cos", f32::cos, f64::cos),
    ("exp", f32::exp, f64::exp),
    ("exp2", f32::exp2, f64::exp2),
    ("exp10", |x| 10f32.powf(x), |x| 10f64.powf(x)),
    ("floor", f32::floor, f64::floor),
    ("log", f32::ln, f64::ln),
    ("log2", f32::log2, f64::log2),
    ("log10", f32::log10, f64::log10),
    ("round", f32::round, f64::round),
    ("rint", f32::round_ties_even, f64::round_ties_even),
    ("sin", f32::sin, f64::sin),
    ("sqrt", f32::sqrt, f64::sqrt),
    ("tan", f32::tan, f64::tan),
    ("acosh", f32::acosh, f64::acosh),
    ("asinh", f32::asinh, f64::asinh),
    ("atanh", f32::atanh, f64::atanh),
    ("cosh", f32::cosh, f64::cosh),
    ("sinh", f32::sinh, f64::sinh),
    ("tanh", f32::tanh, f64::tanh),
    ("fabs", f32::abs, f64::abs),
    ("trunc", f32::trunc, f64::trunc),
];

const BINARY: [(&str, Binary32, Binary64); 7] = [
    ("atan2", f32::atan2, f64::atan2),
    ("fmod", |x, y| x % y, |x, y| x % y),
    ("pow", f32::powf, f64::powf),
    // IEEE remainder: x - n*y with n the nearest integer to x/y, ties to even.
    ("remainder", |x, y| x - (x / y).round_ties_even() * y, |x, y| x - (x / y).round_ties_even() * y),
    ("fmax", f32::max, f64::max),
    ("fmin", f32::min, f64::min),
    ("copysign", f32::copysign, f64::copysign),
];

/// Defines every `env` import `module` asks for; an import outside this
/// set is a load error naming it.
pub(crate) fn define_env(linker: &mut Linker<HostState>, module: &Module, name: &str) -> Result<(), LoadError> {
    for import in module.imports() {
        let field = import.name();
        let unsupported = || LoadError::UnsupportedImport { module: name.to_string(), import: format!("{}.{field}", import.module()), abi: "faust" };
        if import.module() != "env" {
            return Err(unsupported());
        }
        if field == "memoryBase" || field == "tableBase" {
            // Globals need a store: `define_globals` makes them per instance.
            continue;
        }
        let known = |b: &str| UNARY.iter().any(|u| u.0 == b) || BINARY.iter().any(|f| f.0 == b);
        let result = if let Some(base) = field.strip_prefix('_') {
            // `_sinf` is single precision, `_sin` double.
            let (base, single) = match base.strip_suffix('f') {
                Some(b) if known(b) => (b, true),
                _ => (base, false),
            };
            if let Some(&(_, f32_fn, f64_fn)) = UNARY.iter().find(|u| u.0 == base) {
                if single {
                    linker.func_wrap("env", field, move |x: f32| f32_fn(x)).map(|_| ())
                } else {
                    linker.func_wrap("env", field, move |x: f64| f64_fn(x)).map(|_| ())
                }
            } else if let Some(&(_, f32_fn, f64_fn)) = BINARY.iter().find(|b| b.0 == base) {
                if single {
                    linker.func_wrap("env", field, move |x: f32, y: f32| f32_fn(x, y)).map(|_| ())
                } else {
                    linker.func_wrap("env", field, move |x: f64, y: f64| f64_fn(x, y)).map(|_| ())
                }
            } else if base == "abs" {
                linker.func_wrap("env", field, |x: i32| x.wrapping_abs()).map(|_| ())
            } else {
                return Err(unsupported());
            }
        } else {
            return Err(unsupported());
        };
        result.map_err(|e| LoadError::Invalid { module: name.to_string(), what: format!("defining import env.{field}: {e}") })?;
    }
    Ok(())
}

/// Creates the `memoryBase`/`tableBase` globals (both 0) for one store.
pub(crate) fn define_globals(linker: &mut Linker<HostState>, store: &mut wasmtime::Store<HostState>, module: &Module) -> wasmtime::Result<()> {
    for import in module.imports() {
        if import.module() == "env" && (import.name() == "memoryBase" || import.name() == "tableBase") {
            let global = Global::new(&mut *store, GlobalType::new(ValType::I32, Mutability::Const), Val::I32(0))?;
            linker.define(&mut *store, "env", import.name(), global)?;
        }
    }
    Ok(())
}
