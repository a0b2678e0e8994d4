//! The difference between two JSON views of a document: which leaf values changed.

use serde::Serialize;
use serde_json::Value as Json;

use crate::read::pointer_segment;

/// One value that differs between two versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonChange {
    /// JSON pointer, e.g. `/items/<assetId>/outcome`.
    pub path: String,
    /// The value before (`None`: absent).
    pub before: Option<Json>,
    /// The value after (`None`: absent).
    pub after: Option<Json>,
}

/// Every leaf that differs between `before` and `after`, in key order. Objects are compared
/// key by key (an object present on one side only is walked, so each of its fields is listed);
/// lists, strings and numbers are leaves (a changed list is one change with both lists), and
/// numbers compare by value (`5` equals `5.0`).
pub fn json_diff(before: &Json, after: &Json) -> Vec<JsonChange> {
    let mut out = Vec::new();
    walk("", Some(before), Some(after), 0, &mut out);
    out
}

/// Deeper than any session document; a hostile document stops here as one change.
const MAX_DEPTH: usize = 64;

fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn walk(
    path: &str,
    before: Option<&Json>,
    after: Option<&Json>,
    depth: usize,
    out: &mut Vec<JsonChange>,
) {
    let objects = |v: Option<&Json>| matches!(v, None | Some(Json::Object(_)));
    if depth < MAX_DEPTH && objects(before) && objects(after) {
        let empty = serde_json::Map::new();
        let b = before.and_then(Json::as_object).unwrap_or(&empty);
        let a = after.and_then(Json::as_object).unwrap_or(&empty);
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let child = format!("{path}/{}", pointer_segment(key));
            walk(&child, b.get(key), a.get(key), depth + 1, out);
        }
        return;
    }
    let differ = match (before, after) {
        (Some(b), Some(a)) => !same(b, a),
        (None, None) => false,
        _ => true,
    };
    if differ {
        out.push(JsonChange {
            path: path.to_owned(),
            before: before.cloned(),
            after: after.cloned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(c: &[JsonChange]) -> Vec<&str> {
        c.iter().map(|c| c.path.as_str()).collect()
    }

    #[test]
    fn equal_documents_have_no_difference() {
        let d = json!({ "items": { "a": { "outcome": "pass", "readings": { "p": 5 } } } });
        assert!(json_diff(&d, &d).is_empty());
        assert!(json_diff(&json!({ "x": 5 }), &json!({ "x": 5.0 })).is_empty());
        assert!(json_diff(&json!({}), &json!({})).is_empty());
    }

    #[test]
    fn changed_added_and_removed_leaves() {
        let before = json!({
            "name": "L2",
            "items": { "a": { "outcome": "not_tested", "observedConditions": [], "notes": "" },
                       "b/c": { "outcome": "pass" } }
        });
        let after = json!({
            "name": "L2",
            "items": { "a": { "outcome": "fail", "observedConditions": ["gauge_in_red"],
                              "notes": "", "recordedBy": "u1" } }
        });
        let d = json_diff(&before, &after);
        assert_eq!(
            paths(&d),
            [
                "/items/a/observedConditions",
                "/items/a/outcome",
                "/items/a/recordedBy",
                "/items/b~1c/outcome"
            ]
        );
        assert_eq!(d[0].before, Some(json!([])));
        assert_eq!(d[0].after, Some(json!(["gauge_in_red"])));
        assert_eq!(d[1].before, Some(json!("not_tested")));
        assert_eq!(d[1].after, Some(json!("fail")));
        assert_eq!(d[2].before, None);
        assert_eq!(d[3].after, None);
    }

    #[test]
    fn from_nothing_every_leaf_is_new() {
        let after = json!({ "schema": 2, "items": { "a": { "outcome": "pass" } }, "notes": "" });
        let d = json_diff(&json!({}), &after);
        assert_eq!(paths(&d), ["/items/a/outcome", "/notes", "/schema"]);
        assert!(d.iter().all(|c| c.before.is_none() && c.after.is_some()));
        // An empty object appearing is no leaf change.
        assert!(json_diff(&json!({}), &json!({ "readings": {} })).is_empty());
    }

    #[test]
    fn a_type_change_is_one_change() {
        let d = json_diff(&json!({ "r": { "p": 1 } }), &json!({ "r": "broken" }));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "/r");
        assert_eq!(d[0].before, Some(json!({ "p": 1 })));
        assert_eq!(d[0].after, Some(json!("broken")));
    }
}
