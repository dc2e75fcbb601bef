//! Reading a push request's envelope (`[PUSH-6]`, `[PUSH-7]`): the fast path that keeps each
//! Mutation as the text it was sent as, and the tree path that names every error.

use super::*;

/// A push body as read by [`Service::parse_push`]: exactly the two members, each Mutation kept
/// as the text it was sent as.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PushText<'a> {
    client_id: String,
    #[serde(borrow)]
    mutations: Vec<&'a serde_json::value::RawValue>,
}

/// The `op_id` of a Mutation's text; every other member is skipped unread.
#[derive(Deserialize)]
pub(super) struct OpIdOf<'a> {
    #[serde(borrow)]
    op_id: Option<std::borrow::Cow<'a, str>>,
}

pub(super) fn mutation_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema = driftless_protocol::export::message_schemas()
            .into_iter()
            .find(|(n, _)| n == "mutation")
            .expect("the mutation schema exists")
            .1;
        jsonschema::validator_for(&schema).expect("the mutation schema compiles")
    })
}

impl<S: Storage> Service<S> {
    /// Checks the envelope of a push (`[PUSH-6]`, `[PUSH-7]`): everything that fails the whole
    /// request. Each Mutation with a valid `op_id` is judged on its own later, from its text.
    ///
    /// A well-formed body is read without building a JSON tree: each Mutation stays the text
    /// the Client sent, so that a byte-identical replay is recognised without parsing it. Any
    /// other body takes [`Self::parse_push_tree`], which names every error.
    pub(super) fn parse_push(&self, body: &[u8]) -> Answer<(ClientId, Vec<(OpId, String)>)> {
        if let Ok(push) = serde_json::from_slice::<PushText<'_>>(body) {
            if let Ok(client_id) = push.client_id.parse::<ClientId>() {
                self.check_batch_size(push.mutations.len())?;
                let items: Option<Vec<(OpId, String)>> = push
                    .mutations
                    .iter()
                    .map(|m| {
                        let head: OpIdOf<'_> = serde_json::from_str(m.get()).ok()?;
                        Some((head.op_id?.parse::<OpId>().ok()?, m.get().to_owned()))
                    })
                    .collect();
                if let Some(items) = items {
                    return Ok((client_id, items));
                }
            }
        }
        let (client_id, items) = self.parse_push_tree(parse_json(body)?)?;
        let items = items
            .into_iter()
            .map(|(op_id, m)| (op_id, m.to_string()))
            .collect();
        Ok((client_id, items))
    }

    pub(super) fn check_batch_size(&self, n: usize) -> Answer<()> {
        let max = self.config.limits.mutations_per_push_max;
        if n > max as usize {
            return Err(Problem::new(
                ProblemType::BatchTooLarge,
                format!("{n} mutations exceed the limit of {max} per push"),
            ));
        }
        Ok(())
    }

    pub(super) fn parse_push_tree(&self, body: Value) -> Answer<(ClientId, Vec<(OpId, Value)>)> {
        let Value::Object(mut obj) = body else {
            return Err(invalid_request(
                "",
                "expected an object",
                "the body must be a push-request object",
            ));
        };
        let mut problem = Problem::new(
            ProblemType::InvalidRequest,
            "the body is not a valid push-request",
        );
        let mut bad = false;
        for key in obj.keys() {
            if key != "client_id" && key != "mutations" {
                problem = problem.with_error(format!("/{key}"), "unknown member");
                bad = true;
            }
        }
        let client_id = match obj.remove("client_id") {
            Some(Value::String(s)) => s.parse::<ClientId>().ok(),
            _ => None,
        };
        if client_id.is_none() {
            problem = problem.with_error("/client_id", "a client ID is required");
            bad = true;
        }
        let mutations = match obj.remove("mutations") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(problem.with_error("/mutations", "expected an array of mutations"));
            }
        };
        self.check_batch_size(mutations.len())?;
        let mut items = Vec::with_capacity(mutations.len());
        for (i, m) in mutations.into_iter().enumerate() {
            match m
                .get("op_id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<OpId>().ok())
            {
                Some(op_id) => items.push((op_id, m)),
                None => {
                    problem = problem
                        .with_error(format!("/mutations/{i}/op_id"), "a valid op ID is required");
                    bad = true;
                }
            }
        }
        match client_id {
            Some(c) if !bad => Ok((c, items)),
            _ => Err(problem),
        }
    }
}
