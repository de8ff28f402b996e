//! Memory's store on PostgreSQL: the documents (messages and saved memories share one id
//! sequence, as in sled), the embedding queue any node drains, the vectors, and the archive
//! `valor memory export` / `import` and `valor store migrate` move.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use valor_memory::port::{
    DocumentListener, DocumentStore, EmbeddingStore, FEED_BUFFER, Feed, MemoryArchive,
};
use valor_protocol::learnings::LearningRecord;
use valor_protocol::memory::{MAX_DOCUMENT_ID, validate};
use valor_protocol::records::{Document, MemoryKind, MemoryRecord, StoredMessage, StoredVector};
use valor_protocol::{Role, StoreFailure};

use crate::error::{PgError, decode};
use crate::pool::{PgStore, db_i64, from_db};

/// A document row's columns, in the order [`document_of`] and [`message_of`] read them.
pub(crate) const DOCUMENT_COLUMNS: &str =
    "id, kind, chat_id, at_ms, title, text, url, role, user_id, username, source";

/// Rows a feed reads per query (keyset pages: no cursor held open across the walk).
const FEED_PAGE: i64 = 500;

/// How long a node holds the queued documents it took to embed (a dead node's go back).
const EMBED_CLAIM_SECS: f64 = 120.0;

/// The dimension the HNSW index covers (all-MiniLM-L6-v2's).
pub const INDEXED_DIMENSIONS: usize = 384;

pub(crate) fn role_text(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    }
}

fn role_of(text: Option<&str>) -> Role {
    match text {
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        _ => Role::User,
    }
}

fn kind_of(row: &Row) -> Result<MemoryKind, PgError> {
    let byte: i16 = row.try_get(1)?;
    u8::try_from(byte)
        .ok()
        .and_then(MemoryKind::from_byte)
        .ok_or(PgError::Corrupt {
            what: "document kind",
            why: byte.to_string(),
        })
}

pub(crate) fn document_of(row: &Row) -> Result<Document, PgError> {
    Ok(Document {
        id: from_db(row.try_get(0)?),
        kind: kind_of(row)?,
        chat_id: row.try_get(2)?,
        at_ms: from_db(row.try_get(3)?),
        title: row.try_get(4)?,
        text: row.try_get(5)?,
        url: row.try_get(6)?,
    })
}

pub(crate) fn message_of(row: &Row) -> Result<StoredMessage, PgError> {
    Ok(StoredMessage {
        seq: from_db(row.try_get(0)?),
        chat_id: row.try_get::<_, Option<i64>>(2)?.unwrap_or(0),
        at_ms: from_db(row.try_get(3)?),
        text: row.try_get(5)?,
        role: role_of(row.try_get::<_, Option<&str>>(7)?),
        user_id: row.try_get(8)?,
        username: row.try_get(9)?,
        source: row.try_get(10)?,
    })
}

fn invalid(why: impl std::fmt::Display) -> PgError {
    PgError::Invalid(why.to_string())
}

/// Keeps the id sequence past `id` (an import keeps its ids; later ones come after).
pub(crate) async fn reserve_through<C: GenericClient>(client: &C, id: u64) -> Result<(), PgError> {
    if id > MAX_DOCUMENT_ID {
        return Err(invalid(format!(
            "the id is above the largest a document may have ({MAX_DOCUMENT_ID})"
        )));
    }
    client
        .execute(
            "SELECT setval('document_ids', $1) WHERE $1 > (SELECT last_value FROM document_ids)",
            &[&db_i64(id)],
        )
        .await?;
    Ok(())
}

pub(crate) async fn next_document_id<C: GenericClient>(client: &C) -> Result<u64, PgError> {
    let id: i64 = client
        .query_one("SELECT nextval('document_ids')", &[])
        .await?
        .get(0);
    Ok(from_db(id))
}

/// Writes a message with its seq (overwriting that id's message), queues it for embedding and
/// counts it on its chat.
pub(crate) async fn write_message<C: GenericClient>(
    client: &C,
    message: &StoredMessage,
) -> Result<(), PgError> {
    let document = Document::from(message.clone());
    client
        .execute(
            "INSERT INTO documents (id, kind, chat_id, at_ms, title, text, url, role, user_id, username, source)
             VALUES ($1, 0, $2, $3, $4, $5, NULL, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET kind = 0, chat_id = $2, at_ms = $3, title = $4,
               text = $5, url = NULL, role = $6, user_id = $7, username = $8, source = $9",
            &[
                &db_i64(message.seq),
                &message.chat_id,
                &db_i64(message.at_ms),
                &document.title,
                &message.text,
                &role_text(message.role),
                &message.user_id,
                &message.username,
                &message.source,
            ],
        )
        .await?;
    client
        .execute(
            "INSERT INTO embed_queue (id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&db_i64(message.seq)],
        )
        .await?;
    client
        .execute(
            "INSERT INTO chats (chat_id, first_at_ms, last_at_ms, messages) VALUES ($1, $2, $2, 1)
             ON CONFLICT (chat_id) DO UPDATE SET messages = chats.messages + 1,
               last_at_ms = GREATEST(chats.last_at_ms, $2)",
            &[&message.chat_id, &db_i64(message.at_ms)],
        )
        .await?;
    Ok(())
}

/// Writes a saved memory (validated; id 0 gets a new one) and queues it for embedding.
pub(crate) async fn write_memory<C: GenericClient>(
    client: &C,
    mut record: MemoryRecord,
) -> Result<MemoryRecord, PgError> {
    validate(&record).map_err(invalid)?;
    if record.kind == MemoryKind::Message {
        return Err(invalid("a message is not saved as a memory"));
    }
    if record.id == 0 {
        record.id = next_document_id(client).await?;
    } else {
        reserve_through(client, record.id).await?;
    }
    client
        .execute(
            "INSERT INTO documents (id, kind, chat_id, at_ms, title, text, url)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET kind = $2, chat_id = $3, at_ms = $4, title = $5,
               text = $6, url = $7, role = NULL, user_id = NULL, username = NULL, source = NULL",
            &[
                &db_i64(record.id),
                &i16::from(record.kind.byte()),
                &record.chat_id,
                &db_i64(record.at_ms),
                &record.title,
                &record.text,
                &record.url,
            ],
        )
        .await?;
    client
        .execute(
            "INSERT INTO embed_queue (id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&db_i64(record.id)],
        )
        .await?;
    Ok(record)
}

/// Takes a document out of search: its row, vector and queue entry.
pub(crate) async fn forget_document<C: GenericClient>(client: &C, id: u64) -> Result<(), PgError> {
    let id = db_i64(id);
    client
        .execute("DELETE FROM documents WHERE id = $1", &[&id])
        .await?;
    client
        .execute("DELETE FROM vectors WHERE id = $1", &[&id])
        .await?;
    client
        .execute("DELETE FROM embed_queue WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// Walks a table in pages of [`FEED_PAGE`] by id, decoding each row, into a bounded feed.
/// `query` takes the last id seen as `$1` and the page size as `$2`, and returns id first.
fn feed<T, F>(store: &PgStore, query: &'static str, decode_row: F) -> Feed<T>
where
    T: Send + 'static,
    F: Fn(&Row) -> Result<T, PgError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(FEED_BUFFER);
    let store = store.clone();
    tokio::spawn(async move {
        let mut after: i64 = -1;
        loop {
            // The connection goes back to the pool before the page is sent: a slow reader
            // holds no connection.
            let page = match store.client().await {
                Ok(client) => client.query(query, &[&after, &FEED_PAGE]).await,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let rows = match page {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(PgError::from(e).into())).await;
                    return;
                }
            };
            let full = rows.len() as i64 == FEED_PAGE;
            for row in &rows {
                after = row.get(0);
                let item = decode_row(row).map_err(StoreFailure::from);
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            if !full {
                return;
            }
        }
    });
    rx
}

#[async_trait]
impl DocumentStore for PgStore {
    fn follow_documents(&self, listener: DocumentListener) {
        self.set_listener(listener);
    }

    fn document_feed(&self) -> Feed<Document> {
        feed(
            self,
            "SELECT id, kind, chat_id, at_ms, title, text, url FROM documents
             WHERE id > $1 ORDER BY id LIMIT $2",
            document_of,
        )
    }

    async fn documents(&self, ids: &[u64]) -> Result<Vec<Option<Document>>, StoreFailure> {
        let wanted: Vec<i64> = ids.iter().map(|id| db_i64(*id)).collect();
        let client = self.client().await?;
        let rows = (client.query(
            &format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ANY($1)"),
            &[&wanted],
        ))
        .await
        .map_err(PgError::from)?;
        let mut found = std::collections::HashMap::new();
        for row in &rows {
            let document = document_of(row)?;
            found.insert(document.id, document);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn recent_messages(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            &format!(
                "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE chat_id = $1 AND kind = 0
                 ORDER BY id DESC LIMIT $2"
            ),
            &[&chat_id, &db_i64(limit as u64)],
        ))
        .await
        .map_err(PgError::from)?;
        let mut messages = rows
            .iter()
            .map(message_of)
            .collect::<Result<Vec<_>, PgError>>()?;
        messages.reverse();
        Ok(messages)
    }

    async fn latest_memory(
        &self,
        kind: MemoryKind,
        chat_id: i64,
    ) -> Result<Option<MemoryRecord>, StoreFailure> {
        let client = self.client().await?;
        let row = (client.query_opt(
            &format!(
                "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE chat_id = $1 AND kind = $2
                 ORDER BY id DESC LIMIT 1"
            ),
            &[&chat_id, &i16::from(kind.byte())],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(row.as_ref().map(document_of).transpose()?)
    }

    async fn save_memories(
        &self,
        records: Vec<MemoryRecord>,
    ) -> Result<Vec<MemoryRecord>, StoreFailure> {
        for record in &records {
            validate(record).map_err(|e| StoreFailure::Invalid(e.to_string()))?;
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        let mut saved = Vec::with_capacity(records.len());
        for record in records {
            saved.push(write_memory(&transaction, record).await?);
        }
        transaction.commit().await.map_err(PgError::from)?;
        self.announce(&saved);
        Ok(saved)
    }

    async fn all_learnings(&self) -> Result<Vec<LearningRecord>, StoreFailure> {
        Ok(crate::learn::all_learnings(self).await?)
    }
}

fn stored_vector(row: &Row, from: usize) -> Result<StoredVector, PgError> {
    Ok(StoredVector {
        model_id: row.try_get(from)?,
        vector: row.try_get(from + 1)?,
    })
}

fn ids_of(rows: &[Row]) -> Vec<u64> {
    rows.iter().map(|row| from_db(row.get(0))).collect()
}

#[async_trait]
impl EmbeddingStore for PgStore {
    async fn queued_count(&self) -> Result<u64, StoreFailure> {
        let client = self.client().await?;
        let count: i64 = (client.query_one("SELECT count(*) FROM embed_queue", &[]))
            .await
            .map_err(PgError::from)?
            .get(0);
        Ok(from_db(count))
    }

    /// Takes up to `limit` queued ids for this node for [`EMBED_CLAIM_SECS`]: ids another
    /// node took meanwhile are skipped, ids this node took are given again.
    async fn queued_for_embedding(&self, limit: usize) -> Result<Vec<u64>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "WITH picked AS (
               SELECT id FROM embed_queue
               WHERE claimed_by IS NULL OR claimed_by = $2 OR claimed_until < clock_timestamp()
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE embed_queue q SET claimed_by = $2,
               claimed_until = clock_timestamp() + $3 * interval '1 second'
             FROM picked WHERE q.id = picked.id RETURNING q.id",
            &[&db_i64(limit as u64), &self.holder(), &EMBED_CLAIM_SECS],
        ))
        .await
        .map_err(PgError::from)?;
        let mut ids = ids_of(&rows);
        ids.sort_unstable();
        Ok(ids)
    }

    async fn queue_for_embedding(&self, ids: Vec<u64>) -> Result<(), StoreFailure> {
        let ids: Vec<i64> = ids.into_iter().map(db_i64).collect();
        let client = self.client().await?;
        (client.execute(
            "INSERT INTO embed_queue (id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING",
            &[&ids],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    async fn unqueue(&self, ids: Vec<u64>) -> Result<(), StoreFailure> {
        let ids: Vec<i64> = ids.into_iter().map(db_i64).collect();
        let client = self.client().await?;
        (client.execute("DELETE FROM embed_queue WHERE id = ANY($1)", &[&ids]))
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    async fn requeue_missing(&self) -> Result<Vec<u64>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            "INSERT INTO embed_queue (id)
             SELECT d.id FROM documents d
             WHERE NOT EXISTS (SELECT 1 FROM vectors v WHERE v.id = d.id)
               AND NOT EXISTS (SELECT 1 FROM embed_queue q WHERE q.id = d.id)
             ON CONFLICT DO NOTHING RETURNING id",
            &[],
        ))
        .await
        .map_err(PgError::from)?;
        let mut ids = ids_of(&rows);
        ids.sort_unstable();
        Ok(ids)
    }

    async fn put_vectors(&self, vectors: Vec<(u64, StoredVector)>) -> Result<(), StoreFailure> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        for (id, stored) in &vectors {
            let indexed = (stored.vector.len() == INDEXED_DIMENSIONS)
                .then(|| pgvector::HalfVector::from_f32_slice(&stored.vector));
            (transaction.execute(
                "INSERT INTO vectors (id, model_id, raw, embedding, chat_id, kind)
                 SELECT $1, $2, $3, $4, d.chat_id, d.kind
                 FROM (SELECT 1) one LEFT JOIN documents d ON d.id = $1
                 ON CONFLICT (id) DO UPDATE SET model_id = $2, raw = $3, embedding = $4,
                   chat_id = excluded.chat_id, kind = excluded.kind",
                &[&db_i64(*id), &stored.model_id, &stored.vector, &indexed],
            ))
            .await
            .map_err(PgError::from)?;
            (transaction.execute("DELETE FROM embed_queue WHERE id = $1", &[&db_i64(*id)]))
                .await
                .map_err(PgError::from)?;
        }
        transaction.commit().await.map_err(PgError::from)?;
        Ok(())
    }

    async fn vector(&self, id: u64) -> Result<Option<StoredVector>, StoreFailure> {
        let client = self.client().await?;
        let row = (client.query_opt(
            "SELECT id, model_id, raw FROM vectors WHERE id = $1",
            &[&db_i64(id)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(row.as_ref().map(|r| stored_vector(r, 1)).transpose()?)
    }

    fn vector_feed(&self) -> Feed<(u64, StoredVector)> {
        feed(
            self,
            "SELECT id, model_id, raw FROM vectors WHERE id > $1 ORDER BY id LIMIT $2",
            |row| Ok((from_db(row.try_get(0)?), stored_vector(row, 1)?)),
        )
    }

    async fn clear_vectors(&self) -> Result<(), StoreFailure> {
        let client = self.client().await?;
        (client.execute("DELETE FROM vectors", &[]))
            .await
            .map_err(PgError::from)?;
        Ok(())
    }
}

#[async_trait]
impl MemoryArchive for PgStore {
    fn message_feed(&self) -> Feed<StoredMessage> {
        feed(
            self,
            "SELECT id, kind, chat_id, at_ms, title, text, url, role, user_id, username, source
             FROM documents WHERE kind = 0 AND id > $1 ORDER BY id LIMIT $2",
            message_of,
        )
    }

    async fn memory_records(&self, kind: MemoryKind) -> Result<Vec<MemoryRecord>, StoreFailure> {
        let client = self.client().await?;
        let rows = (client.query(
            &format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE kind = $1 ORDER BY id"),
            &[&i16::from(kind.byte())],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(document_of)
            .collect::<Result<Vec<_>, PgError>>()?)
    }

    async fn id_fits(
        &self,
        id: u64,
        kind: MemoryKind,
        chat_id: Option<i64>,
    ) -> Result<bool, StoreFailure> {
        let client = self.client().await?;
        let row = (client.query_opt(
            "SELECT kind, chat_id FROM documents WHERE id = $1",
            &[&db_i64(id)],
        ))
        .await
        .map_err(PgError::from)?;
        Ok(match row {
            None => true,
            Some(row) => {
                let (have_kind, have_chat): (i16, Option<i64>) = (row.get(0), row.get(1));
                have_kind == i16::from(kind.byte()) && have_chat == chat_id
            }
        })
    }

    async fn import_message(&self, message: StoredMessage) -> Result<(), StoreFailure> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(PgError::from)?;
        reserve_through(&transaction, message.seq).await?;
        write_message(&transaction, &message).await?;
        transaction.commit().await.map_err(PgError::from)?;
        self.announce(&[Document::from(message)]);
        Ok(())
    }

    async fn import_memory(&self, record: MemoryRecord) -> Result<(), StoreFailure> {
        self.save_memories(vec![record]).await.map(drop)
    }

    async fn import_learning(&self, record: LearningRecord) -> Result<(), StoreFailure> {
        Ok(crate::learn::import_learning(self, record).await?)
    }

    async fn flush(&self) -> Result<(), StoreFailure> {
        // Every write committed before it returned.
        Ok(())
    }
}

/// Decodes a JSON body column (`what` names it in errors).
pub(crate) fn body<T: serde::de::DeserializeOwned>(
    row: &Row,
    index: usize,
    what: &'static str,
) -> Result<T, PgError> {
    decode(what, row.try_get::<_, serde_json::Value>(index)?)
}
