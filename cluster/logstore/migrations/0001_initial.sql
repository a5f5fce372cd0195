-- Searches, feedback, learning-loop runs and the loop's consumed watermark.
-- Ids of searches and feedback events are made by the client (UUIDs), so a record replayed
-- from the disk buffer is inserted at most once (INSERT ... ON CONFLICT DO NOTHING).

CREATE TABLE searches (
    id            uuid PRIMARY KEY,
    created_at    timestamptz NOT NULL,
    session_id    text,
    query         text NOT NULL,
    model_version text,
    mode          text NOT NULL,
    latency_ms    double precision,
    results       jsonb NOT NULL DEFAULT '[]'::jsonb  -- [{"pid", "rank", "score"}], as shown
);
CREATE INDEX searches_created_at_idx ON searches (created_at);
CREATE INDEX searches_session_idx ON searches (session_id, created_at);

-- `id` is the learning loop's watermark: "all feedback since W" is a range scan of the
-- primary key, joined to `searches` through its primary key.
CREATE TABLE feedback (
    id         bigserial PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    search_id  uuid NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
    pid        bigint NOT NULL,
    rank       integer,
    kind       text NOT NULL CHECK (kind IN ('click', 'relevant', 'not_relevant')),
    created_at timestamptz NOT NULL
);
CREATE INDEX feedback_search_idx ON feedback (search_id);

CREATE TABLE reinforce_runs (
    id                bigserial PRIMARY KEY,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    status            text NOT NULL DEFAULT 'running',
    parent_version    text,
    candidate_version text,
    watermark_from    bigint,
    watermark_to      bigint,
    events_used       integer,
    metrics           jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason            text
);
CREATE INDEX reinforce_runs_started_idx ON reinforce_runs (started_at DESC);
CREATE INDEX reinforce_runs_running_idx ON reinforce_runs (status) WHERE status = 'running';

CREATE TABLE loop_state (
    name       text PRIMARY KEY,
    watermark  bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
