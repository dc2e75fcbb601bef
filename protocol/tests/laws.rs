//! The laws spec chapters 02, 03 and 06 state, checked with proptest:
//! - merge is commutative, associative and idempotent;
//! - a Record's state depends only on the set of Mutations, not on order, batching or replays;
//! - the incremental merge equals a literal reading of the spec's Definition;
//! - checksums do not depend on insertion order;
//! - an HLC clock never goes back, under any mix of issue and merge;
//! - canonical JSON is a fixed point.

use std::collections::BTreeMap;

use driftless_protocol::canonical::to_canonical_string;
use driftless_protocol::checksum::SpaceChecksums;
use driftless_protocol::collection_schema::Policy;
use driftless_protocol::hlc::{Clock, Hlc};
use driftless_protocol::merge::{check_effect, Materialized, RecordState, Stamp};
use driftless_protocol::messages::{Effect, Mutation};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const AUTHORS: [&str; 3] = ["client-a", "client-b", "client-c"];
const FIELDS: [&str; 3] = ["a", "b", "c"];

fn policy_strategy() -> impl Strategy<Value = [Policy; 3]> {
    let one = prop_oneof![
        Just(Policy::Lww),
        Just(Policy::Counter),
        Just(Policy::AddWinsSet),
        Just(Policy::KeepBoth)
    ];
    [one.clone(), one.clone(), one]
}

fn policy_of(policies: &[Policy; 3]) -> impl Fn(&str) -> Policy + '_ {
    move |f: &str| {
        FIELDS
            .iter()
            .position(|x| *x == f)
            .map(|i| policies[i])
            .unwrap_or(Policy::Lww)
    }
}

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (-3i64..4).prop_map(Value::from),
        Just(json!(1.5)),
        "[xyz]{0,2}".prop_map(Value::from),
        Just(json!({"nested": [1, 2]})),
    ]
}

fn field_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(FIELDS.to_vec())
}

fn effect_strategy() -> impl Strategy<Value = Effect> {
    let object = || {
        prop::collection::btree_map(field_strategy(), value_strategy(), 0..3).prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>()
        })
    };
    let elements = prop::collection::vec((0i64..3).prop_map(Value::from), 1..3);
    prop_oneof![
        object().prop_map(|value| Effect::Put { value }),
        (object(), prop::collection::vec(field_strategy(), 0..2)).prop_map(|(set, unset)| {
            let unset = unset
                .into_iter()
                .filter(|f| !set.contains_key(*f))
                .map(|f| f.parse().unwrap())
                .collect();
            Effect::Patch { set, unset }
        }),
        Just(Effect::Delete {}),
        (field_strategy(), -5i64..6).prop_map(|(f, by)| Effect::Increment {
            field: f.parse().unwrap(),
            by
        }),
        (field_strategy(), elements.clone()).prop_map(|(f, elements)| Effect::SetAdd {
            field: f.parse().unwrap(),
            elements
        }),
        (field_strategy(), elements).prop_map(|(f, elements)| Effect::SetRemove {
            field: f.parse().unwrap(),
            elements
        }),
        (field_strategy(), value_strategy()).prop_map(|(f, value)| Effect::Resolve {
            field: f.parse().unwrap(),
            value
        }),
    ]
}

/// Mutations of one Record with unique Op IDs; physical times and counters collide often, so
/// ties are broken by node and Op ID.
fn mutations(policies: [Policy; 3], max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = (
        prop::sample::select(AUTHORS.to_vec()),
        0u64..4,
        0u16..3,
        effect_strategy(),
    );
    prop::collection::vec(one, 0..max).prop_map(move |raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (author, p, l, effect))| Mutation {
                op_id: format!("op-{i:06}").parse().unwrap(),
                seq: i as u64 + 1,
                collection: "things".parse().unwrap(),
                record_id: "r1".parse().unwrap(),
                hlc: Hlc::new(1_000 + p, l, author).unwrap(),
                schema_version: None,
                effect,
            })
            .filter(|m| check_effect(&m.effect, policy_of(&policies)).is_ok())
            .collect()
    })
}

fn state_of(ms: &[Mutation]) -> RecordState {
    let mut s = RecordState::default();
    for m in ms {
        s.apply(m);
    }
    s
}

fn with_mutations(max: usize) -> impl Strategy<Value = ([Policy; 3], Vec<Mutation>)> {
    policy_strategy().prop_flat_map(move |p| (Just(p), mutations(p, max)))
}

/// `n` replicas' Mutations: each holds a subset of one set of Mutations under one set of
/// Policies. An Op ID (and its Stamp) always names the same Mutation, as the protocol
/// requires ([ID-3], [ID-5], [IDEM-4]); two independent draws could give one Stamp two different bodies.
fn replicas(n: usize, max: usize) -> impl Strategy<Value = Vec<Vec<Mutation>>> {
    with_mutations(max)
        .prop_flat_map(move |(_, pool)| {
            let picks = prop::collection::vec(prop::collection::vec(any::<bool>(), n), pool.len());
            (Just(pool), picks)
        })
        .prop_map(move |(pool, picks)| {
            (0..n)
                .map(|r| {
                    pool.iter()
                        .zip(&picks)
                        .filter(|(_, p)| p[r])
                        .map(|(m, _)| m.clone())
                        .collect()
                })
                .collect()
        })
}

// ------------------------------------------------------------------------------------------
// A literal reading of the Definition in spec chapter 03, written without the semilattice.

fn is_delete(m: &Mutation) -> bool {
    matches!(m.effect, Effect::Delete {})
}

fn plus(base: Option<&Value>, sum: i64) -> Value {
    match base {
        Some(Value::Number(n)) if n.is_i64() => Value::from(n.as_i64().unwrap() + sum),
        Some(Value::Number(n)) => json!(n.as_f64().unwrap() + sum as f64),
        _ => Value::from(sum),
    }
}

fn definition(set: &[Mutation], policy: impl Fn(&str) -> Policy) -> Materialized {
    // 1. D and liveness.
    let d = set.iter().filter(|m| is_delete(m)).map(Stamp::of).max();
    let live: Vec<&Mutation> = set
        .iter()
        .filter(|m| d.as_ref().is_none_or(|d| Stamp::of(m) > *d))
        .collect();
    // 2. Existence.
    if !live.iter().any(|m| !is_delete(m)) {
        return Materialized::default();
    }
    let mut out = Materialized {
        exists: true,
        ..Materialized::default()
    };
    let mut names: Vec<String> = live.iter().flat_map(|m| m.effect.fields()).collect();
    names.sort();
    names.dedup();
    for f in names {
        let p = policy(&f);
        // 3. Assignments: (stamp, author, value).
        let mut assignments: Vec<(Stamp, String, Option<Value>)> = Vec::new();
        for m in &live {
            let s = Stamp::of(m);
            let author = m.hlc.node().to_owned();
            match &m.effect {
                Effect::Put { value } => match value.get(&f) {
                    Some(v) => assignments.push((s, author, Some(v.clone()))),
                    None if p == Policy::Lww => assignments.push((s, author, None)),
                    None => {}
                },
                Effect::Patch { set, unset } => {
                    if let Some(v) = set.get(&f) {
                        assignments.push((s, author, Some(v.clone())));
                    } else if unset.iter().any(|u| u.as_str() == f) {
                        assignments.push((s, author, None));
                    }
                }
                Effect::Resolve { field, value }
                    if field.as_str() == f && p == Policy::KeepBoth =>
                {
                    assignments.push((s, author, Some(value.clone())));
                }
                _ => {}
            }
        }
        let increments: Vec<(Stamp, i64)> = live
            .iter()
            .filter_map(|m| match &m.effect {
                Effect::Increment { field, by } if field.as_str() == f => Some((Stamp::of(m), *by)),
                _ => None,
            })
            .collect();
        let value = match p {
            // 4.
            Policy::Lww => {
                let a = assignments.iter().max_by(|x, y| x.0.cmp(&y.0));
                let after: Vec<i64> = increments
                    .iter()
                    .filter(|(s, _)| a.is_none_or(|a| *s > a.0))
                    .map(|(_, by)| *by)
                    .collect();
                let base = a.and_then(|a| a.2.as_ref());
                if after.is_empty() {
                    base.cloned()
                } else {
                    Some(plus(base, after.iter().sum()))
                }
            }
            // 5.
            Policy::Counter => (!increments.is_empty())
                .then(|| plus(None, increments.iter().map(|(_, b)| b).sum())),
            // 6.
            Policy::AddWinsSet => {
                let mut adds: BTreeMap<String, (Stamp, Value)> = BTreeMap::new();
                let mut removes: BTreeMap<String, Stamp> = BTreeMap::new();
                let mut named = false;
                for m in &live {
                    match &m.effect {
                        Effect::SetAdd { field, elements } if field.as_str() == f => {
                            named = true;
                            for e in elements {
                                let k = to_canonical_string(e);
                                if adds.get(&k).is_none_or(|(s, _)| Stamp::of(m) > *s) {
                                    adds.insert(k, (Stamp::of(m), e.clone()));
                                }
                            }
                        }
                        Effect::SetRemove { field, elements } if field.as_str() == f => {
                            named = true;
                            for e in elements {
                                let k = to_canonical_string(e);
                                if removes.get(&k).is_none_or(|s| Stamp::of(m) > *s) {
                                    removes.insert(k, Stamp::of(m));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                named.then(|| {
                    Value::Array(
                        adds.iter()
                            .filter(|(k, (s, _))| removes.get(*k).is_none_or(|r| s > r))
                            .map(|(_, (_, e))| e.clone())
                            .collect(),
                    )
                })
            }
            // 7.
            Policy::KeepBoth => {
                let z = live
                    .iter()
                    .filter(|m| matches!(&m.effect, Effect::Resolve { field, .. } if field.as_str() == f))
                    .map(|m| Stamp::of(m))
                    .max();
                let mut per_author: BTreeMap<&str, &(Stamp, String, Option<Value>)> =
                    BTreeMap::new();
                for a in &assignments {
                    if per_author.get(a.1.as_str()).is_none_or(|b| a.0 > b.0) {
                        per_author.insert(&a.1, a);
                    }
                }
                let mut siblings: Vec<_> = per_author
                    .values()
                    .filter(|a| z.as_ref().is_none_or(|z| a.0 >= *z))
                    .collect();
                siblings.sort_by(|x, y| x.0.cmp(&y.0));
                if siblings.len() > 1 {
                    out.conflicts.insert(
                        f.clone(),
                        siblings
                            .iter()
                            .map(|s| s.2.clone().unwrap_or(Value::Null))
                            .collect(),
                    );
                }
                siblings.last().and_then(|s| s.2.clone())
            }
        };
        if let Some(v) = value {
            out.value.insert(f, v);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_commutative(r in replicas(2, 12)) {
        let (sa, sb) = (state_of(&r[0]), state_of(&r[1]));
        let mut ab = sa.clone();
        ab.merge(&sb);
        let mut ba = sb.clone();
        ba.merge(&sa);
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn merge_is_associative(r in replicas(3, 12)) {
        let (sa, sb, sc) = (state_of(&r[0]), state_of(&r[1]), state_of(&r[2]));
        let mut left = sa.clone();
        left.merge(&sb);
        left.merge(&sc);
        let mut bc = sb.clone();
        bc.merge(&sc);
        let mut right = sa.clone();
        right.merge(&bc);
        prop_assert_eq!(left, right);
    }

    #[test]
    fn merge_is_idempotent((_, a) in with_mutations(10)) {
        let s = state_of(&a);
        let mut twice = s.clone();
        twice.merge(&s);
        prop_assert_eq!(&twice, &s);
        // Replaying every Mutation again changes nothing either.
        let mut replayed = s.clone();
        for m in &a {
            replayed.apply(m);
        }
        prop_assert_eq!(replayed, s);
    }

    /// [MERGE-1]: any order, any batching, with replays, gives the same state and value.
    #[test]
    fn state_depends_only_on_the_set(
        (policies, ms) in with_mutations(12),
        seed in any::<u64>(),
        split in 0usize..12,
    ) {
        let mut shuffled = ms.clone();
        // A deterministic shuffle from the seed (Fisher–Yates with an LCG).
        let mut x = seed;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        let cut = split.min(shuffled.len());
        let mut batched = state_of(&shuffled[..cut]);
        batched.merge(&state_of(&shuffled[cut..]));
        batched.merge(&state_of(&ms[..cut.min(ms.len())])); // replays
        let reference = state_of(&ms);
        prop_assert_eq!(&batched, &reference);
        let policy = policy_of(&policies);
        prop_assert_eq!(batched.materialize(&policy, &BTreeMap::new()), reference.materialize(&policy, &BTreeMap::new()));
    }

    /// The semilattice implementation equals the spec's Definition, read literally.
    #[test]
    fn merge_equals_the_spec_definition((policies, ms) in with_mutations(12)) {
        let policy = policy_of(&policies);
        let expected = definition(&ms, &policy);
        let actual = state_of(&ms).materialize(&policy, &BTreeMap::new());
        prop_assert_eq!(actual, expected, "policies {:?}", policies);
    }

    /// [INT-5]: checksums do not depend on the order Records are added in.
    #[test]
    fn checksums_are_independent_of_insertion_order(
        records in prop::collection::btree_map("[a-z0-9-]{1,8}", value_strategy(), 0..20),
        seed in any::<u64>(),
    ) {
        let rows: Vec<(String, Map<String, Value>)> = records
            .into_iter()
            .map(|(id, v)| (id, [("v".to_owned(), v)].into_iter().collect()))
            .collect();
        let mut forward = SpaceChecksums::default();
        for (id, v) in &rows {
            forward.add("things", id, v);
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut x = seed;
        for i in (1..order.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (x >> 33) as usize % (i + 1));
        }
        let mut shuffled = SpaceChecksums::default();
        for i in order {
            shuffled.add("things", &rows[i].0, &rows[i].1);
        }
        prop_assert_eq!(forward.buckets(), shuffled.buckets());
        prop_assert_eq!(forward.space_digest(), shuffled.space_digest());
    }

    /// [HLC-11]: whatever the wall clock does, every issued or merged value is greater than all
    /// before it, and a merged value is greater than the remote one.
    #[test]
    fn hlc_is_monotonic_under_send_and_receive(
        steps in prop::collection::vec((any::<bool>(), 0u64..50, 0u64..50, 0u16..4), 1..60),
    ) {
        let mut clock = Clock::new("node-1").unwrap();
        let mut last: Option<Hlc> = None;
        for (receive, wall, remote_p, remote_l) in steps {
            let next = if receive {
                let remote = Hlc::new(remote_p, if remote_l == 3 { u16::MAX } else { remote_l }, "node-2").unwrap();
                let merged = clock.merge(&remote, wall);
                prop_assert!(merged > remote);
                merged
            } else {
                clock.issue(wall)
            };
            if let Some(prev) = &last {
                prop_assert!(next > *prev, "{} then {}", prev, next);
            }
            prop_assert_eq!(next.to_string().parse::<Hlc>().unwrap(), next.clone());
            last = Some(next);
        }
    }

    /// Canonical JSON is a fixed point: parsing canonical text and canonicalising again gives
    /// the same bytes.
    #[test]
    fn canonical_json_is_a_fixed_point(v in json_strategy()) {
        let once = to_canonical_string(&v);
        let parsed: Value = serde_json::from_str(&once).unwrap();
        prop_assert_eq!(to_canonical_string(&parsed), once);
    }
}

fn json_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn spec_worked_examples_hold() {
    let m = |op: &str, hlc: &str, effect: Value| -> Mutation {
        serde_json::from_value(
            json!({"op_id": op, "seq": 1, "collection": "c", "record_id": "r",
            "hlc": hlc, "effect": effect}),
        )
        .unwrap()
    };
    let t0 = "019b76daa800";
    let t1 = "019b76daabe8";
    let run = |ms: &[Mutation], policy: &dyn Fn(&str) -> Policy| {
        let mut fwd = RecordState::default();
        ms.iter().for_each(|x| fwd.apply(x));
        let mut back = RecordState::default();
        ms.iter().rev().for_each(|x| back.apply(x));
        assert_eq!(fwd, back);
        fwd.materialize(policy, &BTreeMap::new())
    };
    let lww = |_: &str| Policy::Lww;
    // 1. Last writer wins.
    let r = run(
        &[
            m(
                "op-ex1-0001",
                &format!("{t0}-0000-client-a"),
                json!({"kind": "put", "value": {"title": "Draft", "pinned": true}}),
            ),
            m(
                "op-ex1-0002",
                &format!("{t0}-0001-client-b"),
                json!({"kind": "patch", "set": {"title": "Final"}}),
            ),
        ],
        &lww,
    );
    assert_eq!(
        Value::Object(r.value),
        json!({"title": "Final", "pinned": true})
    );
    let r = run(
        &[
            m(
                "op-ex1-0001",
                &format!("{t0}-0000-client-a"),
                json!({"kind": "put", "value": {"title": "Draft", "pinned": true}}),
            ),
            m(
                "op-ex1-0003",
                &format!("{t0}-0001-client-b"),
                json!({"kind": "put", "value": {"title": "Final"}}),
            ),
        ],
        &lww,
    );
    assert_eq!(Value::Object(r.value), json!({"title": "Final"}));
    // 2. Counter.
    let counter = |_: &str| Policy::Counter;
    let r = run(
        &[
            m(
                "op-ex2-0001",
                &format!("{t0}-0000-client-a"),
                json!({"kind": "increment", "field": "likes", "by": 2}),
            ),
            m(
                "op-ex2-0002",
                &format!("{t0}-0000-client-b"),
                json!({"kind": "increment", "field": "likes", "by": 5}),
            ),
            m(
                "op-ex2-0003",
                &format!("{t1}-0000-client-a"),
                json!({"kind": "increment", "field": "likes", "by": -1}),
            ),
        ],
        &counter,
    );
    assert_eq!(Value::Object(r.value), json!({"likes": 6}));
    // 3. Increment meets put: with and without the put.
    let put = m(
        "op-ex3-0001",
        &format!("{t0}-0005-client-a"),
        json!({"kind": "put", "value": {"count": 10}}),
    );
    let i1 = m(
        "op-ex3-0002",
        &format!("{t0}-0002-client-b"),
        json!({"kind": "increment", "field": "count", "by": 3}),
    );
    let i2 = m(
        "op-ex3-0003",
        &format!("{t1}-0000-client-b"),
        json!({"kind": "increment", "field": "count", "by": 4}),
    );
    assert_eq!(
        Value::Object(run(&[put, i1.clone(), i2.clone()], &lww).value),
        json!({"count": 14})
    );
    assert_eq!(
        Value::Object(run(&[i1, i2], &lww).value),
        json!({"count": 7})
    );
    // 4. Set.
    let set = |_: &str| Policy::AddWinsSet;
    let r = run(
        &[
            m(
                "op-ex4-0001",
                &format!("{t0}-0000-client-a"),
                json!({"kind": "set_add", "field": "tags", "elements": ["home", "urgent"]}),
            ),
            m(
                "op-ex4-0002",
                &format!("{t0}-0003-client-b"),
                json!({"kind": "set_remove", "field": "tags", "elements": ["urgent"]}),
            ),
            m(
                "op-ex4-0003",
                &format!("{t1}-0000-client-a"),
                json!({"kind": "set_add", "field": "tags", "elements": ["urgent"]}),
            ),
        ],
        &set,
    );
    assert_eq!(Value::Object(r.value), json!({"tags": ["home", "urgent"]}));
    // 5. Keep both, then resolve.
    let kb = |_: &str| Policy::KeepBoth;
    let a = m(
        "op-ex5-0001",
        &format!("{t0}-0000-client-a"),
        json!({"kind": "patch", "set": {"body": "Milk"}}),
    );
    let b = m(
        "op-ex5-0002",
        &format!("{t0}-0001-client-b"),
        json!({"kind": "patch", "set": {"body": "Oat milk"}}),
    );
    let r = run(&[a.clone(), b.clone()], &kb);
    assert_eq!(Value::Object(r.value), json!({"body": "Oat milk"}));
    assert_eq!(
        r.conflicts,
        BTreeMap::from([("body".to_owned(), vec![json!("Milk"), json!("Oat milk")])])
    );
    let resolve = m(
        "op-ex5-0003",
        &format!("{t1}-0000-client-a"),
        json!({"kind": "resolve", "field": "body", "value": "Oat milk, 2 litres"}),
    );
    let r = run(&[a, b, resolve], &kb);
    assert_eq!(
        Value::Object(r.value),
        json!({"body": "Oat milk, 2 litres"})
    );
    assert!(r.conflicts.is_empty());
    // 6. Delete against a concurrent update.
    let del = m(
        "op-ex6-0001",
        &format!("{t0}-0004-client-a"),
        json!({"kind": "delete"}),
    );
    let p1 = m(
        "op-ex6-0002",
        &format!("{t0}-0002-client-b"),
        json!({"kind": "patch", "set": {"done": true}}),
    );
    let p2 = m(
        "op-ex6-0003",
        &format!("{t1}-0000-client-b"),
        json!({"kind": "patch", "set": {"title": "Again"}}),
    );
    let r = run(&[del.clone(), p1.clone(), p2], &lww);
    assert_eq!(Value::Object(r.value), json!({"title": "Again"}));
    assert!(!run(&[del, p1], &lww).exists);
}
