//! Generates `schemas/v1/`: one JSON Schema (draft 2020-12) per wire message, and an OpenAPI 3.1
//! document of every endpoint that references them.
//!
//! `driftless schema export` writes what [`files`] returns; a test fails when the committed files
//! differ, so the schemas can never drift from the types.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::collection_schema::{CollectionSchema, CollectionSchemaList};
use crate::messages::{
    BucketResponse, ChecksumsResponse, CompactionResponse, Discovery, HistoryResponse, Limits,
    ManifestRequest, ManifestResponse, Mutation, PullResponse, PushRequest, PushResponse, Record,
    TokenClaims,
};
use crate::problem::Problem;

/// The folder of the message schemas, relative to the repository root.
pub const SCHEMA_DIR: &str = "schemas/v1";

/// The `$id` of a message schema.
pub fn schema_id(name: &str) -> String {
    format!("urn:driftless:schema:v1:{name}")
}

fn generate<T: JsonSchema>(name: &str, description: &str) -> (String, Value) {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    let root = value
        .as_object_mut()
        .expect("a root schema of a message is an object");
    // `$id` first after `$schema`, so the files read naturally.
    let mut ordered = Map::new();
    if let Some(s) = root.remove("$schema") {
        ordered.insert("$schema".into(), s);
    }
    ordered.insert("$id".into(), Value::String(schema_id(name)));
    let title = root
        .remove("title")
        .unwrap_or_else(|| Value::String(name.to_owned()));
    ordered.insert("title".into(), title);
    root.remove("description");
    ordered.insert("description".into(), Value::String(description.to_owned()));
    ordered.extend(std::mem::take(root));
    let mut value = Value::Object(ordered);
    describe_discriminators(&mut value);
    (name.to_owned(), value)
}

/// schemars emits the tag member of an internally tagged enum (`kind`, `status`, `op`) as a bare
/// `const`; give it a description like every other property.
fn describe_discriminators(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if let Value::Object(p) = prop {
                        if !p.contains_key("description") {
                            if let Some(Value::String(c)) = p.get("const") {
                                let text =
                                    format!("Discriminator: `{name}` is `{c}` for this variant.");
                                p.insert("description".into(), Value::String(text));
                            }
                        }
                    }
                }
            }
            for v in map.values_mut() {
                describe_discriminators(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(describe_discriminators),
        _ => {}
    }
}

/// Every message schema, as (file stem, schema), in a stable order.
pub fn message_schemas() -> Vec<(String, Value)> {
    vec![
        generate::<Discovery>("discovery", "The discovery document of GET /.well-known/driftless (spec chapter 01)."),
        generate::<Mutation>("mutation", "One change to one Record (spec chapter 03)."),
        generate::<PushRequest>("push-request", "The body of POST /v1/spaces/{space}/push (spec chapter 04)."),
        generate::<PushResponse>("push-response", "The answer to a push: one result per Mutation, in request order (spec chapter 04)."),
        generate::<ManifestRequest>("manifest-request", "The body of POST /v1/spaces/{space}/manifest (spec chapter 04)."),
        generate::<ManifestResponse>("manifest-response", "The fate of each requested Op ID (spec chapter 04)."),
        generate::<PullResponse>("pull-response", "A page of GET /v1/spaces/{space}/pull (spec chapter 05)."),
        generate::<Record>("record", "A Record's state as the Server serves it (spec chapter 05)."),
        generate::<HistoryResponse>("history-response", "A page of a Record's audit history (spec chapter 05)."),
        generate::<ChecksumsResponse>("checksums-response", "The 64 bucket checksums of a Space (spec chapter 06)."),
        generate::<BucketResponse>("bucket-response", "A page of one bucket's Records, for repair (spec chapter 06)."),
        generate::<CollectionSchema>("collection-schema", "A Collection Schema document: JSON Schema, Field Policies and migration of one version (spec chapter 10). This is the meta-schema of collection-schema documents."),
        generate::<CollectionSchemaList>("collection-schema-list", "The registered versions of a Collection (spec chapter 10)."),
        generate::<CompactionResponse>("compaction-response", "The answer to POST /v1/spaces/{space}/compact (spec chapter 11)."),
        generate::<Problem>("problem", "An RFC 9457 problem details object (spec chapter 07)."),
        generate::<TokenClaims>("token-claims", "The claims of a reference-format Token (spec chapter 09, informative)."),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{name}.schema.json") })
}

fn json_body(name: &str) -> Value {
    json!({ "content": { "application/json": { "schema": schema_ref(name) } } })
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": schema_ref("problem") } }
    })
}

fn retry_problem(description: &str) -> Value {
    let mut p = problem(description);
    p["headers"] = json!({ "Retry-After": { "$ref": "#/components/headers/Retry-After" } });
    p
}

/// Problem responses every authenticated endpoint can give.
fn common_problems(extra: &[(&str, &str)]) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert(
        "400".into(),
        problem("invalid-json, invalid-request or unsupported-version"),
    );
    let mut unauthorized = problem("unauthorized: no valid Token");
    unauthorized["headers"] = json!({ "WWW-Authenticate": { "schema": { "type": "string" }, "description": "Always `Bearer`." } });
    r.insert("401".into(), unauthorized);
    r.insert(
        "403".into(),
        problem("forbidden: the Token lacks the Scope on this Space"),
    );
    r.insert("429".into(), retry_problem("rate-limited"));
    r.insert("500".into(), problem("internal"));
    r.insert("503".into(), retry_problem("unavailable"));
    for (status, description) in extra {
        r.insert((*status).into(), problem(description));
    }
    r
}

fn operation(
    id: &str,
    summary: &str,
    scope: &str,
    params: Vec<Value>,
    body: Option<&str>,
    ok: (&str, &str),
    extra: &[(&str, &str)],
) -> Value {
    let mut responses = common_problems(extra);
    let mut success = json_body(ok.1);
    success["description"] = Value::String(format!("Success: a `{}` message.", ok.1));
    success["headers"] =
        json!({ "Driftless-Clock": { "$ref": "#/components/headers/Driftless-Clock" } });
    responses.insert(ok.0.into(), success);
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "description": format!("Requires the `{scope}` Scope on the Space."),
        "security": [{ "bearer": [] }],
        "parameters": params,
        "responses": responses,
    });
    if let Some(b) = body {
        let mut rb = json_body(b);
        rb["required"] = Value::Bool(true);
        op["requestBody"] = rb;
    }
    op
}

fn path_param(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

/// A syntax pattern without its anchors, to build a larger pattern from.
fn unanchored(pattern: &str) -> &str {
    pattern.trim_start_matches('^').trim_end_matches('$')
}

/// The body of a push as the Server reads it before judging each Mutation on its own
/// (`[PUSH-6]`, `[PUSH-7]`): each element of `mutations` is an object with a valid `op_id`; the
/// rest of a Mutation is checked per Mutation and answered in its result (`[PUSH-5]`), so a
/// fuzzer must not expect a 4xx for it.
fn push_body(limits: &Limits) -> Value {
    json!({
        "type": "object",
        "description": "A push-request (push-request.schema.json) as the Server checks it before the Mutations: each Mutation is an object with a valid op_id; every other rule of a Mutation is answered per Mutation, in a rejected result, not with a 4xx ([PUSH-5], [PUSH-13]).",
        "required": ["client_id", "mutations"],
        "additionalProperties": false,
        "properties": {
            "client_id": { "type": "string", "pattern": crate::ids::ClientId::SYNTAX.pattern },
            "mutations": {
                "type": "array",
                "maxItems": limits.mutations_per_push_max,
                "items": {
                    "type": "object",
                    "required": ["op_id"],
                    "properties": { "op_id": { "type": "string", "pattern": crate::ids::OpId::SYNTAX.pattern } }
                }
            }
        }
    })
}

/// `schema_ref(name)` narrowed by `extra`, both of which a body must match.
fn narrowed(name: &str, extra: Value) -> Value {
    json!({ "allOf": [schema_ref(name), extra] })
}

/// The OpenAPI 3.1 document of every endpoint of protocol v1. Its bounds (page sizes, batch
/// sizes, long-poll waits) are those of [`Limits::REFERENCE`], the reference Server's defaults.
pub fn openapi() -> Value {
    let limits = Limits::REFERENCE;
    let space = || path_param("space");
    let paging = || {
        vec![query(
            "limit",
            "Most entries in the page, from 1 to limits.page_records_max (here the reference Server's default).",
            json!({"type": "integer", "minimum": 1, "maximum": limits.page_records_max}),
        )]
    };
    let mut pull_params = vec![
        space(),
        query(
            "cursor",
            "A Cursor from an earlier pull response of the same Space; absent to start from the beginning. A Cursor the Server did not issue for this Space is invalid-cursor (400), an expired one cursor-expired (410).",
            json!({"type": "string", "minLength": 1}),
        ),
        query(
            "wait_ms",
            "Long-poll: wait up to this long for a change, from 0 to limits.pull_wait_ms_max (here the reference Server's default).",
            json!({"type": "integer", "minimum": 0, "maximum": limits.pull_wait_ms_max}),
        ),
    ];
    pull_params.extend(paging());
    let mut bucket_params = vec![
        space(),
        path_param("bucket"),
        query(
            "after",
            "The next_after of the previous page: a Collection name and a Record ID joined by a slash.",
            json!({"type": "string", "pattern": format!(
                "^{}/{}$",
                unanchored(crate::ids::CollectionName::SYNTAX.pattern),
                unanchored(crate::ids::RecordId::SYNTAX.pattern)
            )}),
        ),
    ];
    bucket_params.extend(paging());
    let mut history_params = vec![
        space(),
        path_param("collection"),
        path_param("id"),
        query(
            "after",
            "A position from an earlier page.",
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        ),
    ];
    history_params.extend(paging());

    let mut compact = operation(
        "compact",
        "Compact the Space now (optional feature compaction-trigger)",
        "admin",
        vec![space()],
        None,
        ("200", "compaction-response"),
        &[(
            "404",
            "not-found: the Server does not offer compaction-trigger",
        )],
    );
    compact["description"] = Value::String(
        "Requires the `admin` Scope on the Space. Offered only by Servers whose discovery document lists the feature `compaction-trigger`.".into(),
    );

    let mut push = operation(
        "push",
        "Push a batch of Mutations",
        "write",
        vec![space()],
        Some("push-request"),
        ("200", "push-response"),
        &[
            ("413", "payload-too-large or batch-too-large"),
            ("415", "unsupported-media-type"),
        ],
    );
    push["requestBody"]["content"]["application/json"]["schema"] = push_body(&limits);
    let mut manifest = operation(
        "manifest",
        "Learn the fate of Op IDs",
        "write",
        vec![space()],
        Some("manifest-request"),
        ("200", "manifest-response"),
        &[
            ("413", "payload-too-large or batch-too-large"),
            ("415", "unsupported-media-type"),
        ],
    );
    manifest["requestBody"]["content"]["application/json"]["schema"] = narrowed(
        "manifest-request",
        json!({"properties": {"op_ids": {"maxItems": limits.op_ids_per_manifest_max}}}),
    );
    // What [SCHEMA-6] refuses and a JSON Schema can say: a root other than `"type": "object"`,
    // and a migration in version 1.
    let collection_schema_body = narrowed(
        "collection-schema",
        json!({
            "properties": {"schema": {"required": ["type"], "properties": {"type": {"const": "object"}}}},
            "if": {"properties": {"version": {"const": 1}}, "required": ["version"]},
            "then": {"properties": {"migration": {"maxItems": 0}}}
        }),
    );

    let mut discovery = json!({
        "operationId": "discover",
        "summary": "Discover protocol versions, limits, retention, backoff policy and features",
        "security": [],
        "responses": {
            "200": json_body("discovery"),
            "405": problem("method-not-allowed"),
            "500": problem("internal"),
            "503": retry_problem("unavailable"),
        }
    });
    discovery["responses"]["200"]["description"] = Value::String("The discovery document.".into());

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Driftless protocol",
            "version": "1.0.0-draft.1",
            "description": "The HTTP API of the Driftless offline-first sync protocol, version 1. The normative text is spec/ in the Driftless repository; this document is generated from the reference types.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": {
            "/.well-known/driftless": { "get": discovery },
            "/v1/spaces/{space}/push": { "post": push },
            "/v1/spaces/{space}/manifest": { "post": manifest },
            "/v1/spaces/{space}/pull": { "get": operation(
                "pull", "Pull changed Records after a Cursor, optionally long-polling", "read", pull_params, None,
                ("200", "pull-response"),
                &[("410", "cursor-expired: resync from no Cursor")]) },
            "/v1/spaces/{space}/records/{collection}/{id}": { "get": operation(
                "getRecord", "Read one Record", "read",
                vec![space(), path_param("collection"), path_param("id")], None,
                ("200", "record"), &[("404", "record-not-found")]) },
            "/v1/spaces/{space}/records/{collection}/{id}/history": { "get": operation(
                "getHistory", "Read a Record's audit history", "admin", history_params, None,
                ("200", "history-response"), &[]) },
            "/v1/spaces/{space}/checksums": { "get": operation(
                "getChecksums", "Read the 64 bucket checksums of the Space", "read", vec![space()], None,
                ("200", "checksums-response"), &[]) },
            "/v1/spaces/{space}/buckets/{bucket}": { "get": operation(
                "getBucket", "Read one bucket's Records, for repair", "read", bucket_params, None,
                ("200", "bucket-response"), &[]) },
            "/v1/spaces/{space}/collections/{collection}/schemas": { "get": operation(
                "listCollectionSchemas", "List a Collection's registered schema versions", "read",
                vec![space(), path_param("collection")], None,
                ("200", "collection-schema-list"), &[]) },
            "/v1/spaces/{space}/collections/{collection}/schemas/{version}": { "put": {
                "operationId": "registerCollectionSchema",
                "summary": "Register a Collection Schema version",
                "description": "Requires the `admin` Scope on the Space. Answers 201 on first registration and 200 when the same document is already registered.",
                "security": [{ "bearer": [] }],
                "parameters": [space(), path_param("collection"), path_param("version")],
                "requestBody": { "required": true, "description": "The document; its collection and version equal those of the path ([SCHEMA-1]), which a JSON Schema cannot say.", "content": { "application/json": { "schema": collection_schema_body } } },
                "responses": {
                    "201": { "description": "Registered.", "content": { "application/json": { "schema": schema_ref("collection-schema") } } },
                    "200": { "description": "Already registered with the same document.", "content": { "application/json": { "schema": schema_ref("collection-schema") } } },
                    "400": problem("invalid-json, invalid-request or unsupported-version"),
                    "401": problem("unauthorized"),
                    "403": problem("forbidden"),
                    "409": problem("schema-conflict or schema-version-gap"),
                    "413": problem("payload-too-large"),
                    "415": problem("unsupported-media-type"),
                    "422": problem("invalid-schema"),
                    "429": retry_problem("rate-limited"),
                    "500": problem("internal"),
                    "503": retry_problem("unavailable"),
                }
            } },
            "/v1/spaces/{space}/compact": { "post": compact },
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "A Token naming a User and Grants (spec chapter 09)." }
            },
            "headers": {
                "Driftless-Clock": { "description": "The Server's HLC; Clients merge it ([HLC-5]).", "schema": { "type": "string", "pattern": crate::hlc::HLC_PATTERN } },
                "Retry-After": { "description": "Seconds to wait before retrying.", "schema": { "type": "integer", "minimum": 0 } }
            },
            "parameters": {
                "space": { "name": "space", "in": "path", "required": true, "description": "The Space ID.", "schema": { "type": "string", "pattern": crate::ids::SpaceId::SYNTAX.pattern } },
                "collection": { "name": "collection", "in": "path", "required": true, "description": "The Collection name.", "schema": { "type": "string", "pattern": crate::ids::CollectionName::SYNTAX.pattern } },
                "id": { "name": "id", "in": "path", "required": true, "description": "The Record ID.", "schema": { "type": "string", "pattern": crate::ids::RecordId::SYNTAX.pattern } },
                "bucket": { "name": "bucket", "in": "path", "required": true, "description": "The bucket number.", "schema": { "type": "integer", "minimum": 0, "maximum": 63 } },
                "version": { "name": "version", "in": "path", "required": true, "description": "The Collection Schema version.", "schema": { "type": "integer", "minimum": 1 } }
            }
        }
    })
}

/// Every file of `schemas/v1/` as (file name, pretty JSON text ending in a newline).
pub fn files() -> Vec<(String, String)> {
    let pretty = |v: &Value| {
        let mut s = serde_json::to_string_pretty(v).expect("a JSON value serializes");
        s.push('\n');
        s
    };
    let mut out: Vec<(String, String)> = message_schemas()
        .into_iter()
        .map(|(name, schema)| (format!("{name}.schema.json"), pretty(&schema)))
        .collect();
    out.push(("openapi.json".into(), pretty(&openapi())));
    out
}
