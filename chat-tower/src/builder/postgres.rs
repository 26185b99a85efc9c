//! The PostgreSQL history archive in one call (feature `postgres`).

use chat_core::{
    archive::postgres::{ArchiveConfig, PostgresArchive},
    BackendError,
};

use super::ChatBuilder;

impl<S: Clone + Send + Sync + 'static> ChatBuilder<S> {
    /// Keeps room history beyond Redis's caps in PostgreSQL at `url` (default
    /// [`ArchiveConfig`]: one table `roomcast_messages`, rows kept 365 days): every room
    /// message is written there in the background, and history pages go on from there where
    /// Redis's history ends. Use it with the Redis backend (the archive keeps Redis's ids).
    ///
    /// # Errors
    /// [`BackendError::Archive`] if the database cannot be reached or the table created.
    pub async fn postgres_archive(self, url: &str) -> Result<Self, BackendError> {
        self.postgres_archive_with(url, ArchiveConfig::default())
            .await
    }

    /// [`ChatBuilder::postgres_archive`] with an [`ArchiveConfig`] (table, queue, batch, age).
    ///
    /// # Errors
    /// As [`ChatBuilder::postgres_archive`], and for a table name that is not an identifier.
    pub async fn postgres_archive_with(
        self,
        url: &str,
        config: ArchiveConfig,
    ) -> Result<Self, BackendError> {
        Ok(self.archive(PostgresArchive::connect(url, config).await?))
    }
}
