//! Reading schemas: `$ref` resolution for the counterexample builder and the generator, the
//! `required` list, and the load-time check for `$ref` cycles without progress.

use super::*;

/// A schema as an object with its local `$ref`s (`#/...` in `root`) resolved: the target's
/// keywords, overlaid by the referring schema's siblings. Shared by the counterexamples and the
/// generator, which need an approximate reading only (every counterexample is validated).
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

pub(super) fn as_object(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        Value::Bool(false) => [("not".to_owned(), json!({}))].into_iter().collect(),
        _ => Map::new(),
    }
}

/// The names a schema's `required` lists (none if it has no such array).
pub(crate) fn required_names(s: &Map<String, Value>) -> impl Iterator<Item = &str> {
    s.get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The pointer of a subschema that reaches itself through `$ref`s and in-place applicators
/// (`allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`, `dependentSchemas`) with no keyword
/// between that consumes part of the instance: such a schema has no meaning to compare
/// (unreadable input). `None` if there is no such cycle or the references do not resolve.
pub(crate) fn progress_free_cycle(root: &Value) -> Option<String> {
    let registry = registry(root, URI_WIDE)?;
    let side = Side::new(root, "", URI_WIDE, &registry);
    let start = side.root_node(S::Wide)?;
    // Every subschema with its in-place successors.
    let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut stack = vec![start];
    let mut visited = HashSet::new();
    let walk = Walk {
        wide: side,
        narrow: Side::new(root, "", URI_WIDE, &registry),
        direction: Direction::Backward,
        findings: Vec::new(),
        seen: HashSet::new(),
        seen_log: Vec::new(),
        reported: HashSet::new(),
        steps: 0,
        depth: 0,
        approx: 0,
        exhausted: false,
        same_roots: true,
    };
    while let Some(node) = stack.pop() {
        let addr = node.v as *const Value as usize;
        if !visited.insert(addr) {
            continue;
        }
        let Some(m) = node.obj() else { continue };
        let mut next = Vec::new();
        for (k, v) in m {
            let sub: Vec<Vec<String>> = match (k.as_str(), v) {
                (
                    "properties" | "patternProperties" | "$defs" | "definitions"
                    | "dependentSchemas",
                    Value::Object(o),
                ) => o.keys().map(|x| vec![k.clone(), x.clone()]).collect(),
                ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(a)) => (0..a.len())
                    .map(|i| vec![k.clone(), i.to_string()])
                    .collect(),
                (
                    "not"
                    | "if"
                    | "then"
                    | "else"
                    | "items"
                    | "contains"
                    | "additionalProperties"
                    | "propertyNames"
                    | "unevaluatedItems"
                    | "unevaluatedProperties",
                    Value::Object(_),
                ) => vec![vec![k.clone()]],
                _ => Vec::new(),
            };
            for path in sub {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                if let Some(child) = walk.child(&node, &refs) {
                    let in_place = matches!(
                        refs[0],
                        "allOf"
                            | "anyOf"
                            | "oneOf"
                            | "not"
                            | "if"
                            | "then"
                            | "else"
                            | "dependentSchemas"
                    );
                    if in_place {
                        edges
                            .entry(addr)
                            .or_default()
                            .push(child.v as *const Value as usize);
                    }
                    next.push(child);
                }
            }
        }
        if let Some(Value::String(r)) = m.get("$ref") {
            if let Some(t) = walk.lookup(S::Wide, &node, r) {
                edges
                    .entry(addr)
                    .or_default()
                    .push(t.v as *const Value as usize);
                next.push(t);
            }
        }
        stack.extend(next);
    }
    // A cycle in the in-place graph (iterative depth-first search with colours).
    let mut colour: HashMap<usize, u8> = HashMap::new();
    for &start in edges.keys() {
        if colour.contains_key(&start) {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        colour.insert(start, 1);
        while let Some((at, i)) = path.last().copied() {
            let succ = edges.get(&at).map_or(&[][..], Vec::as_slice);
            if i < succ.len() {
                path.last_mut().expect("non-empty").1 += 1;
                let s = succ[i];
                match colour.get(&s) {
                    Some(1) => return walk.wide.pointers.get(&s).cloned().or(Some(String::new())),
                    Some(_) => {}
                    None => {
                        colour.insert(s, 1);
                        path.push((s, 0));
                    }
                }
            } else {
                colour.insert(at, 2);
                path.pop();
            }
        }
    }
    None
}
