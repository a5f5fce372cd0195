-- The click memory (docs/click-memory.md, cluster/logstore/click_memory.py): a prior per
-- (normalised query, document) folded from the feedback stream, and the client identity its
-- per-client limit needs. The fold's watermark is the 'click_memory' row of loop_state.

-- A hash of the address a search came from (never the address itself); NULL for searches
-- logged before it was recorded: their session then stands for its own client.
ALTER TABLE searches ADD COLUMN client text;

-- One session's running value for one (query, document): clipped to the per-session cap after
-- every event, decayed to as_of. `client` is the client of the session's first counted event.
CREATE TABLE click_memory_sessions (
    query_key text NOT NULL,
    doc_id    text NOT NULL,
    session   text NOT NULL,
    client    text NOT NULL,
    evidence  double precision NOT NULL,
    as_of     timestamptz NOT NULL,
    events    integer NOT NULL,
    PRIMARY KEY (query_key, doc_id, session)
);
CREATE INDEX click_memory_sessions_client_idx ON click_memory_sessions (query_key, doc_id, client);
CREATE INDEX click_memory_sessions_as_of_idx ON click_memory_sessions (as_of);

-- The prior of each (query, document): its sessions' values decayed to as_of, and how many
-- sessions gave them. `seq` grows with every change (one folder at a time commits them, in
-- order): each ingress replica reads the rows past the last seq it applied.
CREATE SEQUENCE click_memory_seq;
CREATE TABLE click_memory (
    query_key text NOT NULL,
    doc_id    text NOT NULL,
    evidence  double precision NOT NULL,
    sessions  integer NOT NULL,
    as_of     timestamptz NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (query_key, doc_id)
);
CREATE INDEX click_memory_seq_idx ON click_memory (seq);

-- Events folded, and those ignored by reason (capped, unshown, client).
CREATE TABLE click_memory_counts (
    name   text PRIMARY KEY,
    events bigint NOT NULL DEFAULT 0
);
