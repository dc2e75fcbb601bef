//! Retries: same Op ID and body, Retry-After, backoff with full jitter (`[CLIENT-3]`, `[RETRY-*]`).

use super::*;

pub(super) fn same_op_id_and_body(k: &mut Kit) -> CaseResult {
    k.start()?;
    k.write(
        "likes",
        "l1",
        json!({"kind": "increment", "field": "n", "by": 1}),
    )?;
    k.layer.script(on("POST", "/push", 1, |_| Action::Drop));
    k.sync()?;
    let pushed = ops(&k.layer.pushes());
    ensure(pushed.len() >= 2, || {
        format!(
            "the Mutation was sent {} time(s) after a lost acknowledgement",
            pushed.len()
        )
    })?;
    for p in &pushed[1..] {
        ensure(p == &pushed[0], || {
            format!(
                "[CLIENT-3] the retry differs from the first attempt: {} vs {}",
                p, pushed[0]
            )
        })?;
    }
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!(
            "[PUSH-8] {} Mutations still pending after the retry was acknowledged",
            status["pending"]
        )
    })?;
    let v = k.server_value("likes", "l1")?;
    ensure(v == Some(json!({"n": 1})), || {
        format!("the increment was applied other than once: {v:?}")
    })
}

pub(super) fn retry_after_floor(k: &mut Kit) -> CaseResult {
    k.start()?;
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.layer.script(on("POST", "/push", 1, |_| {
        Action::Answer(Response::json(
            503,
            &problem(
                503,
                "kit-future-outage",
                "kit: a Problem type no Client knows",
            ),
            &[("Retry-After", "1")],
        ))
    }));
    k.sync()?;
    let log = k.layer.log();
    let refused = log
        .iter()
        .position(|e| e.status == 503)
        .ok_or_else(|| Verdict::Error("no push was refused".into()))?;
    let next = log
        .get(refused + 1)
        .ok_or_else(|| Verdict::Fail("[RETRY-3] nothing was sent after the 503".into()))?;
    let waited = next.at.duration_since(log[refused].at);
    ensure(waited >= Duration::from_millis(1000), || {
        format!(
            "[RETRY-2] the next request came {} ms after Retry-After: 1",
            waited.as_millis()
        )
    })
}

/// The gaps between consecutive failed pushes and the attempt after each.
pub(super) fn push_gaps(k: &Kit) -> Vec<u64> {
    let pushes = k.layer.pushes();
    pushes
        .windows(2)
        .filter(|w| w[0].status == 503)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis() as u64)
        .collect()
}

/// Slack for scheduling and loopback latency on a busy machine, in milliseconds.
pub(super) const SLACK_MS: u64 = 150;

pub(super) fn full_jitter(k: &mut Kit) -> CaseResult {
    let (cap, failures) = (60, 24);
    k.announce_backoff(cap, 1, cap);
    k.options(json!({"attempts_per_sync": failures + 5}));
    k.start()?;
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.layer.script(on("POST", "/push", failures, |_| {
        Action::Answer(Response::json(
            503,
            &problem(503, "unavailable", "kit"),
            &[],
        ))
    }));
    k.sync()?;
    let gaps = push_gaps(k);
    ensure(gaps.len() >= failures - 1, || {
        format!(
            "[RETRY-3] only {} retries after {failures} failures",
            gaps.len()
        )
    })?;
    // A busy machine can delay a wake-up now and then; a Client that waits past the bound does
    // so every time.
    let over = gaps.iter().filter(|g| **g > cap + SLACK_MS).count();
    ensure(over * 10 <= gaps.len(), || {
        format!(
            "[RETRY-1] {over} of {} delays exceed the announced bound {cap} ms: {gaps:?}",
            gaps.len()
        )
    })?;
    // Uniform draws from [0, 60]: half fall below 30 ms, and fewer than two of 24 has a
    // probability below 1e-5. A Client without jitter never waits less than the bound.
    let low = gaps.iter().filter(|g| **g < cap / 2).count();
    ensure(low >= 2, || {
        format!("[RETRY-1] only {low} of {} delays fall in the lower half of [0, {cap}] ms: not full jitter: {gaps:?}", gaps.len())
    })
}

pub(super) fn failure_count_reset(k: &mut Kit) -> CaseResult {
    // Bounds 10, 80, 640, then 3000 ms.
    k.announce_backoff(10, 8, 3000);
    k.options(json!({"attempts_per_sync": 10}));
    k.start()?;
    let unavailable = || {
        Action::Answer(Response::json(
            503,
            &problem(503, "unavailable", "kit"),
            &[],
        ))
    };
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.layer
        .script(on("POST", "/push", 3, move |_| unavailable()));
    k.sync()?;
    k.layer.clear();
    k.announce_backoff(10, 8, 3000);
    let before = k.layer.pushes().len();
    k.write("notes", "n2", json!({"kind": "put", "value": {}}))?;
    k.layer
        .script(on("POST", "/push", 3, move |_| unavailable()));
    k.sync()?;
    let all = push_gaps(k);
    let second = k.layer.pushes().len() - before;
    ensure(second >= 4, || {
        format!("expected four pushes in the second sync, saw {second}")
    })?;
    let gaps: Vec<u64> = all[all.len().saturating_sub(3)..].to_vec();
    // With the reset the bounds are 10, 80 and 640 ms; without it 3000 ms each, and all three
    // this short has a probability below 1%.
    let slack = 2 * SLACK_MS;
    let reset =
        gaps.len() == 3 && gaps[0] <= 10 + slack && gaps[1] <= 80 + slack && gaps[2] <= 640 + slack;
    ensure(reset, || {
        format!("[RETRY-7] after a success the delays were {gaps:?} ms; the policy's first bounds are 10, 80 and 640 ms")
    })
}

pub(super) fn not_retryable_not_resent(k: &mut Kit) -> CaseResult {
    k.start()?;
    k.write("notes", "n1", json!({"kind": "put", "value": {"t": 1}}))?;
    k.layer.script(on("POST", "/push", 1, |_| {
        Action::Answer(Response::json(
            413,
            &problem(413, "payload-too-large", "kit: too large"),
            &[],
        ))
    }));
    let _ = k.try_sync()?;
    let pushes = k.layer.pushes();
    let refused = &pushes
        .first()
        .ok_or_else(|| Verdict::Error("nothing was pushed".into()))?
        .body;
    let resent = pushes.iter().skip(1).filter(|p| &p.body == refused).count();
    ensure(resent == 0, || {
        format!("[RETRY-4] the request refused as payload-too-large was resent unchanged {resent} time(s)")
    })
}

pub(super) fn rate_limited_like_unavailable(k: &mut Kit) -> CaseResult {
    k.start()?;
    let op = k.write("notes", "n1", json!({"kind": "put", "value": {"t": 1}}))?;
    k.layer.script(on("POST", "/push", 1, |_| {
        Action::Answer(Response::json(
            429,
            &problem(429, "rate-limited", "kit: slow down"),
            &[("Retry-After", "1")],
        ))
    }));
    k.sync()?;
    let log = k.layer.log();
    let refused = log
        .iter()
        .position(|e| e.status == 429)
        .ok_or_else(|| Verdict::Error("no push was refused".into()))?;
    let next = log
        .get(refused + 1)
        .ok_or_else(|| Verdict::Fail("[RETRY-3] nothing was sent after the 429".into()))?;
    let waited = next.at.duration_since(log[refused].at);
    ensure(waited >= Duration::from_millis(1000), || {
        format!(
            "[RETRY-2] the next request came {} ms after 429 with Retry-After: 1",
            waited.as_millis()
        )
    })?;
    let sent = ops_of(&k.layer.pushes(), "n1");
    ensure(sent.len() >= 2, || {
        format!(
            "[RETRY-3] the write was sent {} time(s) around a 429",
            sent.len()
        )
    })?;
    ensure(sent.iter().all(|m| m["op_id"] == op.as_str()), || {
        format!("[CLIENT-3] after 429 the write was resent under another Op ID: {sent:?}")
    })?;
    same_body_per_op_id(&sent)?;
    let v = k.server_value("notes", "n1")?;
    ensure(v == Some(json!({"t": 1})), || {
        format!("after the 429 and the retry n1 on the Server is {v:?}")
    })
}

pub(super) fn slow_answer_unknown_fate(k: &mut Kit) -> CaseResult {
    let timeout_ms = 800;
    k.announce_backoff(5, 2, 20);
    k.options(json!({"attempts_per_sync": 5, "timeout_ms": timeout_ms}));
    k.start()?;
    let op = k.write(
        "likes",
        "l1",
        json!({"kind": "increment", "field": "n", "by": 1}),
    )?;
    // The first push reaches the Server only after the Client's timeout, and is applied then.
    k.layer.script(on("POST", "/push", 1, move |_| {
        Action::Slow(Duration::from_millis(3 * timeout_ms))
    }));
    let first = k.try_sync()?;
    if first["ok"] != true {
        // A Client may give up on this sync; the next one must settle the write.
        k.sync()?;
    }
    // Wait until the slow push was forwarded and answered, so the Server saw every attempt.
    let forwarded = k.layer.wait_for(Duration::from_secs(30), |log| {
        log.iter()
            .find(|e| e.method == "POST" && e.path.contains("/push"))
            .is_some_and(|e| e.status != 0)
    });
    if !forwarded {
        return Err(Verdict::Error("the slow push was never forwarded".into()));
    }
    let log = k.layer.log();
    let sent = ops_of(&k.layer.pushes(), "l1");
    ensure(sent.iter().all(|m| m["op_id"] == op.as_str()), || {
        format!(
            "[CLIENT-3] after a timed-out push the write was sent under another Op ID: {sent:?}"
        )
    })?;
    same_body_per_op_id(&sent)?;
    let asked = log.iter().any(|e| {
        e.path.contains("/manifest")
            && e.body["op_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == op.as_str()))
    });
    ensure(sent.len() >= 2 || asked, || {
        "[CLIENT-7] after a timed-out push the write was neither resent nor asked of the manifest"
            .into()
    })?;
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!(
            "[CLIENT-2] {} Mutations pending after the sync",
            status["pending"]
        )
    })?;
    let v = k.server_value("likes", "l1")?;
    ensure(v == Some(json!({"n": 1})), || {
        format!("[ID-5] the increment sent into a timeout was applied other than once: {v:?}")
    })
}
