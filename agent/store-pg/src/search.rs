//! Memory search across nodes: what any node stored is found by every node as soon as it
//! committed. Two rankings in SQL, fused by reciprocal rank as the embedded search fuses
//! its own (no score calibration between them needed):
//! - vectors: an HNSW index over `halfvec(384)` by cosine distance, with pgvector's
//!   iterative scan on, so a chat-filtered search still returns its k hits;
//! - keywords: a `tsvector` GIN index (English stemming, stop words left out): documents with
//!   every word of the query first, then with any of them, at most [`KEYWORD_POOL`] of each
//!   ranked by `ts_rank_cd`.

use valor_memory::Filter;
use valor_memory::search::{CANDIDATES, MAX_QUERY_BYTES, RRF_K};

use crate::error::PgError;
use crate::memory::INDEXED_DIMENSIONS;
use crate::pool::{PgStore, db_i64, from_db};

/// Keyword matches ranked at most, of those with every word and of those with any: a common
/// word matches most documents, and ranking them all took a second at 100k documents.
/// (At 100k, with the vector ranking: 1,000 of each, p50 51 ms; 300, 21 ms; 200, no faster.)
const KEYWORD_POOL: i64 = 300;

/// How a search's transaction scans: the HNSW scan keeps 64 candidates (`ef_search`, above
/// [`CANDIDATES`], so the vector ranking is not cut short) and scans on when a filter needs more
/// (`iterative_scan`: a chat's search returns its k hits). Set per transaction, not per
/// connection: set as a connection opens, a chat's search took p50 4-6 ms but an unfiltered one
/// 31-36 ms at 100k documents (18 and 16 ms this way).
const SEARCH_SETTINGS: &str =
    "SET LOCAL hnsw.ef_search = 64; SET LOCAL hnsw.iterative_scan = relaxed_order";

/// A search as the store runs it.
#[derive(Debug, Clone, Copy)]
pub struct PgQuery<'a> {
    pub text: &'a str,
    /// The query's embedding and the model that made it (vectors of another model are not
    /// compared); `None`: keywords only.
    pub embedding: Option<(&'a str, &'a [f32])>,
    pub filter: &'a Filter,
    pub limit: usize,
}

/// One fused result.
#[derive(Debug, Clone, PartialEq)]
pub struct PgHit {
    pub id: u64,
    pub score: f32,
    /// 1-based rank in each ranking (`None`: not among its candidates).
    pub vector_rank: Option<i64>,
    pub keyword_rank: Option<i64>,
    /// Cosine similarity to the query's embedding (halfvec precision), when ranked by it.
    pub similarity: Option<f32>,
}

/// The filter's conditions on documents `d` ($3..$8).
const FILTER: &str = "($3::bigint IS NULL OR d.chat_id = $3 OR ($4 AND d.chat_id IS NULL))
    AND (cardinality($5::smallint[]) = 0 OR d.kind = ANY($5))
    AND ($6::bigint IS NULL OR d.at_ms >= $6)
    AND ($7::bigint IS NULL OR d.at_ms < $7)
    AND NOT (d.id = ANY($8))";

/// Cuts text to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl PgStore {
    /// The hybrid ranking of `query`, best first, at most `query.limit`.
    pub async fn search(&self, query: &PgQuery<'_>) -> Result<Vec<PgHit>, PgError> {
        let text = cut(query.text, MAX_QUERY_BYTES);
        let filter = query.filter;
        let kinds: Vec<i16> = filter.kinds.iter().map(|k| i16::from(k.byte())).collect();
        let exclude: Vec<i64> = filter.exclude.iter().map(|id| db_i64(*id)).collect();
        let since = filter.since_ms.map(db_i64);
        let until = filter.until_ms.map(db_i64);
        let (model, embedding) = match query.embedding {
            Some((model, vector)) if vector.len() == INDEXED_DIMENSIONS => (
                Some(model.to_owned()),
                Some(pgvector::HalfVector::from_f32_slice(vector)),
            ),
            _ => (None, None),
        };
        let candidates = CANDIDATES as i64;
        let sql = format!(
            "WITH by_vector AS (
               SELECT id, row_number() OVER () AS rank, 1 - distance AS similarity FROM (
                 SELECT v.id, v.embedding <=> $1::halfvec AS distance
                 FROM vectors v JOIN documents d ON d.id = v.id
                 WHERE $1::halfvec IS NOT NULL AND v.model_id = $2 AND v.embedding IS NOT NULL
                   AND {FILTER}
                 ORDER BY v.embedding <=> $1::halfvec LIMIT $10) nearest
             ),
             query AS (
               SELECT to_tsquery('english', string_agg(
                        '''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''', ' | ')) AS any_word,
                      to_tsquery('english', string_agg(
                        '''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''', ' & ')) AS every_word
               FROM unnest(tsvector_to_array(to_tsvector('english', $9))) AS lexeme
             ),
             pool AS (
               (SELECT d.id FROM documents d, query
                WHERE query.every_word IS NOT NULL AND d.tsv @@ query.every_word AND {FILTER}
                LIMIT $13)
               UNION
               (SELECT d.id FROM documents d, query
                WHERE query.any_word IS NOT NULL AND d.tsv @@ query.any_word AND {FILTER}
                LIMIT $13)
             ),
             by_keyword AS (
               SELECT id, row_number() OVER (ORDER BY score DESC, id DESC) AS rank FROM (
                 SELECT d.id, ts_rank_cd(d.tsv, query.any_word)
                          + CASE WHEN d.tsv @@ query.every_word THEN 1 ELSE 0 END AS score
                 FROM pool JOIN documents d ON d.id = pool.id, query
                 ORDER BY score DESC, d.id DESC LIMIT $10) matching
             )
             SELECT id, sum(1.0 / ($11::float8 + rank))::real AS score,
                    min(rank) FILTER (WHERE source = 'v'), min(rank) FILTER (WHERE source = 'k'),
                    max(similarity)::real
             FROM (SELECT id, rank, 'v' AS source, similarity FROM by_vector
                   UNION ALL SELECT id, rank, 'k', NULL FROM by_keyword) ranked
             GROUP BY id ORDER BY score DESC, id DESC LIMIT $12"
        );
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction.batch_execute(SEARCH_SETTINGS).await?;
        // Prepared once per connection: planning this query anew took milliseconds.
        let statement = transaction.prepare_cached(&sql).await?;
        let rows = transaction
            .query(
                &statement,
                &[
                    &embedding,
                    &model,
                    &filter.chat_id,
                    &filter.include_shared,
                    &kinds,
                    &since,
                    &until,
                    &exclude,
                    &text,
                    &candidates,
                    &f64::from(RRF_K),
                    &db_i64(query.limit as u64),
                    &KEYWORD_POOL,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(rows
            .iter()
            .map(|r| PgHit {
                id: from_db(r.get(0)),
                score: r.get(1),
                vector_rank: r.get(2),
                keyword_rank: r.get(3),
                similarity: r.get(4),
            })
            .collect())
    }
}

impl PgStore {
    /// The documents `filter` keeps around `anchor`, in time order (ids): up to `before`
    /// before it, the anchor, up to `after` after it; `None` when `filter` does not keep it.
    pub async fn timeline(
        &self,
        filter: &Filter,
        anchor: u64,
        before: usize,
        after: usize,
    ) -> Result<Option<Vec<u64>>, PgError> {
        let kinds: Vec<i16> = filter.kinds.iter().map(|k| i16::from(k.byte())).collect();
        let exclude: Vec<i64> = filter.exclude.iter().map(|id| db_i64(*id)).collect();
        let (since, until) = (filter.since_ms.map(db_i64), filter.until_ms.map(db_i64));
        let sql = format!(
            "WITH anchor AS (SELECT d.at_ms, d.id FROM documents d WHERE d.id = $1 AND {FILTER})
             (SELECT d.id, d.at_ms FROM documents d, anchor
              WHERE (d.at_ms, d.id) < (anchor.at_ms, anchor.id) AND {FILTER}
              ORDER BY d.at_ms DESC, d.id DESC LIMIT $2)
             UNION ALL (SELECT id, at_ms FROM anchor)
             UNION ALL
             (SELECT d.id, d.at_ms FROM documents d, anchor
              WHERE (d.at_ms, d.id) > (anchor.at_ms, anchor.id) AND {FILTER}
              ORDER BY d.at_ms, d.id LIMIT $9)"
        );
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        let rows = client
            .query(
                &statement,
                &[
                    &db_i64(anchor),
                    &db_i64(before as u64),
                    &filter.chat_id,
                    &filter.include_shared,
                    &kinds,
                    &since,
                    &until,
                    &exclude,
                    &db_i64(after as u64),
                ],
            )
            .await?;
        let mut window: Vec<(i64, u64)> = (rows.iter())
            .map(|row| (row.get::<_, i64>(1), from_db(row.get(0))))
            .collect();
        if !window.iter().any(|(_, id)| *id == anchor) {
            return Ok(None);
        }
        window.sort_unstable();
        Ok(Some(window.into_iter().map(|(_, id)| id).collect()))
    }
}

#[async_trait::async_trait]
impl valor_memory::port::SharedSearch for PgStore {
    async fn timeline_shared(
        &self,
        filter: &Filter,
        anchor: u64,
        before: usize,
        after: usize,
    ) -> Result<Option<Vec<u64>>, valor_protocol::StoreFailure> {
        Ok(self.timeline(filter, anchor, before, after).await?)
    }

    async fn search_shared(
        &self,
        text: &str,
        embedding: Option<(&str, &[f32])>,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<valor_memory::port::SharedHit>, valor_protocol::StoreFailure> {
        let query = PgQuery {
            text,
            embedding,
            filter,
            limit,
        };
        let hits = self.search(&query).await?;
        Ok(hits
            .into_iter()
            .map(|h| valor_memory::port::SharedHit {
                id: h.id,
                score: h.score,
                keyword: h.keyword_rank.is_some(),
                similarity: h.similarity,
            })
            .collect())
    }
}
