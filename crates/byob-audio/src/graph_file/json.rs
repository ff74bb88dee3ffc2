//! Reading typed values out of JSON objects with errors that say where.

use serde_json::{Map, Value};

/// A parse error at a place in the file, such as `nodes[2] (id "osc").options.frequency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub at: String,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Located>;

pub fn fail<T>(at: &str, message: impl Into<String>) -> Result<T> {
    Err(Located { at: at.to_string(), message: message.into() })
}

/// A JSON object being read, with the path that leads to it.
pub struct Object<'a> {
    pub map: &'a Map<String, Value>,
    pub at: String,
}

impl<'a> Object<'a> {
    pub fn new(value: &'a Value, at: &str) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Self { map, at: at.to_string() }),
            other => fail(at, format!("expected an object, got {}", kind(other))),
        }
    }

    /// Rejects keys outside `allowed`: unknown keys are errors, never ignored.
    pub fn only(&self, allowed: &[&str]) -> Result<()> {
        for key in self.map.keys() {
            if !allowed.contains(&key.as_str()) {
                return fail(&self.at, format!("unknown key {key:?} (expected one of: {})", allowed.join(", ")));
            }
        }
        Ok(())
    }

    pub fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub fn number(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|v| number(v, &self.path(key))).transpose()
    }

    pub fn f32(&self, key: &str) -> Result<Option<f32>> {
        Ok(self.number(key)?.map(|v| v as f32))
    }

    pub fn count(&self, key: &str) -> Result<Option<usize>> {
        self.get(key).map(|v| count(v, &self.path(key))).transpose()
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => fail(&self.path(key), format!("expected true or false, got {}", kind(other))),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => fail(&self.path(key), format!("expected a string, got {}", kind(other))),
        }
    }

    pub fn required_string(&self, key: &str) -> Result<&'a str> {
        self.string(key)?.map_or_else(|| fail(&self.at, format!("missing {key:?}")), Ok)
    }

    /// A string naming one of an enum's values.
    pub fn choice<T>(&self, key: &str, parse: fn(&str) -> Option<T>, names: &str) -> Result<Option<T>> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => parse(s).map(Some).map_or_else(
                || fail(&self.path(key), format!("{s:?} is not one of: {names}")),
                Ok,
            ),
        }
    }
}

pub fn number(value: &Value, at: &str) -> Result<f64> {
    match value.as_f64() {
        Some(v) => Ok(v),
        None => fail(at, format!("expected a number, got {}", kind(value))),
    }
}

pub fn count(value: &Value, at: &str) -> Result<usize> {
    match value.as_u64() {
        Some(v) => Ok(v as usize),
        None => fail(at, format!("expected a non-negative integer, got {}", describe(value))),
    }
}

pub fn numbers(value: &Value, at: &str) -> Result<Vec<f32>> {
    match value {
        Value::Array(items) => {
            items.iter().enumerate().map(|(i, v)| number(v, &format!("{at}[{i}]")).map(|v| v as f32)).collect()
        }
        other => fail(at, format!("expected an array of numbers, got {}", kind(other))),
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        other => kind(other).to_string(),
    }
}
