//! The idempotency store as configured (`KAFKA_IDEMPOTENCY_STORE`, `Config::with_idempotency*`).

use std::fmt;

/// Ids the memory store remembers unless `KAFKA_IDEMPOTENCY_CAPACITY` says.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;
/// Connections of the PostgreSQL pool unless `KAFKA_IDEMPOTENCY_POOL_SIZE` says.
pub(crate) const DEFAULT_POOL_SIZE: u32 = 10;

/// Where `idempotent` handlers record processed events.
#[derive(Clone)]
pub(crate) enum IdempotencySetting {
    /// Not configured: an `idempotent` handler is a start-up error.
    None,
    /// [`MemoryStore`](super::MemoryStore).
    Memory { capacity: usize },
    /// [`PostgresStore`](super::PostgresStore) at `url`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres { url: String, pool_size: u32 },
    /// Given by the application.
    Store(std::sync::Arc<dyn super::IdempotencyStore>),
}

impl IdempotencySetting {
    pub(crate) fn parse(value: &str, capacity: usize, pool_size: u32) -> Result<Self, String> {
        if value.eq_ignore_ascii_case("memory") {
            Ok(Self::Memory { capacity })
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(Self::Postgres { url: value.to_string(), pool_size })
        } else {
            Err("expected `memory` or a `postgres://user:password@host:port/database` URL".into())
        }
    }

    pub(crate) fn is_configured(&self) -> bool {
        !matches!(self, Self::None)
    }
}

impl fmt::Debug for IdempotencySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Memory { capacity } => write!(f, "Memory {{ capacity: {capacity} }}"),
            // The URL may hold a password: only its host part is shown.
            Self::Postgres { url, pool_size } => {
                let host = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
                write!(f, "Postgres {{ url: \"postgres://[redacted]@{host}\", pool_size: {pool_size} }}")
            }
            Self::Store(store) => write!(f, "Store({})", store.name()),
        }
    }
}
