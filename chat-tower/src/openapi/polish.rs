//! What the OpenAPI document needs beyond what utoipa derives, applied to the whole document
//! so that new operations and schemas get it without an attribute of their own:
//! - the `ProblemCode` enum (`Problem.code`): every WebSocket [`ErrorCode`] and every code of
//!   [`HTTP_PROBLEM_CODES`];
//! - a `default` problem response on every operation;
//! - `examples` instead of the deprecated schema-level `example`;
//! - a property's description at the property, not inside a `oneOf` branch (utoipa documents
//!   `Option<Ref>` as `oneOf: [{$ref, description}, {type: null}]`, and generators read only
//!   the outer description).
//!
//! [`ErrorCode`]: chat_core::ErrorCode

use utoipa::openapi::{
    schema::{ArrayItems, ObjectBuilder, Type},
    ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Schema,
};

use crate::error::HTTP_PROBLEM_CODES;

/// Every `code` a problem may carry, with what it means: the WebSocket error codes first, then
/// the HTTP-only ones.
pub fn problem_codes() -> Vec<(String, String)> {
    let mut codes = super::frames::enum_values(&schemars::schema_for!(chat_core::ErrorCode));
    for (code, doc) in HTTP_PROBLEM_CODES {
        if !codes.iter().any(|(c, _)| c == code) {
            codes.push(((*code).to_owned(), (*doc).to_owned()));
        }
    }
    codes
}

/// Applies the module's changes to `doc`.
pub(crate) fn polish(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    let codes = problem_codes();
    let list: Vec<String> = codes
        .iter()
        .map(|(code, meaning)| format!("- `{code}`: {meaning}"))
        .collect();
    components.schemas.insert(
        "ProblemCode".into(),
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "The `code` of a problem: the WebSocket error codes where they apply, and codes of HTTP failures.\n\n{}",
                list.join("\n")
            )))
            .enum_values(Some(codes.iter().map(|(code, _)| code.clone())))
            .into(),
    );
    for schema in components.schemas.values_mut() {
        polish_schema(schema);
    }
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("default".into())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(
                            "Any other failure, as a problem (e.g. 405 for another method, 500)",
                        )
                        .content(
                            "application/problem+json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        )
                        .build()
                        .into()
                });
            for param in op.parameters.iter_mut().flatten() {
                if let RefOr::T(param) = param {
                    if let Some(schema) = param.schema.as_mut() {
                        polish_schema(schema);
                    }
                }
            }
        }
    }
}

/// `example` → `examples`, and descriptions out of `oneOf` branches, all the way down.
fn polish_schema(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else { return };
    match schema {
        Schema::Object(object) => {
            if let Some(example) = object.example.take() {
                object.examples.insert(0, example);
            }
            for property in object.properties.values_mut() {
                polish_schema(property);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                polish_schema(items);
            }
        }
        Schema::OneOf(one_of) => {
            if let Some(example) = one_of.example.take() {
                one_of.examples.insert(0, example);
            }
            if one_of.description.is_none() {
                for item in &mut one_of.items {
                    if let RefOr::Ref(reference) = item {
                        if !reference.description.is_empty() {
                            one_of.description = Some(std::mem::take(&mut reference.description));
                            break;
                        }
                    }
                }
            }
            for item in &mut one_of.items {
                polish_schema(item);
            }
        }
        Schema::AllOf(all_of) => {
            for item in &mut all_of.items {
                polish_schema(item);
            }
        }
        Schema::AnyOf(any_of) => {
            for item in &mut any_of.items {
                polish_schema(item);
            }
        }
        _ => {}
    }
}
