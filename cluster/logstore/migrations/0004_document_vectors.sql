-- An upsert's passage vector as the version live at the write encoded it (float32 bytes):
-- every shard replica of that version applies it without encoding the passage again.

ALTER TABLE document_log ADD COLUMN vector bytea, ADD COLUMN vector_version text;
