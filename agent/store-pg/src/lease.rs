//! Leases, the one primitive the queue and the leaders share: a row per name, held by one
//! holder until `expires_at` by the database's clock (no node's clock is trusted). A new
//! holder raises the epoch; a write made under a lease checks, in its own transaction, that the
//! holder and epoch still hold it ([`fence`]), so a node whose lease ran out cannot commit.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::error::PgError;

/// A lease held: its name and the epoch this holder got it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub epoch: i64,
}

/// A lease as the database has it (for `/health` and the dashboard).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeaseState {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
    /// Milliseconds until it runs out (negative: ran out).
    pub expires_in_ms: i64,
}

pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Takes `name` for `holder` for `ttl`, or renews it when `holder` has it: the epoch it holds
/// it at, or `None` while another holder's lease lives.
pub(crate) async fn grant<C: GenericClient>(
    client: &C,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<i64>, PgError> {
    let row = client
        .query_opt(
            "INSERT INTO leases (name, holder, epoch, expires_at)
             VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET
               epoch = CASE WHEN leases.holder = excluded.holder
                             AND leases.expires_at > clock_timestamp()
                            THEN leases.epoch ELSE leases.epoch + 1 END,
               holder = excluded.holder,
               expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= clock_timestamp()
             RETURNING epoch",
            &[&name, &holder, &millis(ttl)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Checks, and locks for the rest of the transaction, that `holder` still holds `lease`;
/// [`PgError::Fenced`] when it ran out or changed hands.
pub(crate) async fn fence<C: GenericClient>(
    client: &C,
    lease: &Lease,
    holder: &str,
) -> Result<(), PgError> {
    let held = client
        .query_opt(
            "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3
               AND expires_at > clock_timestamp() FOR UPDATE",
            &[&lease.name, &holder, &lease.epoch],
        )
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(PgError::Fenced {
            name: lease.name.clone(),
            epoch: lease.epoch,
        }),
    }
}

/// Extends a lease held (fenced).
pub(crate) async fn extend<C: GenericClient>(
    client: &C,
    lease: &Lease,
    holder: &str,
    ttl: Duration,
) -> Result<(), PgError> {
    let renewed = client
        .execute(
            "UPDATE leases SET expires_at = clock_timestamp() + $4 * interval '1 millisecond'
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()",
            &[&lease.name, &holder, &lease.epoch, &millis(ttl)],
        )
        .await?;
    if renewed == 1 {
        Ok(())
    } else {
        Err(PgError::Fenced {
            name: lease.name.clone(),
            epoch: lease.epoch,
        })
    }
}

/// Gives a lease up at once (it runs out now; the epoch is kept, so it keeps rising).
pub(crate) async fn give_up<C: GenericClient>(
    client: &C,
    lease: &Lease,
    holder: &str,
) -> Result<bool, PgError> {
    let released = client
        .execute(
            "UPDATE leases SET expires_at = clock_timestamp()
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()",
            &[&lease.name, &holder, &lease.epoch],
        )
        .await?;
    Ok(released == 1)
}

/// Every lease whose name starts with `prefix`, by name.
pub(crate) async fn leases_named<C: tokio_postgres::GenericClient>(
    client: &C,
    prefix: &str,
) -> Result<Vec<LeaseState>, PgError> {
    let rows = client
        .query(
            "SELECT name, holder, epoch,
               (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint
             FROM leases WHERE starts_with(name, $1) ORDER BY name",
            &[&prefix],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LeaseState {
            name: r.get(0),
            holder: r.get(1),
            epoch: r.get(2),
            expires_in_ms: r.get(3),
        })
        .collect())
}
