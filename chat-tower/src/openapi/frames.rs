//! Frame schemas that generators read as they are meant: what `schemars` writes for the
//! tagged frame enums, reshaped (on the JSON, so that every new frame or enum variant is
//! picked up without an attribute of its own):
//! - each frame definition carries its own `type` const (schemars puts it beside a `$ref` in
//!   the `oneOf` branch, where `json-schema-to-typescript` lets it replace the referenced
//!   properties and AsyncAPI's draft-07 schemas ignore it), and the branch's description
//!   moves into the definition;
//! - unit enums whose variants are documented (`oneOf` of `const`s) become `enum`s, the
//!   variants' docs listed in the description;
//! - a property's `{"$ref": X, "description": d}` becomes `{"allOf": [{"$ref": X}],
//!   "description": d}`: keywords beside a `$ref` are ignored in draft-07 (AsyncAPI's schema
//!   dialect), and `json-schema-to-typescript` turns such a sibling into a copy of the type
//!   (`User1`, `User2`...) instead of naming `User`;
//! - the integer `format`s that only OpenAPI knows (`int64`, `uint`...) are dropped: JSON
//!   Schema validators such as ajv warn about unknown formats.

use serde_json::{json, Map, Value};

/// Integer and number formats that JSON Schema does not define.
const OPENAPI_ONLY_FORMATS: &[&str] = &[
    "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float",
    "double",
];

/// The reshaped JSON Schema of a tagged frame enum (see the module docs).
pub(crate) fn reshape(schema: &schemars::Schema) -> Value {
    let mut root = serde_json::to_value(schema).unwrap_or_default();
    tags_into_definitions(&mut root);
    walk(&mut root, &mut |node| {
        consts_to_enum(node);
        strip_openapi_formats(node);
        no_ref_siblings(node);
    });
    root
}

/// Moves each `oneOf` branch's `type` const and description into the definition it refers to,
/// leaving a bare `$ref`. A definition that two branches share keeps the branches as they are.
fn tags_into_definitions(root: &mut Value) {
    let Some(branches) = root.get("oneOf").and_then(Value::as_array).cloned() else {
        return;
    };
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for branch in &branches {
        if let Some(name) = def_name(branch) {
            *seen.entry(name).or_default() += 1;
        }
    }
    let mut reshaped = Vec::with_capacity(branches.len());
    for branch in branches {
        let (Some(name), Some(tag)) = (
            def_name(&branch),
            branch.pointer("/properties/type/const").cloned(),
        ) else {
            reshaped.push(branch);
            continue;
        };
        let Some(Value::Object(def)) = root.pointer_mut(&format!("/$defs/{name}")) else {
            reshaped.push(branch);
            continue;
        };
        if seen.get(&name).copied().unwrap_or(0) > 1 || def.contains_key("allOf") {
            reshaped.push(branch);
            continue;
        }
        let tag_text = tag.as_str().unwrap_or_default().to_owned();
        let mut properties = Map::new();
        properties.insert(
            "type".into(),
            json!({ "type": "string", "const": tag, "description": format!("Always `{tag_text}`.") }),
        );
        if let Some(Value::Object(old)) = def.remove("properties") {
            properties.extend(old);
        }
        def.insert("properties".into(), Value::Object(properties));
        let mut required = vec![Value::from("type")];
        if let Some(Value::Array(old)) = def.remove("required") {
            required.extend(old.into_iter().filter(|r| r != "type"));
        }
        def.insert("required".into(), Value::Array(required));
        if let Some(Value::String(branch_doc)) = branch.get("description") {
            let text = match def.get("description").and_then(Value::as_str) {
                Some(own) if own != branch_doc => format!("{branch_doc}\n\n{own}"),
                _ => branch_doc.clone(),
            };
            def.insert("description".into(), Value::String(text));
        }
        reshaped.push(json!({ "$ref": format!("#/$defs/{name}") }));
    }
    if let Some(slot) = root.get_mut("oneOf") {
        *slot = Value::Array(reshaped);
    }
}

/// `Name` of a branch `{"$ref": "#/$defs/Name", ...}`.
fn def_name(branch: &Value) -> Option<String> {
    branch
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_owned)
}

/// Calls `f` on every object of the tree, parents before children.
pub(crate) fn walk(node: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    match node {
        Value::Object(map) => {
            f(map);
            for child in map.values_mut() {
                walk(child, f);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, f);
            }
        }
        _ => {}
    }
}

/// `{"oneOf": [{"const": "a", "description": ...}, ...]}` (a documented unit enum) as
/// `{"type": "string", "enum": ["a", ...]}`, the variants' docs listed in the description.
fn consts_to_enum(node: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = node.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    let mut docs = Vec::new();
    for branch in branches {
        let Some(Value::String(value)) = branch.get("const") else {
            return;
        };
        if branch.as_object().is_some_and(|b| {
            b.keys()
                .any(|k| !matches!(k.as_str(), "const" | "type" | "description"))
        }) {
            return;
        }
        if let Some(doc) = branch.get("description").and_then(Value::as_str) {
            docs.push(format!("- `{value}`: {doc}"));
        }
        values.push(Value::String(value.clone()));
    }
    if values.is_empty() {
        return;
    }
    node.remove("oneOf");
    node.insert("type".into(), Value::from("string"));
    node.insert("enum".into(), Value::Array(values));
    if !docs.is_empty() {
        let list = docs.join("\n");
        let text = match node.get("description").and_then(Value::as_str) {
            Some(own) => format!("{own}\n\n{list}"),
            None => list,
        };
        node.insert("description".into(), Value::String(text));
    }
}

/// `{"$ref": X, ...siblings}` as `{"allOf": [{"$ref": X}], ...siblings}`.
fn no_ref_siblings(node: &mut Map<String, Value>) {
    if node.contains_key("$ref") && node.len() > 1 {
        if let Some(reference) = node.remove("$ref") {
            node.insert("allOf".into(), json!([{ "$ref": reference }]));
        }
    }
}

/// Drops `format`s that JSON Schema does not define (they stay in the OpenAPI document).
fn strip_openapi_formats(node: &mut Map<String, Value>) {
    if node
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| OPENAPI_ONLY_FORMATS.contains(&f))
    {
        node.remove("format");
    }
}

/// The `(value, description)` pairs of a unit enum's JSON Schema (schemars: `oneOf` of
/// documented `const`s, or a plain `enum`).
pub(crate) fn enum_values(schema: &schemars::Schema) -> Vec<(String, String)> {
    let value = serde_json::to_value(schema).unwrap_or_default();
    if let Some(Value::Array(branches)) = value.get("oneOf") {
        return branches
            .iter()
            .filter_map(|b| {
                let v = b.get("const")?.as_str()?.to_owned();
                let d = b.get("description").and_then(Value::as_str).unwrap_or("");
                Some((v, d.to_owned()))
            })
            .collect();
    }
    value
        .get("enum")
        .and_then(Value::as_array)
        .map(|values| {
            values
                .iter()
                .filter_map(|v| Some((v.as_str()?.to_owned(), String::new())))
                .collect()
        })
        .unwrap_or_default()
}
