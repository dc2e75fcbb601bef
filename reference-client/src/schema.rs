//! Collection Schemas on the Client (spec chapter 10): registering a version, and learning the
//! latest version of every Collection this Client holds, so that writes carry `schema_version`
//! (`[EVO-1]`) and views merge by the declared Field Policies (chapter 03, `[MERGE-3]`). A
//! Server that sends the schema summary of `[PULL-20]` is asked for a Collection's schemas only
//! when the summary names a version this Client does not hold.

use serde_json::Value;

use crate::store::Store;
use crate::{Client, ClientError};

impl Client {
    /// Learns the latest Collection Schema of every Collection in the Mirror or the Outbox, so
    /// that views merge by the right Policies and writes carry the version (`[EVO-1]`). Skipped
    /// once the Server has sent a schema summary in a pull response (`[PULL-20]`): from then on
    /// [`Client::refresh_named_schemas`] fetches only what changed.
    pub(crate) fn refresh_schemas(&mut self) -> Result<(), ClientError> {
        let space = self.cfg.space.clone();
        if self.store.meta(&summary_key(&space))?.is_some() {
            return Ok(());
        }
        let mut collections = self.store.mirror_collections(&space)?;
        collections.extend(self.store.outbox_collections(&space)?);
        collections.sort();
        collections.dedup();
        for c in collections {
            self.refresh_schema(&c)?;
        }
        Ok(())
    }

    /// Fetches the Collection Schemas of the Collections whose latest version in a pull
    /// response's summary (`[PULL-20]`) is not the one this Client holds, and notes that the
    /// Server sends the summary, so that an idle sync needs no schema request.
    pub(crate) fn refresh_named_schemas(
        &mut self,
        versions: &std::collections::BTreeMap<String, u32>,
    ) -> Result<(), ClientError> {
        let space = self.cfg.space.clone();
        for (c, v) in versions {
            let held = self.store.meta(&format!("schema:{space}:{c}"))?;
            if held.as_deref() != Some(v.to_string().as_str()) {
                self.refresh_schema(c)?;
            }
        }
        let key = summary_key(&space);
        if self.store.meta(&key)?.is_none() {
            self.store.tx(|tx| Store::set_meta(tx, &key, "1"))?;
        }
        Ok(())
    }

    /// Learns the latest Collection Schema of one Collection.
    fn refresh_schema(&mut self, c: &str) -> Result<(), ClientError> {
        let space = self.cfg.space.clone();
        let r = self.call(
            "GET",
            &format!("/v1/spaces/{space}/collections/{c}/schemas"),
            None,
        )?;
        self.check_auth(&r)?;
        if let Some(latest) = r.body["versions"]
            .as_array()
            .and_then(|v| v.last())
            .cloned()
        {
            let (doc_key, version_key) = (
                format!("schemadoc:{space}:{c}"),
                format!("schema:{space}:{c}"),
            );
            let version = latest["version"].as_u64().unwrap_or(0).to_string();
            self.store.tx(|tx| {
                Store::set_meta(tx, &doc_key, &latest.to_string())?;
                Store::set_meta(tx, &version_key, &version)
            })?;
        }
        Ok(())
    }

    /// Sends a Collection Schema version and stores it as this Client's latest.
    pub(crate) fn put_schema(&mut self, doc: &Value) -> Result<u16, ClientError> {
        let (c, v) = (
            doc["collection"].as_str().unwrap_or(""),
            doc["version"].as_u64().unwrap_or(0),
        );
        let path = format!("/v1/spaces/{}/collections/{c}/schemas/{v}", self.cfg.space);
        let r = self.call("PUT", &path, Some(doc))?;
        self.check_auth(&r)?;
        if r.status != 201 && r.status != 200 {
            return Err(ClientError::Refused(format!(
                "{} ({} {})",
                r.body["detail"].as_str().unwrap_or(""),
                r.status,
                r.body["type"].as_str().unwrap_or("")
            )));
        }
        let (key, doc_key, text) = (
            format!("schema:{}:{c}", self.cfg.space),
            format!("schemadoc:{}:{c}", self.cfg.space),
            doc.to_string(),
        );
        self.store.tx(|tx| {
            Store::set_meta(tx, &key, &v.to_string())?;
            Store::set_meta(tx, &doc_key, &text)
        })?;
        Ok(r.status)
    }
}

/// The meta key noting that the Server of `space` sends schema summaries in pull responses.
fn summary_key(space: &str) -> String {
    format!("schema_summary:{space}")
}
