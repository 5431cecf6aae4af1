//! `bulkId` references (RFC 7644 §3.7.2): finding them in an operation, replacing them by the
//! ids of what their POSTs created, and the order that lets every operation run after the POSTs
//! it needs — with circles found, never followed.

use serde_json::Value;
use std::collections::HashMap;

/// How a value names the resource another operation of the bulk creates.
pub(super) const REF: &str = "bulkId:";

/// Every string of `v` that is exactly `bulkId:<id>`, once each.
pub(super) fn refs_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(r) = s.strip_prefix(REF)
                && !out.iter().any(|o| o == r)
            {
                out.push(r.to_string());
            }
        }
        Value::Array(items) => items.iter().for_each(|x| refs_in(x, out)),
        Value::Object(m) => m.values().for_each(|x| refs_in(x, out)),
        _ => {}
    }
}

/// Replaces each `bulkId:<id>` string by the id of the resource created under that bulkId.
pub(super) fn substitute(v: &mut Value, created: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(REF).and_then(|r| created.get(r)) {
                *s = id.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| substitute(x, created)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, created)),
        _ => {}
    }
}

/// The order operations run in, and which of them close a circle of references. Each runs
/// after the POSTs whose bulkIds it refers to (`deps`), otherwise in the order sent. A
/// depth-first walk with its own stack: a thousand operations cannot overflow it, and a circle
/// is found when the walk meets an operation it is still inside — it ends, never loops.
pub(super) fn schedule(deps: &[Vec<usize>]) -> (Vec<usize>, Vec<bool>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    let mut circular = vec![false; deps.len()];
    let mut order = Vec::with_capacity(deps.len());
    for start in 0..deps.len() {
        if mark[start] != Mark::New {
            continue;
        }
        mark[start] = Mark::Open;
        let mut stack = vec![(start, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match deps[node].get(*next) {
                Some(&dep) => {
                    *next += 1;
                    match mark[dep] {
                        Mark::New => {
                            mark[dep] = Mark::Open;
                            stack.push((dep, 0));
                        }
                        Mark::Open => circular[node] = true,
                        Mark::Done => {}
                    }
                }
                None => {
                    mark[node] = Mark::Done;
                    order.push(node);
                    stack.pop();
                }
            }
        }
    }
    (order, circular)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dependencies_run_first_and_circles_end() {
        // 0 refers to 2 (a forward reference), 1 to nothing.
        let (order, circular) = schedule(&[vec![2], vec![], vec![]]);
        assert_eq!(order, [2, 0, 1]);
        assert_eq!(circular, [false; 3]);
        // 0 ↔ 1, and 2 refers to itself: each circle is found once, and the walk ends.
        let (order, circular) = schedule(&[vec![1], vec![0], vec![2], vec![0]]);
        assert_eq!(order, [1, 0, 2, 3]);
        assert_eq!(circular, [false, true, true, false]);
    }

    #[test]
    fn references_are_whole_strings_and_found_anywhere() {
        let data = json!({"members": [{"value": "bulkId:a"}, {"value": "bulkId:b"}],
                          "x": {"manager": {"value": "bulkId:a"}}, "title": "not bulkId:c"});
        let mut refs = Vec::new();
        refs_in(&data, &mut refs);
        assert_eq!(refs, ["a", "b"]);
        let created = HashMap::from([("a".to_string(), "id-a".to_string())]);
        let mut d = data.clone();
        substitute(&mut d, &created);
        assert_eq!(d["members"][0]["value"], "id-a");
        assert_eq!(d["members"][1]["value"], "bulkId:b");
        assert_eq!(d["x"]["manager"]["value"], "id-a");
    }
}
