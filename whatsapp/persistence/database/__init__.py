"""The login kept in PostgreSQL: `connection` (bounded calls), `store` (backup rows and
clearings), `ownership` (the advisory lock), `uploader` (background writes), and
`strategy` (the `DatabaseStrategy` the keeper composes)."""
