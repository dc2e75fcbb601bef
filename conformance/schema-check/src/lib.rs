//! The schema-evolution checker behind `driftless schema check OLD NEW` (spec chapter 10,
//! Compatibility).
//!
//! It decides whether changing a schema from version OLD to version NEW breaks Clients in the
//! field, for teams that run `driftless schema check OLD NEW` in CI before registering NEW with a
//! Server (`[EVO-13]`, so that they register only compatible versions, `[EVO-11]`). The answer is
//! a list of [`Finding`]s and a verdict ([`compatible`]): no error means the change is compatible
//! in the mode asked for.
//!
//! `backward` asks whether every instance valid under OLD is valid under NEW; `forward` the
//! reverse; `full` both. The engine walks the two schemas side by side ([`compare`]), following
//! local `$ref`s, `allOf`/`anyOf`/`oneOf`, objects and arrays, and reports every place where the
//! narrower side rejects something the wider side accepts, with a stable rule ID, both JSON
//! pointers, an explanation and, where it can build one, a counterexample that the `jsonschema`
//! crate has confirmed: accepted by one schema, rejected by the other. Where it cannot decide it
//! says so (rule `undecidable`, a warning) rather than guessing. For Collection Schema documents
//! the backward check first applies NEW's migration, the forward check ignores Fields old Clients
//! preserve without knowing them (`[EVO-10]`), and a Policy change is never compatible
//! (`[EVO-12]`). [`generate`] backs `driftless schema migrate-check`; [`output`] renders a check.
//!
//! The checker reads two files and answers: it depends on `jsonschema` (without the default
//! features that fetch remote `$ref`s over HTTP) and on the protocol crate's types, never on an
//! HTTP stack or the conformance suite.
//!
//! This file is over 600 lines: it is the checker proper (loading, the document rules and the
//! one recursive structural comparison) and reads top to bottom as one walk.

mod example;
pub mod generate;
pub mod output;

use std::collections::BTreeSet;

use driftless_protocol::collection_schema::{CollectionSchema, MigrationStep, Policy};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Which compatibility to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every OLD instance is valid under NEW.
    Backward,
    /// Every NEW instance is valid under OLD.
    Forward,
    /// Both.
    Full,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The change breaks compatibility.
    Error,
    /// The checker cannot decide; a human should look.
    Warning,
}

/// The direction a finding was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// OLD instances rejected by NEW.
    Backward,
    /// NEW instances rejected by OLD.
    Forward,
}

/// One incompatibility, or one place the checker could not decide.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// A stable rule ID, e.g. `required-property-added`.
    pub rule: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Backward or forward.
    pub direction: Direction,
    /// JSON pointer into the OLD file.
    pub old_pointer: String,
    /// JSON pointer into the NEW file.
    pub new_pointer: String,
    /// Where in an instance the difference shows.
    pub instance_path: String,
    /// One line.
    pub message: String,
    /// An instance accepted by the wider schema and rejected by the narrower one, confirmed
    /// with the `jsonschema` crate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Value>,
    /// `old` or `new`: which schema accepts the counterexample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<&'static str>,
}

/// A loaded schema file: a plain JSON Schema or a Collection Schema document.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file name, for messages.
    pub name: String,
    /// The JSON Schema (for documents: the `schema` member).
    pub schema: Value,
    /// The pointer prefix of the schema in the file (`/schema` for documents).
    pub prefix: String,
    /// The document, when the file is one.
    pub document: Option<CollectionSchema>,
}

/// Why a file cannot be checked (exit code 2): one line naming the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// Loads and validates one file: JSON, a valid draft 2020-12 schema, every `$ref` resolvable.
pub fn load(name: &str, text: &str) -> Result<Loaded, LoadError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| LoadError(format!("{name}: not JSON: {e}")))?;
    let is_document = value.get("collection").is_some()
        && value.get("version").is_some()
        && value.get("schema").is_some();
    let (schema, prefix, document) = if is_document {
        let doc: CollectionSchema = serde_json::from_value(value.clone()).map_err(|e| {
            LoadError(format!(
                "{name}: not a valid collection-schema document: {e}"
            ))
        })?;
        (
            Value::Object(doc.schema.clone()),
            "/schema".to_owned(),
            Some(doc),
        )
    } else {
        (value, String::new(), None)
    };
    if let Err(e) = jsonschema::meta::validate(&schema) {
        return Err(LoadError(format!(
            "{name}: not a valid JSON Schema (draft 2020-12): {e}"
        )));
    }
    if let Err(e) = jsonschema::validator_for(&schema) {
        return Err(LoadError(format!(
            "{name}: cannot be compiled (unresolvable $ref?): {e}"
        )));
    }
    Ok(Loaded {
        name: name.to_owned(),
        schema,
        prefix,
        document,
    })
}

/// Compares OLD and NEW in `mode`.
pub fn check(old: &Loaded, new: &Loaded, mode: Mode) -> Vec<Finding> {
    let mut findings = Vec::new();
    if matches!(mode, Mode::Backward | Mode::Full) {
        // Backward: OLD instances, migrated when NEW declares a migration, must be valid under NEW.
        let wide = match &new.document {
            Some(doc) => migrate_schema(&old.schema, doc),
            None => old.schema.clone(),
        };
        findings.extend(compare(
            &wide,
            &old.prefix,
            &new.schema,
            &new.prefix,
            Direction::Backward,
        ));
    }
    if matches!(mode, Mode::Forward | Mode::Full) {
        // Forward: NEW instances must be valid under OLD; with documents, Clients preserve
        // top-level Fields they do not know, so OLD's root is read as open.
        let narrow = match &old.document {
            Some(_) => open_root(&old.schema),
            None => old.schema.clone(),
        };
        let wide = new.schema.clone();
        let mut forward = compare(&wide, &new.prefix, &narrow, &old.prefix, Direction::Forward);
        if old.document.is_some() {
            // Fields OLD does not declare are preserved, not validated, by old Clients.
            let declared: BTreeSet<String> = old
                .schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            forward.retain(|f| {
                let top = f.instance_path.split('/').nth(1).unwrap_or("");
                top.is_empty() || declared.contains(top)
            });
        }
        findings.extend(forward);
    }
    if let (Some(o), Some(n)) = (&old.document, &new.document) {
        // A Policy change is never compatible (spec chapter 10); the others concern what old
        // Clients write, so they belong to the backward direction.
        let backward = matches!(mode, Mode::Backward | Mode::Full);
        findings.extend(
            sync_rules(o, n)
                .into_iter()
                .filter(|f| backward || f.rule == "merge-policy-changed"),
        );
    }
    // Counterexamples are confirmed against the schemas as compared.
    let migrated = new
        .document
        .as_ref()
        .map(|d| migrate_schema(&old.schema, d))
        .unwrap_or_else(|| old.schema.clone());
    let opened = old
        .document
        .as_ref()
        .map(|_| open_root(&old.schema))
        .unwrap_or_else(|| old.schema.clone());
    for f in &mut findings {
        let (wide, narrow, accepted_by) = match f.direction {
            Direction::Backward => (&migrated, &new.schema, "old"),
            Direction::Forward => (&new.schema, &opened, "new"),
        };
        f.counterexample =
            example::counterexample(wide, narrow, f).filter(|_| f.severity == Severity::Error);
        f.accepted_by = f.counterexample.as_ref().map(|_| accepted_by);
        if SUSPECTED.contains(&f.rule) && f.counterexample.is_none() {
            // Suspected, not shown: say so instead of guessing either way.
            f.rule = "undecidable";
            f.severity = Severity::Warning;
            f.message = format!("{}; no instance shows a difference; not decided", f.message);
        }
    }
    findings
}

/// Whether findings allow the change: no error.
pub fn compatible(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.severity == Severity::Warning)
}

/// OLD's schema as OLD instances look after NEW's migration: renamed, removed and added Fields.
fn migrate_schema(old: &Value, new_doc: &CollectionSchema) -> Value {
    let mut s = old.clone();
    let Some(obj) = s.as_object_mut() else {
        return s;
    };
    let mut props = obj
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut required: Vec<String> = required_names(obj).map(str::to_owned).collect();
    for step in &new_doc.migration {
        match step {
            MigrationStep::RenameField { from, to } => {
                if let Some(p) = props.remove(from.as_str()) {
                    props.insert(to.to_string(), p);
                }
                for r in &mut required {
                    if r == from.as_str() {
                        *r = to.to_string();
                    }
                }
            }
            MigrationStep::RemoveField { field } => {
                props.remove(field.as_str());
                required.retain(|r| r != field.as_str());
            }
            MigrationStep::AddField { field, default } => {
                props.insert(field.to_string(), json!({ "const": default }));
                if !required.iter().any(|r| r == field.as_str()) {
                    required.push(field.to_string());
                }
            }
        }
    }
    obj.insert("properties".into(), Value::Object(props));
    obj.insert("required".into(), json!(required));
    s
}

fn open_root(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("additionalProperties");
        o.remove("unevaluatedProperties");
    }
    s
}

fn sync_rules(old: &CollectionSchema, new: &CollectionSchema) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding =
        |rule, severity, old_p: String, new_p: String, path: String, message: String| Finding {
            rule,
            severity,
            direction: Direction::Backward,
            old_pointer: old_p,
            new_pointer: new_p,
            instance_path: path,
            message,
            counterexample: None,
            accepted_by: None,
        };
    let renamed = |name: &str| -> Option<String> {
        let mut n = name.to_owned();
        for step in &new.migration {
            match step {
                MigrationStep::RenameField { from, to } if from.as_str() == n => n = to.to_string(),
                MigrationStep::RemoveField { field } if field.as_str() == n => return None,
                _ => {}
            }
        }
        Some(n)
    };
    let props = |d: &CollectionSchema| -> Map<String, Value> {
        d.schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (old_props, new_props) = (props(old), props(new));
    let known: BTreeSet<String> = old
        .fields
        .keys()
        .map(|f| f.to_string())
        .chain(old_props.keys().cloned())
        .collect();
    for name in &known {
        let Some(new_name) = renamed(name) else {
            continue;
        };
        let (po, pn) = (old.policy(name), new.policy(&new_name));
        if po != pn
            && (new_props.contains_key(&new_name)
                || new.fields.contains_key(new_name.as_str())
                || po != Policy::Lww)
        {
            out.push(finding(
                "merge-policy-changed",
                Severity::Error,
                format!("/fields/{name}"),
                format!("/fields/{new_name}"),
                format!("/{new_name}"),
                format!("field {name} changes policy from {po:?} to {pn:?}; clients in the field would merge it differently"),
            ));
        }
        if !new_props.contains_key(&new_name) && old_props.contains_key(name) {
            let twin = new_props
                .iter()
                .find(|(k, v)| !old_props.contains_key(*k) && Some(*v) == old_props.get(name))
                .map(|(k, _)| k.clone());
            if let Some(twin) = twin {
                out.push(finding(
                    "rename-without-migration",
                    Severity::Error,
                    format!("/schema/properties/{name}"),
                    format!("/schema/properties/{twin}"),
                    format!("/{name}"),
                    format!("field {name} looks renamed to {twin}, but no rename_field migration says so; old clients' writes would not be upcast"),
                ));
            } else if new.schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                out.push(finding(
                    "field-removed-without-migration",
                    Severity::Error,
                    format!("/schema/properties/{name}"),
                    "/schema/additionalProperties".into(),
                    format!("/{name}"),
                    format!("field {name} is gone from a closed schema without a remove_field migration; old clients still write it"),
                ));
            }
        }
    }
    let defaults: BTreeSet<String> = new
        .migration
        .iter()
        .filter_map(|s| match s {
            MigrationStep::AddField { field, .. } => Some(field.to_string()),
            _ => None,
        })
        .collect();
    let old_required: BTreeSet<String> = old
        .schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(|s| renamed(s).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for (i, r) in new
        .schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(r) = r.as_str() else { continue };
        if !old_required.contains(r) && !defaults.contains(r) {
            out.push(finding(
                "required-field-without-default",
                Severity::Error,
                "/schema/required".into(),
                format!("/schema/required/{i}"),
                format!("/{r}"),
                format!("field {r} becomes required without an add_field default; old clients' records lack it"),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The structural comparison.

const ALL_TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "string", "integer",
];

/// Keywords whose changes the checker does not analyse; any difference in them is undecidable.
const OPAQUE: [&str; 12] = [
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "prefixItems",
    "patternProperties",
];

/// A numeric bound: its keyword, the types it constrains, whether it is a lower bound (a
/// greater value narrows), its rule IDs (backward, forward) and the message (`{}`: the new value).
struct Bound {
    key: &'static str,
    types: &'static [&'static str],
    lower: bool,
    backward: &'static str,
    forward: &'static str,
    message: &'static str,
}

const NUMBERS: &[&str] = &["number", "integer"];

const BOUNDS: [Bound; 10] = [
    Bound {
        key: "minimum",
        types: NUMBERS,
        lower: true,
        backward: "minimum-increased",
        forward: "minimum-decreased",
        message: "minimum is now {}",
    },
    Bound {
        key: "exclusiveMinimum",
        types: NUMBERS,
        lower: true,
        backward: "minimum-increased",
        forward: "minimum-decreased",
        message: "exclusiveMinimum is now {}",
    },
    Bound {
        key: "maximum",
        types: NUMBERS,
        lower: false,
        backward: "maximum-decreased",
        forward: "maximum-increased",
        message: "maximum is now {}",
    },
    Bound {
        key: "exclusiveMaximum",
        types: NUMBERS,
        lower: false,
        backward: "maximum-decreased",
        forward: "maximum-increased",
        message: "exclusiveMaximum is now {}",
    },
    Bound {
        key: "minLength",
        types: &["string"],
        lower: true,
        backward: "min-length-increased",
        forward: "min-length-decreased",
        message: "strings must now have at least {} characters",
    },
    Bound {
        key: "maxLength",
        types: &["string"],
        lower: false,
        backward: "max-length-decreased",
        forward: "max-length-increased",
        message: "strings may now have at most {} characters",
    },
    Bound {
        key: "minItems",
        types: &["array"],
        lower: true,
        backward: "min-items-increased",
        forward: "min-items-decreased",
        message: "arrays must now have at least {} items",
    },
    Bound {
        key: "maxItems",
        types: &["array"],
        lower: false,
        backward: "max-items-decreased",
        forward: "max-items-increased",
        message: "arrays may now have at most {} items",
    },
    Bound {
        key: "minProperties",
        types: &["object"],
        lower: true,
        backward: "min-properties-increased",
        forward: "min-properties-decreased",
        message: "minProperties is now {}",
    },
    Bound {
        key: "maxProperties",
        types: &["object"],
        lower: false,
        backward: "max-properties-decreased",
        forward: "max-properties-increased",
        message: "maxProperties is now {}",
    },
];

struct Walk<'a> {
    wide_root: &'a Value,
    narrow_root: &'a Value,
    wide_prefix: &'a str,
    narrow_prefix: &'a str,
    direction: Direction,
    findings: Vec<Finding>,
    seen: BTreeSet<(String, String)>,
}

/// Where each side of a comparison is.
#[derive(Clone)]
struct At {
    wide: String,
    narrow: String,
    instance: String,
}

impl At {
    fn both(&self, segment: &str) -> At {
        At {
            wide: format!("{}/{segment}", self.wide),
            narrow: format!("{}/{segment}", self.narrow),
            instance: self.instance.clone(),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Every place where `narrow` rejects something `wide` accepts.
pub fn compare(
    wide: &Value,
    wide_prefix: &str,
    narrow: &Value,
    narrow_prefix: &str,
    direction: Direction,
) -> Vec<Finding> {
    let mut w = Walk {
        wide_root: wide,
        narrow_root: narrow,
        wide_prefix,
        narrow_prefix,
        direction,
        findings: Vec::new(),
        seen: BTreeSet::new(),
    };
    w.walk(
        wide,
        narrow,
        At {
            wide: String::new(),
            narrow: String::new(),
            instance: String::new(),
        },
    );
    w.findings
}

/// A schema as an object with its local `$ref`s (`#/...` in `root`) resolved: the target's
/// keywords, overlaid by the referring schema's siblings. Shared by the comparison, the
/// counterexamples and the generator.
pub(crate) fn resolve_ref(root: &Value, schema: &Value) -> Map<String, Value> {
    let mut m = as_object(schema);
    for _ in 0..32 {
        let Some(Value::String(r)) = m.get("$ref").cloned() else {
            break;
        };
        let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p)) else {
            break;
        };
        m.remove("$ref");
        let mut merged = as_object(target);
        for (k, v) in m {
            merged.entry(k).or_insert(v);
        }
        m = merged;
    }
    m
}

fn as_object(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        Value::Bool(false) => [("not".to_owned(), json!({}))].into_iter().collect(),
        _ => Map::new(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n)
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) =>
        {
            "integer"
        }
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The types a schema admits: its `type`, or the types of its `enum`/`const` values.
fn types(s: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match s.get("type") {
        Some(Value::String(t)) => Some([t.clone()].into()),
        Some(Value::Array(ts)) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => values_of(s).map(|vs| vs.iter().map(|v| json_type(v).to_owned()).collect()),
    }
}

fn allows(types: &Option<BTreeSet<String>>, t: &str) -> bool {
    types
        .as_ref()
        .is_none_or(|ts| ts.contains(t) || (t == "integer" && ts.contains("number")))
}

fn num(s: &Map<String, Value>, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

/// The rule of a narrow `oneOf` whose alternatives overlap where the wide side has instances.
const OVERLAP: &str = "alternatives-overlap";
/// The rule of a `pattern` that rejects a string the other side's `pattern` accepts.
const PATTERN_CHANGED: &str = "pattern-changed";
/// Rules that stand only with a confirmed counterexample; without one, a finding of these
/// becomes `undecidable` (set inclusion of regular expressions and overlap of alternatives are
/// not decided, only shown by example).
const SUSPECTED: [&str; 2] = [OVERLAP, PATTERN_CHANGED];

/// Whether no instance can match two of these (resolved) alternatives, as far as types,
/// `const`/`enum` and a required discriminator property show; `false` means "not shown".
fn pairwise_disjoint(alts: &[Map<String, Value>]) -> bool {
    alts.iter()
        .enumerate()
        .all(|(i, a)| alts[i + 1..].iter().all(|b| disjoint(a, b)))
}

fn disjoint(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let (ta, tb) = (types(a), types(b));
    if let (Some(x), Some(y)) = (&ta, &tb) {
        if !x.iter().any(|t| allows(&tb, t)) && !y.iter().any(|t| allows(&ta, t)) {
            return true;
        }
    }
    if let (Some(va), Some(vb)) = (values_of(a), values_of(b)) {
        let canonical = |v: &Value| driftless_protocol::canonical::to_canonical_string(v);
        let vb: BTreeSet<String> = vb.iter().map(canonical).collect();
        if !va.iter().any(|v| vb.contains(&canonical(v))) {
            return true;
        }
    }
    // A discriminator: both accept only objects, both require a property, and its values differ.
    let only_objects = |t: &Option<BTreeSet<String>>| {
        t.as_ref()
            .is_some_and(|t| t.len() == 1 && t.contains("object"))
    };
    if !(only_objects(&ta) && only_objects(&tb)) {
        return false;
    }
    let required = |s: &Map<String, Value>| -> BTreeSet<String> {
        required_names(s).map(str::to_owned).collect()
    };
    let property =
        |s: &Map<String, Value>, k: &str| s.get("properties").and_then(|p| p.get(k)).map(as_object);
    required(a)
        .intersection(&required(b))
        .any(|k| match (property(a, k), property(b, k)) {
            (Some(pa), Some(pb)) => disjoint(&pa, &pb),
            _ => false,
        })
}

/// The names a schema's `required` lists (none if it has no such array).
pub(crate) fn required_names(s: &Map<String, Value>) -> impl Iterator<Item = &str> {
    s.get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn values_of(s: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = s.get("const") {
        return Some(vec![c.clone()]);
    }
    s.get("enum").and_then(Value::as_array).cloned()
}

impl Walk<'_> {
    fn resolve(
        &self,
        root: &Value,
        mut s: Map<String, Value>,
        at: &mut String,
    ) -> Map<String, Value> {
        for _ in 0..32 {
            let Some(Value::String(r)) = s.get("$ref").cloned() else {
                break;
            };
            let Some(pointer) = r.strip_prefix('#') else {
                break;
            };
            let Some(target) = root.pointer(pointer) else {
                break;
            };
            s.remove("$ref");
            let mut merged = as_object(target);
            for (k, v) in s {
                merged.entry(k).or_insert(v);
            }
            s = merged;
            *at = pointer.to_owned();
        }
        s
    }

    fn push(&mut self, rule: &'static str, severity: Severity, at: &At, message: String) {
        self.findings.push(Finding {
            rule,
            severity,
            direction: self.direction,
            old_pointer: String::new(),
            new_pointer: String::new(),
            instance_path: at.instance.clone(),
            message,
            counterexample: None,
            accepted_by: None,
        });
        let (wp, np) = (
            format!("{}{}", self.wide_prefix, at.wide),
            format!("{}{}", self.narrow_prefix, at.narrow),
        );
        let last = self.findings.last_mut().expect("just pushed");
        match self.direction {
            Direction::Backward => {
                last.old_pointer = if wp.is_empty() { "/".into() } else { wp };
                last.new_pointer = if np.is_empty() { "/".into() } else { np };
            }
            Direction::Forward => {
                last.new_pointer = if wp.is_empty() { "/".into() } else { wp };
                last.old_pointer = if np.is_empty() { "/".into() } else { np };
            }
        }
    }

    /// The rule name for a narrowing, in the words of the change from OLD to NEW.
    fn name(&self, backward: &'static str, forward: &'static str) -> &'static str {
        match self.direction {
            Direction::Backward => backward,
            Direction::Forward => forward,
        }
    }

    fn walk(&mut self, wide: &Value, narrow: &Value, mut at: At) {
        let (wide_root, narrow_root) = (self.wide_root, self.narrow_root);
        let w = self.resolve(wide_root, as_object(wide), &mut at.wide);
        let n = self.resolve(narrow_root, as_object(narrow), &mut at.narrow);
        if !self
            .seen
            .insert((format!("{}|{}", at.wide, at.instance), at.narrow.clone()))
        {
            return; // a recursive schema already compared at this pair
        }
        if w.contains_key("not") && w.get("not") == Some(&json!({})) {
            return; // the wide side accepts nothing
        }
        // allOf on the narrow side: every conjunct must hold.
        if let Some(Value::Array(parts)) = n.get("allOf") {
            for (i, p) in parts.iter().enumerate() {
                let mut a = at.clone();
                a.narrow = format!("{}/allOf/{i}", at.narrow);
                self.walk(&Value::Object(w.clone()), p, a);
            }
        }
        // allOf on the wide side narrows it: decidable only when one conjunct alone fits.
        if let Some(Value::Array(parts)) = w.get("allOf") {
            let fits = parts
                .iter()
                .any(|p| compare_scratch(self, p, &Value::Object(strip(&n, &["allOf"]))));
            if !fits && !is_trivial(&strip(&n, &["allOf", "anyOf", "oneOf"])) {
                self.push(
                    "undecidable",
                    Severity::Warning,
                    &at.both("allOf"),
                    "the old side is an allOf whose conjuncts do not each fit; not decided".into(),
                );
            }
            return;
        }
        // Alternatives: each wide alternative must fit some narrow alternative (order-free).
        let n_alts = n
            .get("anyOf")
            .or_else(|| n.get("oneOf"))
            .and_then(Value::as_array)
            .cloned();
        let w_alts = w
            .get("anyOf")
            .or_else(|| w.get("oneOf"))
            .and_then(Value::as_array)
            .cloned();
        let w_key = if w.contains_key("anyOf") {
            "anyOf"
        } else {
            "oneOf"
        };
        let n_key = if n.contains_key("anyOf") {
            "anyOf"
        } else {
            "oneOf"
        };
        if w_alts.is_some() || n_alts.is_some() {
            let w_base = Value::Object(strip(&w, &["anyOf", "oneOf"]));
            let n_base = Value::Object(strip(&n, &["anyOf", "oneOf"]));
            // A narrow `oneOf` rejects an instance that matches two of its alternatives, so it is
            // an `anyOf` only where its alternatives cannot overlap. Where that is not shown,
            // the finding stands only if a counterexample confirms it (see `check`).
            if let (Some(alts), "oneOf") = (&n_alts, n_key) {
                let same = w_key == "oneOf" && w_alts.as_ref() == Some(alts) && w_base == n_base;
                let resolved: Vec<Map<String, Value>> = alts
                    .iter()
                    .map(|a| {
                        let mut scratch = String::new();
                        self.resolve(narrow_root, as_object(&merge(&n_base, a)), &mut scratch)
                    })
                    .collect();
                if alts.len() > 1 && !same && !pairwise_disjoint(&resolved) {
                    let a = At {
                        wide: at.wide.clone(),
                        narrow: format!("{}/oneOf", at.narrow),
                        instance: at.instance.clone(),
                    };
                    self.push(
                        OVERLAP,
                        Severity::Error,
                        &a,
                        "a oneOf whose alternatives overlap rejects an instance that matches two of them".into(),
                    );
                }
            }
            let w_list: Vec<(String, Value)> = match &w_alts {
                Some(alts) => alts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (format!("{}/{w_key}/{i}", at.wide), merge(&w_base, a)))
                    .collect(),
                None => vec![(at.wide.clone(), w_base.clone())],
            };
            for (wp, walt) in w_list {
                match &n_alts {
                    Some(alts) => {
                        let hit = alts
                            .iter()
                            .any(|na| compare_scratch(self, &walt, &merge(&n_base, na)));
                        if !hit {
                            let a = At {
                                wide: wp.clone(),
                                narrow: format!("{}/{n_key}", at.narrow),
                                instance: at.instance.clone(),
                            };
                            self.push(self.name("alternative-removed", "alternative-added"), Severity::Error, &a, "no alternative on the other side accepts everything this alternative accepts".into());
                        }
                    }
                    None => {
                        let a = At {
                            wide: wp,
                            narrow: at.narrow.clone(),
                            instance: at.instance.clone(),
                        };
                        self.walk(&walt, &n_base, a);
                    }
                }
            }
            return;
        }
        self.compare_keywords(&w, &n, &at);
    }

    /// Every numeric bound of [`BOUNDS`] that the narrow side tightens (or adds).
    fn compare_bounds(
        &mut self,
        w: &Map<String, Value>,
        n: &Map<String, Value>,
        tw: &Option<BTreeSet<String>>,
        at: &At,
    ) {
        for b in BOUNDS {
            if !b.types.iter().any(|t| allows(tw, t)) {
                continue;
            }
            let Some(nb) = num(n, b.key) else { continue };
            let narrower = num(w, b.key).is_none_or(|wb| if b.lower { nb > wb } else { nb < wb });
            if narrower {
                self.push(
                    self.name(b.backward, b.forward),
                    Severity::Error,
                    &at.both(b.key),
                    b.message.replace("{}", &nb.to_string()),
                );
            }
        }
    }

    fn compare_keywords(&mut self, w: &Map<String, Value>, n: &Map<String, Value>, at: &At) {
        for k in OPAQUE {
            if n.get(k).is_some() && n.get(k) != w.get(k) {
                self.push(
                    "undecidable",
                    Severity::Warning,
                    &at.both(k),
                    format!("`{k}` differs; the checker does not analyse it"),
                );
            }
        }
        // Types.
        let (tw, tn) = (types(w), types(n));
        if tn.is_some() {
            let lost: Vec<&str> = ALL_TYPES
                .iter()
                .copied()
                .filter(|t| {
                    allows(&tw, t)
                        && !allows(&tn, t)
                        && !(tw.is_none() && *t == "integer" && allows(&tn, "number"))
                })
                .filter(|t| {
                    !(*t == "number" && tw.as_ref().is_some_and(|ts| !ts.contains("number")))
                })
                .collect();
            if !lost.is_empty() {
                self.push(
                    self.name("type-narrowed", "type-widened"),
                    Severity::Error,
                    &at.both("type"),
                    format!("values of type {} are no longer accepted", lost.join(", ")),
                );
            }
        }
        // Enumerations and constants.
        match (values_of(w), values_of(n)) {
            (Some(wv), Some(nv)) => {
                for v in wv.iter().filter(|v| !nv.contains(v)) {
                    let key = if n.contains_key("const") {
                        "const"
                    } else {
                        "enum"
                    };
                    self.push(
                        self.name("enum-value-removed", "enum-value-added"),
                        Severity::Error,
                        &at.both(key),
                        format!("the value {v} is no longer accepted"),
                    );
                }
            }
            (None, Some(_)) => {
                let key = if n.contains_key("const") {
                    "const"
                } else {
                    "enum"
                };
                self.push(
                    self.name("enum-added", "enum-removed"),
                    Severity::Error,
                    &at.both(key),
                    "values are now restricted to an enumeration".into(),
                );
            }
            _ => {}
        }
        self.compare_bounds(w, n, &tw, at);
        // Numbers.
        if allows(&tw, "number") || allows(&tw, "integer") {
            if let Some(nm) = num(n, "multipleOf") {
                let fine = num(w, "multipleOf")
                    .is_some_and(|wm| (wm / nm - (wm / nm).round()).abs() < 1e-9);
                if !fine {
                    self.push(
                        self.name("multiple-of-changed", "multiple-of-relaxed"),
                        Severity::Error,
                        &at.both("multipleOf"),
                        format!("values must now be multiples of {nm}"),
                    );
                }
            }
        }
        // Strings.
        if allows(&tw, "string") {
            match (w.get("pattern"), n.get("pattern")) {
                (None, Some(p)) => self.push(
                    self.name("pattern-added", "pattern-removed"),
                    Severity::Error,
                    &at.both("pattern"),
                    format!("strings must now match {p}"),
                ),
                (Some(a), Some(b)) if a != b => self.push(
                    PATTERN_CHANGED,
                    Severity::Error,
                    &at.both("pattern"),
                    format!("pattern changed from {a} to {b}"),
                ),
                _ => {}
            }
        }
        // Arrays.
        if allows(&tw, "array") {
            if n.get("uniqueItems") == Some(&Value::Bool(true))
                && w.get("uniqueItems") != Some(&Value::Bool(true))
            {
                self.push(
                    self.name("unique-items-added", "unique-items-removed"),
                    Severity::Error,
                    &at.both("uniqueItems"),
                    "array items must now be unique".into(),
                );
            }
            if let Some(ni) = n.get("items") {
                let wi = w.get("items").cloned().unwrap_or(json!({}));
                let a = At {
                    wide: format!("{}/items", at.wide),
                    narrow: format!("{}/items", at.narrow),
                    instance: format!("{}/0", at.instance),
                };
                self.walk(&wi, ni, a);
            }
        }
        // Objects.
        if allows(&tw, "object") {
            self.compare_objects(w, n, at);
        }
    }

    fn compare_objects(&mut self, w: &Map<String, Value>, n: &Map<String, Value>, at: &At) {
        let req = |s: &Map<String, Value>| -> BTreeSet<String> {
            required_names(s).map(str::to_owned).collect()
        };
        let (rw, rn) = (req(w), req(n));
        for (i, r) in n
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(r) = r.as_str() else { continue };
            if !rw.contains(r) {
                let a = At {
                    wide: format!("{}/required", at.wide),
                    narrow: format!("{}/required/{i}", at.narrow),
                    instance: format!("{}/{}", at.instance, escape(r)),
                };
                self.push(
                    self.name("required-property-added", "required-property-removed"),
                    Severity::Error,
                    &a,
                    format!("property {r} is now required"),
                );
            }
        }
        let _ = rn;
        let empty = Map::new();
        let pw = w
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let pn = n
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let aw = w
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        let an = n
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        for (name, ns) in pn {
            let inst = format!("{}/{}", at.instance, escape(name));
            let a_n = format!("{}/properties/{}", at.narrow, escape(name));
            match pw.get(name) {
                Some(ws) => {
                    let a = At {
                        wide: format!("{}/properties/{}", at.wide, escape(name)),
                        narrow: a_n,
                        instance: inst,
                    };
                    self.walk(ws, ns, a);
                }
                None if aw == Value::Bool(false) => {}
                None => {
                    let a = At {
                        wide: format!("{}/additionalProperties", at.wide),
                        narrow: a_n,
                        instance: inst,
                    };
                    self.walk(&aw, ns, a);
                }
            }
        }
        for (name, ws) in pw {
            if pn.contains_key(name) {
                continue;
            }
            let inst = format!("{}/{}", at.instance, escape(name));
            if an == Value::Bool(false) {
                let a = At {
                    wide: format!("{}/properties/{}", at.wide, escape(name)),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: inst,
                };
                self.push(
                    self.name(
                        "property-removed-from-closed-object",
                        "property-added-to-closed-object",
                    ),
                    Severity::Error,
                    &a,
                    format!("property {name} is no longer declared and the object is closed"),
                );
            } else if an.is_object() {
                let a = At {
                    wide: format!("{}/properties/{}", at.wide, escape(name)),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: inst,
                };
                self.walk(ws, &an, a);
            }
        }
        match (&aw, &an) {
            (a, Value::Bool(false)) if *a != Value::Bool(false) => {
                let at2 = At {
                    wide: format!("{}/additionalProperties", at.wide),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: at.instance.clone(),
                };
                self.push(
                    self.name(
                        "additional-properties-closed",
                        "additional-properties-opened",
                    ),
                    Severity::Error,
                    &at2,
                    "properties not declared are no longer accepted".into(),
                );
            }
            (Value::Bool(false), _) => {}
            (wa, na) if na.is_object() => {
                let at2 = At {
                    wide: format!("{}/additionalProperties", at.wide),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: format!("{}/additional_property", at.instance),
                };
                self.walk(wa, na, at2);
            }
            _ => {}
        }
    }
}

fn strip(s: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    s.iter()
        .filter(|(k, _)| !keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn merge(base: &Value, alt: &Value) -> Value {
    let mut m = as_object(base);
    for (k, v) in as_object(alt) {
        m.insert(k, v);
    }
    Value::Object(m)
}

const ANNOTATIONS: [&str; 10] = [
    "title",
    "description",
    "examples",
    "default",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$id",
];

fn is_trivial(s: &Map<String, Value>) -> bool {
    s.keys()
        .all(|k| ANNOTATIONS.contains(&k.as_str()) || k == "$defs")
}

/// Whether `wide` fits inside `narrow` with no error, comparing against the same roots.
fn compare_scratch(parent: &Walk<'_>, wide: &Value, narrow: &Value) -> bool {
    let mut w = Walk {
        wide_root: parent.wide_root,
        narrow_root: parent.narrow_root,
        wide_prefix: parent.wide_prefix,
        narrow_prefix: parent.narrow_prefix,
        direction: parent.direction,
        findings: Vec::new(),
        // A fresh visited set: the scratch walk starts again at the root pair.
        seen: BTreeSet::new(),
    };
    w.walk(
        wide,
        narrow,
        At {
            wide: String::new(),
            narrow: String::new(),
            instance: String::new(),
        },
    );
    w.findings.iter().all(|f| f.severity == Severity::Warning)
}
