//! The two sides being compared and the subschemas on them: a schema file's root with its
//! pointers and resolver ([`Side`]), one subschema in its scope ([`Node`]), the wide side's
//! conjunction ([`Conj`]), and the small schema-reading helpers the walk uses.

use super::*;

/// The longest prefix of `pointer` that exists in `root`.
pub(crate) fn existing(root: &Value, pointer: &str) -> String {
    let mut p = pointer.to_owned();
    while !p.is_empty() && root.pointer(&p).is_none() {
        p.truncate(p.rfind('/').unwrap_or(0));
    }
    p
}

pub(super) fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

pub(super) fn finite(m: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = m.get("const") {
        return Some(vec![c.clone()]);
    }
    m.get("enum").and_then(Value::as_array).cloned()
}

pub(super) fn has_ref(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            matches!(
                k.as_str(),
                "$ref" | "$dynamicRef" | "$id" | "$anchor" | "$dynamicAnchor"
            ) || has_ref(v)
        }),
        Value::Array(a) => a.iter().any(has_ref),
        _ => false,
    }
}

/// Keywords that apply subschemas in place; `unevaluated*` depends on them.
pub(super) const IN_PLACE: [&str; 8] = [
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "$ref",
    "$dynamicRef",
    "dependentSchemas",
];

pub(super) fn has_in_place(m: &Map<String, Value>) -> bool {
    IN_PLACE.iter().any(|k| m.contains_key(*k))
}

/// One side of the comparison: a schema file's root, its pointers and its resolver.
pub(super) struct Side<'r> {
    pub(super) root: &'r Value,
    pub(super) prefix: &'r str,
    pub(super) uri: &'static str,
    pub(super) registry: &'r Registry<'r>,
    pub(super) pointers: HashMap<usize, String>,
    pub(super) validators: HashMap<String, Option<jsonschema::Validator>>,
}

pub(super) fn index_pointers(v: &Value, at: String, out: &mut HashMap<usize, String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                index_pointers(c, format!("{at}/{}", escape(k)), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                index_pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.insert(v as *const Value as usize, at);
}

/// Percent-encodes a JSON pointer for a URI fragment.
pub(super) fn fragment(pointer: &str) -> String {
    let mut out = String::new();
    for b in pointer.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl<'r> Side<'r> {
    pub(super) fn new(
        root: &'r Value,
        prefix: &'r str,
        uri: &'static str,
        registry: &'r Registry<'r>,
    ) -> Self {
        let mut pointers = HashMap::new();
        index_pointers(root, String::new(), &mut pointers);
        Side {
            root,
            prefix,
            uri,
            registry,
            pointers,
            validators: HashMap::new(),
        }
    }

    pub(super) fn root_node(&self, side: S) -> Option<Node<'r>> {
        let base = referencing::uri::from_str(self.uri).ok()?;
        let res = self.registry.resolver(base);
        let res = res
            .in_subresource(ResourceRef::new(self.root, Draft::Draft202012))
            .ok()?;
        Some(Node {
            v: self.root,
            ptr: String::new(),
            res,
            skip: 0,
            side,
        })
    }

    /// Whether the subschema at `ptr` accepts `v`; `None` if it cannot be compiled.
    pub(super) fn accepts(&mut self, ptr: &str, v: &Value) -> Option<bool> {
        let (uri, registry) = (self.uri, self.registry);
        let validator = self.validators.entry(ptr.to_owned()).or_insert_with(|| {
            jsonschema::options()
                .with_registry(registry)
                .build(&json!({ "$ref": format!("{uri}#{}", fragment(ptr)) }))
                .ok()
        });
        validator.as_ref().map(|val| val.is_valid(v))
    }
}

/// A subschema with the resolver of its scope.
#[derive(Clone)]
pub(super) struct Node<'r> {
    pub(super) v: &'r Value,
    pub(super) ptr: String,
    pub(super) res: Resolver<'r>,
    pub(super) skip: u8,
    /// The file it is in (a narrow `if` joins the wide side as a condition).
    pub(super) side: S,
}

impl Node<'_> {
    pub(super) fn obj(&self) -> Option<&Map<String, Value>> {
        self.v.as_object()
    }

    pub(super) fn get(&self, k: &str) -> Option<&Value> {
        self.v.as_object().and_then(|m| m.get(k))
    }

    /// The pointer of keyword `k` of this subschema if it has it, else of the subschema.
    pub(super) fn at(&self, k: &str) -> String {
        if self.get(k).is_some() {
            format!("{}/{}", self.ptr, escape(k))
        } else {
            self.ptr.clone()
        }
    }

    pub(super) fn key(&self) -> (usize, u8) {
        (
            self.v as *const Value as usize,
            self.skip | ((self.side as u8) << 7),
        )
    }
}

/// The wide side: instances valid under every node and of a type in `only`.
#[derive(Clone)]
pub(super) struct Conj<'r> {
    pub(super) nodes: Vec<Node<'r>>,
    pub(super) only: u8,
    /// Where the wide side is when it has no node (it accepts everything there).
    pub(super) at: String,
}

impl Conj<'_> {
    pub(super) fn ptr(&self) -> String {
        self.nodes
            .iter()
            .rev()
            .find(|w| w.side == S::Wide)
            .map_or(self.at.clone(), |w| w.ptr.clone())
    }
}

pub(super) type Key = (Vec<(usize, u8)>, u8, (usize, u8));

/// Which side a subschema belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum S {
    Wide,
    Narrow,
}

/// Whether no instance can match two of these (resolved) alternatives, as far as types,
/// `const`/`enum` and a required discriminator property show; `false` means "not shown".
pub(super) fn disjoint_maps(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let (ta, tb) = (shallow_bits(a), shallow_bits(b));
    if ta & tb == 0 {
        return true;
    }
    if let (Some(va), Some(vb)) = (finite(a), finite(b)) {
        let canonical = |v: &Value| driftless_protocol::canonical::to_canonical_string(v);
        let vb: BTreeSet<String> = vb.iter().map(canonical).collect();
        if !va.iter().any(|v| vb.contains(&canonical(v))) {
            return true;
        }
    }
    // A discriminator: both accept only objects, both require a property, and its values differ.
    if !(ta == OBJ && tb == OBJ) {
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
            (Some(pa), Some(pb)) => disjoint_maps(&pa, &pb),
            _ => false,
        })
}

pub(super) fn shallow_bits(m: &Map<String, Value>) -> u8 {
    let mut b = schema_type_bits(m);
    if let Some(vs) = finite(m) {
        b &= vs.iter().fold(0, |acc, v| acc | value_bits(v));
    }
    b
}
