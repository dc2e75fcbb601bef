//! HLC stamps, merging the Server clock and the bounded step back (`[HLC-*]`).

use super::*;

/// (physical ms, logical, node) of an HLC's text.
pub(super) fn hlc_parts(h: &str) -> Option<(u64, u64, &str)> {
    let mut parts = h.splitn(3, '-');
    let p = u64::from_str_radix(parts.next()?, 16).ok()?;
    let l = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((p, l, parts.next()?))
}

pub(super) fn hlc_stamps(k: &mut Kit) -> CaseResult {
    k.start()?;
    for i in 0..3 {
        k.write(
            "notes",
            &format!("a{i}"),
            json!({"kind": "put", "value": {}}),
        )?;
    }
    k.sync()?;
    k.kill();
    k.start()?;
    for i in 0..3 {
        k.write(
            "notes",
            &format!("b{i}"),
            json!({"kind": "put", "value": {}}),
        )?;
    }
    k.sync()?;
    let sent = ops(&k.layer.pushes());
    let mut seen = std::collections::BTreeSet::new();
    let mut last: Option<(u64, String)> = None;
    for m in &sent {
        let (seq, hlc, op) = (
            m["seq"].as_u64().unwrap_or(0),
            m["hlc"].as_str().unwrap_or(""),
            m["op_id"].as_str().unwrap_or(""),
        );
        let (_, _, node) = hlc_parts(hlc)
            .ok_or_else(|| Verdict::Fail(format!("[HLC-11] {hlc:?} is not an HLC")))?;
        ensure(node == k.client_id, || {
            format!(
                "[HLC-11] the HLC node {node:?} is not the Client ID {:?}",
                k.client_id
            )
        })?;
        ensure(seen.insert(op.to_owned()), || {
            format!("[ID-3] Op ID {op} was used for two Mutations")
        })?;
        if let Some((s, h)) = &last {
            ensure(seq == s + 1, || format!("[ID-4] seq {seq} follows {s}"))?;
            ensure(hlc > h.as_str(), || {
                format!("[HLC-11] HLC {hlc} is not greater than the earlier {h}")
            })?;
        } else {
            ensure(seq == 1, || format!("[ID-4] the first seq is {seq}, not 1"))?;
        }
        last = Some((seq, hlc.to_owned()));
    }
    ensure(sent.len() == 6, || {
        format!("expected 6 Mutations sent, saw {}", sent.len())
    })
}

pub(super) fn merges_server_clock(k: &mut Kit) -> CaseResult {
    let ahead_ms = 30_000u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let server_clock = format!("{:012x}-0007-server", now + ahead_ms);
    let clock = server_clock.clone();
    k.layer.script(on("GET", "/pull", usize::MAX, move |_| {
        let clock = clock.clone();
        Action::Rewrite(Box::new(move |r: &mut Response| {
            r.set_header("Driftless-Clock", &clock);
            let mut b = r.json_body();
            if b.is_object() {
                b["server_clock"] = json!(clock);
                r.body = b.to_string().into_bytes();
            }
        }))
    }));
    k.start()?;
    k.sync()?;
    k.layer.clear();
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.sync()?;
    let sent = ops(&k.layer.pushes());
    let hlc = sent
        .first()
        .and_then(|m| m["hlc"].as_str())
        .unwrap_or("")
        .to_owned();
    let (p, _, _) =
        hlc_parts(&hlc).ok_or_else(|| Verdict::Fail(format!("no HLC sent: {hlc:?}")))?;
    ensure(p >= now + ahead_ms, || {
        format!("[HLC-5] after a Driftless-Clock of {server_clock} the Client stamped {hlc}")
    })
}

pub(super) fn step_back_bounded_by_applied(k: &mut Kit) -> CaseResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Within the reference Server's skew bound (60 s): Mutations stamped after it are applied.
    let ahead_ms = 30_000u64;
    let ahead = format!("{:012x}-0000-server", now + ahead_ms);
    k.layer.script(on("GET", "/pull", usize::MAX, move |_| {
        let ahead = ahead.clone();
        Action::Rewrite(Box::new(move |r: &mut Response| {
            r.set_header("Driftless-Clock", &ahead)
        }))
    }));
    k.start()?;
    k.sync()?;
    k.layer.clear();
    k.write("notes", "a", json!({"kind": "put", "value": {"v": 1}}))?;
    k.sync()?;
    // Every HLC of the Client's that the Server answered as applied.
    let mut applied: Vec<(u64, u64)> = Vec::new();
    for p in k.layer.pushes() {
        let results = p.answer["results"].as_array().cloned().unwrap_or_default();
        for (m, r) in ops(std::slice::from_ref(&p)).iter().zip(results) {
            let ok = r["status"] == "applied" || r["original"]["status"] == "applied";
            if let (true, Some((pm, l, _))) = (ok, hlc_parts(m["hlc"].as_str().unwrap_or(""))) {
                applied.push((pm, l));
            }
        }
    }
    let top = applied.iter().max().copied().ok_or_else(|| {
        Verdict::Error("no Mutation of the Client was applied; nothing to step back from".into())
    })?;
    if top.0 < now + ahead_ms {
        return Err(Verdict::Error(format!(
            "the Client's applied Stamp {top:?} is not ahead of the wall clock ([HLC-5] is checked elsewhere); nothing to check"
        )));
    }
    // The next push is refused as clock-skew with a Server clock an hour behind: stepping back
    // to it alone would stamp the re-issued write at the wall clock, below the applied one.
    let below = format!("{:012x}-0000-server", now.saturating_sub(3_600_000));
    k.layer.clear();
    let clock = below.clone();
    k.layer.script(on("POST", "/push", 1, move |e| {
        let results: Vec<Value> = e.body["mutations"].as_array().into_iter().flatten().map(|m| {
            json!({"status": "rejected", "op_id": m["op_id"], "problem": problem(422, "clock-skew", "kit: ahead of the Server's clock")})
        }).collect();
        Action::Answer(Response::json(
            200,
            &json!({"server_clock": clock, "results": results}),
            &[("Driftless-Clock", clock.as_str())],
        ))
    }));
    let skewed = k.write("notes", "b", json!({"kind": "put", "value": {"v": 2}}))?;
    let _ = k.try_sync()?;
    let reissued: Vec<Value> = ops_of(&k.layer.pushes(), "b")
        .into_iter()
        .filter(|m| m["op_id"] != skewed.as_str())
        .collect();
    let Some(m) = reissued.first() else {
        return Err(Verdict::Skip(
            "the Client did not re-issue after clock-skew ([HLC-9] is a SHOULD); no step back to check".into(),
        ));
    };
    let hlc = m["hlc"].as_str().unwrap_or("");
    let (p, l, _) =
        hlc_parts(hlc).ok_or_else(|| Verdict::Fail(format!("[HLC-11] {hlc:?} is not an HLC")))?;
    ensure((p, l) > top, || {
        format!(
            "[HLC-12] after clock-skew with Driftless-Clock {below} the re-issued write was stamped {hlc}, not above the Client's applied Stamp {:012x}-{:04x}",
            top.0, top.1
        )
    })
}
