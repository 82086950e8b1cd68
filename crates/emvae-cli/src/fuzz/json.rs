//! JSON-aware edits: values replaced, nudged, grafted from another seed, arrays and keys changed.

use serde_json::{Value, json};

use super::mutate::{Mutator, NUMBERS, Rng};

/// JSON pointers of every node of `v`.
fn json_paths(v: &Value, at: &mut String, out: &mut Vec<String>) {
    out.push(at.clone());
    let len = at.len();
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                json_paths(item, at, out);
                at.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                json_paths(item, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

fn json_value(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(-1e308),
        7 => json!(5e-324),
        8 => json!(0.5),
        9 => json!(-0.0),
        10 => json!(""),
        11 => json!("x"),
        12 => Value::Null,
        13 => json!(true),
        14 => json!([]),
        15 => json!([[]]),
        16 => json!({}),
        17 => json!(2),
        18 => json!(1u64 << 32),
        19 => json!([1.0, 0.0]),
        20 => json!(usize::MAX as f64),
        _ => json!(4294967295u64),
    }
}

/// One edit of a JSON document: a value replaced (by an interesting one or another node), a number
/// nudged, an array shortened, lengthened or emptied, a key removed, added or renamed, a string
/// changed, a node wrapped in or taken out of an array.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
    let mut paths = Vec::new();
    json_paths(v, &mut String::new(), &mut paths);
    let path = rng.pick(&paths).clone();
    let donor = v.pointer(rng.pick(&paths).as_str()).cloned();
    let Some(node) = v.pointer_mut(&path) else {
        return;
    };
    match rng.below(9) {
        0 | 1 => *node = json_value(rng),
        2 => {
            if let Some(d) = donor {
                *node = d;
            }
        }
        3 => {
            if let Some(u) = node.as_u64() {
                let nudged = match rng.below(5) {
                    0 => u.wrapping_add(1),
                    1 => u.saturating_sub(1),
                    2 => u.saturating_mul(2),
                    3 => u64::MAX - u,
                    _ => u.saturating_mul(1 << 20),
                };
                *node = json!(nudged);
            } else if let Some(x) = node.as_f64() {
                let nudged = match rng.below(5) {
                    0 => -x,
                    1 => x + 1.0,
                    2 => x * 1e300,
                    3 => x * 1e-300,
                    _ => x.round(),
                };
                *node = json!(nudged);
            } else {
                *node = json_value(rng);
            }
        }
        4 | 5 => match node {
            Value::Array(items) if !items.is_empty() => {
                let i = rng.below(items.len());
                match rng.below(6) {
                    0 => {
                        items.remove(i);
                    }
                    1 => {
                        let copy = items[i].clone();
                        items.insert(i, copy);
                    }
                    2 => items.clear(),
                    3 => items.truncate(1),
                    4 => {
                        let copy = items[i].clone();
                        let times = 1 + rng.below(300);
                        items.extend(std::iter::repeat_n(copy, times));
                    }
                    _ => {
                        let j = rng.below(items.len());
                        items.swap(i, j);
                    }
                }
            }
            Value::Object(map) if !map.is_empty() => {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = rng.pick(&keys).clone();
                match rng.below(3) {
                    0 => {
                        map.remove(&key);
                    }
                    1 => {
                        map.insert("bogus".into(), json_value(rng));
                    }
                    _ => {
                        if let Some(value) = map.remove(&key) {
                            let other = rng.pick(&keys).clone();
                            map.insert(other, value);
                        }
                    }
                }
            }
            _ => *node = json_value(rng),
        },
        6 => match node {
            Value::String(s) => match rng.below(5) {
                0 => s.clear(),
                1 => s.push('x'),
                2 => *s = s.repeat(1 + rng.below(64)),
                3 => s.insert(0, 'é'),
                _ => *s = format!("{s} {s}"),
            },
            _ => *node = json!(rng.pick(NUMBERS).to_string()),
        },
        7 => *node = Value::Array(vec![node.take()]),
        _ => {
            if let Value::Array(items) = node
                && let Some(first) = items.first().cloned()
            {
                *node = first;
            }
        }
    }
}

/// Replaces a node of `v` by the node at the same place in another seed (a model of another
/// covariance type or size, another run's state): each part valid, the whole inconsistent.
fn graft(rng: &mut Rng, v: &mut Value, mutator: &Mutator) {
    let other = &mutator.seeds[rng.below(mutator.seeds.len())].bytes;
    let Ok(other) = serde_json::from_slice::<Value>(other) else {
        return;
    };
    let mut paths = Vec::new();
    json_paths(v, &mut String::new(), &mut paths);
    let path = rng.pick(&paths);
    if let (Some(node), Some(donor)) = (v.pointer_mut(path), other.pointer(path)) {
        *node = donor.clone();
    }
}

/// A JSON seed edited: half the time as a document (then perhaps as bytes too), else as bytes.
pub(super) fn json_input(rng: &mut Rng, mutator: &Mutator, i: usize) -> Vec<u8> {
    let seed = &mutator.seeds[i];
    if rng.chance(55)
        && let Ok(mut v) = serde_json::from_slice::<Value>(&seed.bytes)
    {
        for _ in 0..1 + rng.below(3) {
            if rng.chance(25) {
                graft(rng, &mut v, mutator);
            } else {
                mutate_json(rng, &mut v);
            }
        }
        let mut out = if rng.chance(30) {
            serde_json::to_vec_pretty(&v)
        } else {
            serde_json::to_vec(&v)
        }
        .unwrap_or_default();
        if rng.chance(20) {
            mutator.mutate(rng, &mut out, &[]);
        }
        return out;
    }
    mutator.mutated(rng, i)
}
