//! Structure-aware edits: parse a seed into its JSON or TOML tree, replace,
//! remove, add or multiply nodes with values drawn from `arbitrary`'s
//! `Unstructured`, and serialise again. The result is well-formed text of
//! nearly the right shape, so it reaches the validation behind the syntax.

use arbitrary::{Result, Unstructured};
use serde_json::Value;

/// Strings that matter to the validators here: ids and path components.
pub const STRINGS: &[&str] = &[
    "",
    ".",
    "..",
    "../../../../tmp/evil",
    "/etc/passwd",
    "media/main-00000.mkv",
    "media/../manifest.json",
    "media/.hidden",
    "media/a/b.mkv",
    "child-benefit",
    "Пособие",
    "P01",
    "20261123T101500Z-P07",
    "screen",
    "main",
    "click",
    "marker",
    "system.stop",
    "step:Вход",
    "*/login*",
    "**************************************************a",
    "x264enc",
    "127.0.0.1:7700",
    "\u{0}",
    "a\nb",
];

/// Integers at the edges of i64/u64/u32 and of session time.
pub const INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    30,
    i64::MAX,
    i64::MIN,
    i64::MAX - 1,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    2_592_000_000_000_000,
    2_592_000_000_000_001,
    -2_592_000_000_000_001,
    100_000,
    200_001,
];

fn string(u: &mut Unstructured) -> Result<String> {
    Ok(if u.ratio(2, 3)? {
        (*u.choose(STRINGS)?).to_string()
    } else {
        u.arbitrary::<String>()?
    })
}

/// A JSON value of any kind, biased to the edges.
pub fn json_value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(*u.choose(INTS)?),
        3 => Value::from(u.arbitrary::<i64>()?),
        4 => Value::from(u.arbitrary::<u64>()?),
        5 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        6 | 7 => Value::String(string(u)?),
        8 if depth < 4 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| json_value(u, depth + 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ if depth < 4 => {
            let mut m = serde_json::Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                m.insert(string(u)?, json_value(u, depth + 1)?);
            }
            Value::Object(m)
        }
        _ => Value::Null,
    })
}

/// Every node of a JSON tree as a JSON pointer.
fn json_paths(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                json_paths(x, format!("{at}/{i}"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                json_paths(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => {}
    }
}

/// Applies 1-4 random edits to a JSON tree.
pub fn edit_json(u: &mut Unstructured, root: &mut Value) -> Result<()> {
    for _ in 0..u.int_in_range(1..=4)? {
        let mut paths = Vec::new();
        json_paths(root, String::new(), &mut paths);
        let path = u.choose(&paths)?.clone();
        let Some(node) = root.pointer_mut(&path) else {
            continue;
        };
        match u.int_in_range(0..=5)? {
            // Multiply an array's elements: the size limits.
            0 => {
                if let Value::Array(a) = node
                    && let Some(first) = a.first().cloned()
                {
                    let n = *u.choose(&[2usize, 3, 100, 1000])?;
                    a.resize(n, first);
                }
            }
            1 => {
                if let Value::Object(m) = node
                    && !m.is_empty()
                {
                    let k = u.choose_index(m.len())?;
                    let key = m.keys().nth(k).cloned().unwrap_or_default();
                    m.remove(&key);
                }
            }
            2 => {
                if let Value::Object(m) = node {
                    m.insert(string(u)?, json_value(u, 0)?);
                }
            }
            _ => *node = json_value(u, 0)?,
        }
    }
    Ok(())
}

/// A TOML value of any kind, biased to the edges.
pub fn toml_value(u: &mut Unstructured, depth: u32) -> Result<toml::Value> {
    use toml::Value as T;
    Ok(match u.int_in_range(0..=8)? {
        0 => T::Boolean(u.arbitrary()?),
        1 => T::Integer(*u.choose(INTS)?),
        2 => T::Integer(u.arbitrary()?),
        3 => T::Float(*u.choose(&[f64::NAN, f64::INFINITY, -1.0, 0.0, 1e300, 0.5])?),
        4 => T::Float(u.arbitrary()?),
        5 | 6 => T::String(string(u)?),
        7 if depth < 3 => {
            let n = u.int_in_range(0..=3)?;
            T::Array(
                (0..n)
                    .map(|_| toml_value(u, depth + 1))
                    .collect::<Result<_>>()?,
            )
        }
        _ if depth < 3 => {
            let mut t = toml::Table::new();
            for _ in 0..u.int_in_range(0..=3)? {
                t.insert(string(u)?, toml_value(u, depth + 1)?);
            }
            T::Table(t)
        }
        _ => T::Boolean(false),
    })
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every node of a TOML tree as a path from the root.
fn toml_paths(v: &toml::Value, at: &[Step], out: &mut Vec<Vec<Step>>) {
    out.push(at.to_vec());
    let mut child = |step: Step, x: &toml::Value| {
        let mut p = at.to_vec();
        p.push(step);
        toml_paths(x, &p, out);
    };
    match v {
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| child(Step::Index(i), x)),
        toml::Value::Table(t) => t.iter().for_each(|(k, x)| child(Step::Key(k.clone()), x)),
        _ => {}
    }
}

fn toml_at<'a>(mut v: &'a mut toml::Value, path: &[Step]) -> Option<&'a mut toml::Value> {
    for step in path {
        v = match (v, step) {
            (toml::Value::Array(a), Step::Index(i)) => a.get_mut(*i)?,
            (toml::Value::Table(t), Step::Key(k)) => t.get_mut(k)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Applies 1-4 random edits to a TOML table.
pub fn edit_toml(u: &mut Unstructured, table: &mut toml::Table) -> Result<()> {
    use toml::Value as T;
    let mut root = T::Table(std::mem::take(table));
    for _ in 0..u.int_in_range(1..=4)? {
        let mut paths = Vec::new();
        toml_paths(&root, &[], &mut paths);
        let path = u.choose(&paths)?.clone();
        let is_root = path.is_empty();
        let Some(node) = toml_at(&mut root, &path) else {
            continue;
        };
        match u.int_in_range(0..=5)? {
            0 => {
                if let T::Array(a) = node
                    && let Some(first) = a.first().cloned()
                {
                    let n = *u.choose(&[2usize, 50, 1000])?;
                    a.resize(n, first);
                }
            }
            1 => {
                if let T::Table(t) = node
                    && !t.is_empty()
                {
                    let k = u.choose_index(t.len())?;
                    let key = t.keys().nth(k).cloned().unwrap_or_default();
                    t.remove(&key);
                }
            }
            2 => {
                if let T::Table(t) = node {
                    t.insert(string(u)?, toml_value(u, 0)?);
                }
            }
            _ if !is_root => *node = toml_value(u, 0)?,
            _ => {}
        }
    }
    if let T::Table(t) = root {
        *table = t;
    }
    Ok(())
}
