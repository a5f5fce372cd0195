-- Documents written through the API: every upsert and delete of a corpus, in commit order.
-- `seq` is what a shard replica has applied and what a version folded in (its watermark):
-- writers hold an advisory lock for their transaction, so seq values commit in order.

CREATE TABLE document_log (
    seq        bigserial PRIMARY KEY,
    corpus     text NOT NULL,
    doc_id     text NOT NULL,
    op         text NOT NULL CHECK (op IN ('upsert', 'delete')),
    body       jsonb,  -- an upsert's document: {"id", "text", "title", "url", "metadata"}
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((op = 'upsert') = (body IS NOT NULL))
);
CREATE INDEX document_log_corpus_seq_idx ON document_log (corpus, seq);
CREATE INDEX document_log_corpus_doc_idx ON document_log (corpus, doc_id, seq DESC);
