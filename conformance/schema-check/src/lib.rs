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
//! This file loads the two files and runs the check; the structural comparison is in
//! `compare.rs`, the rules for Collection Schema documents in `document.rs`.

mod compare;
mod document;
mod example;
pub mod generate;
pub mod output;
mod regular;

use std::collections::BTreeSet;

use driftless_protocol::collection_schema::CollectionSchema;
use serde::Serialize;
use serde_json::Value;

pub use compare::compare;
// The counterexamples and the generator read schemas the way the comparison does.
pub(crate) use compare::{required_names, resolve_ref};
use document::{migrate_schema, open_root, sync_rules};

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
    /// Whether the finding stands only with a confirmed counterexample (the comparison
    /// over-approximated the wider side); without one it becomes `undecidable`.
    #[serde(skip)]
    pub(crate) suspected: bool,
    /// A value at `instance_path` that shows the finding, tried first as counterexample.
    #[serde(skip)]
    pub(crate) hint: Option<Value>,
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
    let value: Value = serde_json::from_str(text).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            LoadError(format!(
                "{name}: nested deeper than 128 levels at line {} column {}; not checked",
                e.line(),
                e.column()
            ))
        } else {
            LoadError(format!("{name}: not JSON: {e}"))
        }
    })?;
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
    if let Some(at) = compare::progress_free_cycle(&schema) {
        return Err(LoadError(format!(
            "{name}: the subschema at #{prefix}{at} refers to itself through $ref with no keyword between; it has no meaning"
        )));
    }
    Ok(Loaded {
        name: name.to_owned(),
        schema,
        prefix,
        document,
    })
}

/// Decided findings that get a counterexample per check (suspected ones always get a search).
pub const COUNTEREXAMPLES_MAX: usize = 20;

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
    // Compiled once per check, and only for the directions that have findings.
    let has = |d: Direction| findings.iter().any(|f| f.direction == d);
    let compiled =
        |s: &Value, wanted: bool| wanted.then(|| jsonschema::validator_for(s).ok()).flatten();
    let (back, fwd) = (has(Direction::Backward), has(Direction::Forward));
    let (migrated_v, new_v, opened_v) = (
        compiled(&migrated, back),
        compiled(&new.schema, back || fwd),
        compiled(&opened, fwd),
    );
    let mut shown = 0;
    for f in &mut findings {
        let (wide, narrow, wide_v, narrow_v, accepted_by) = match f.direction {
            Direction::Backward => (&migrated, &new.schema, &migrated_v, &new_v, "old"),
            Direction::Forward => (&new.schema, &opened, &new_v, &opened_v, "new"),
        };
        // Every suspected finding needs its instance; decided ones get one up to a bound, so
        // that a change touching thousands of properties stays fast.
        let wanted = f.suspected || shown < COUNTEREXAMPLES_MAX;
        f.counterexample = match (wide_v, narrow_v) {
            (Some(wv), Some(nv))
                if wanted && f.severity == Severity::Error && f.rule != "undecidable" =>
            {
                example::counterexample(wide, narrow, wv, nv, f)
            }
            _ => None,
        };
        f.accepted_by = f.counterexample.as_ref().map(|_| accepted_by);
        shown += usize::from(f.counterexample.is_some() && !f.suspected);
        if f.suspected && f.counterexample.is_none() {
            // Suspected, not shown: not decided, which fails closed (an error) unless the
            // caller allows it (`allow_undecidable`).
            f.rule = "undecidable";
            f.message = format!("{}; no instance shows a difference; not decided", f.message);
        }
    }
    // Pointers name what exists in the files (a migrated or opened schema has members the
    // file does not).
    for (loaded, pick) in [(old, 0), (new, 1)] {
        let file = match &loaded.document {
            Some(d) => serde_json::to_value(d).unwrap_or(Value::Null),
            None => loaded.schema.clone(),
        };
        for f in &mut findings {
            let p = if pick == 0 {
                &mut f.old_pointer
            } else {
                &mut f.new_pointer
            };
            *p = compare::existing(&file, p);
        }
    }
    // One report per place and reason.
    let mut seen = BTreeSet::new();
    findings.retain(|f| {
        seen.insert((
            f.rule,
            f.old_pointer.clone(),
            f.new_pointer.clone(),
            f.instance_path.clone(),
            f.message.clone(),
        ))
    });
    findings
}

/// Downgrades every `undecidable` finding to a warning (`--allow-undecidable`): the check then
/// fails only on what is decided breaking.
pub fn allow_undecidable(findings: &mut [Finding]) {
    for f in findings.iter_mut().filter(|f| f.rule == "undecidable") {
        f.severity = Severity::Warning;
    }
}

/// Whether findings allow the change: no error (an `undecidable` finding is an error unless
/// downgraded by [`allow_undecidable`]).
pub fn compatible(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.severity == Severity::Warning)
}
