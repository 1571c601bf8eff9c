-- The whole schema of DESIGN §6. Later migrations add columns, not tables.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE reps (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             text NOT NULL UNIQUE CHECK (email = lower(email)),
    display_name      text NOT NULL DEFAULT '',
    hubspot_owner_id  text UNIQUE,
    time_zone         text NOT NULL DEFAULT 'UTC',
    -- Google connection: the refresh token itself lives in Secret Manager, never here.
    google_status     text NOT NULL DEFAULT 'disconnected'
                      CHECK (google_status IN ('disconnected', 'connected', 'revoked')),
    google_scopes     text[] NOT NULL DEFAULT '{}',
    google_connected_at timestamptz,
    google_last_refresh_at timestamptz,
    gmail_history_id  numeric(20, 0),
    gmail_watch_expires_at timestamptz,
    sync_sent_mail    boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE form_submissions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- HubSpot's event or submission id, or a stable hash of the payload where there is none.
    idempotency_key   text NOT NULL UNIQUE,
    source            text NOT NULL,
    portal_id         text,
    contact_id        text,
    form_id           text,
    email             text,
    occurred_at       timestamptz,
    payload           jsonb NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflows (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    submission_id     uuid NOT NULL UNIQUE REFERENCES form_submissions(id),
    rep_id            uuid REFERENCES reps(id),
    state             text NOT NULL DEFAULT 'RECEIVED' CHECK (state IN (
                          'RECEIVED', 'DRAFTING', 'DRAFTED', 'GATED', 'SENDING',
                          'SENT', 'DRAFT_SAVED', 'BLOCKED', 'FAILED', 'REPLIED')),
    version           integer NOT NULL DEFAULT 0,   -- optimistic concurrency
    contact_id        text,
    lead_email        text,
    scheduled_send_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflows_state_idx ON workflows (state, updated_at DESC);
CREATE INDEX workflows_rep_idx ON workflows (rep_id, created_at DESC);
CREATE INDEX workflows_lead_idx ON workflows (lead_email);

CREATE TABLE workflow_events (
    id                bigserial PRIMARY KEY,
    workflow_id       uuid NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    from_state        text,
    to_state          text NOT NULL,
    actor             text NOT NULL,
    reason            text NOT NULL DEFAULT '',
    at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_events_workflow_idx ON workflow_events (workflow_id, id);

CREATE TABLE workflow_errors (
    id                bigserial PRIMARY KEY,
    workflow_id       uuid NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    step              text NOT NULL,
    code              text NOT NULL,
    message           text NOT NULL,
    retryable         boolean NOT NULL,
    attempt           integer NOT NULL DEFAULT 1,
    at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_errors_workflow_idx ON workflow_errors (workflow_id, id);

CREATE TABLE draft_emails (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id       uuid NOT NULL UNIQUE REFERENCES workflows(id) ON DELETE CASCADE,
    subject           text NOT NULL,
    body              text NOT NULL,
    model             text NOT NULL,
    prompt_hash       text NOT NULL,
    voice_score       real,
    risk_score        real,
    decision          text CHECK (decision IN ('SEND', 'DRAFT', 'BLOCK')),
    reasons           jsonb NOT NULL DEFAULT '[]',
    message_id        text UNIQUE,       -- RFC 5322 Message-ID, deterministic per workflow
    gmail_message_id  text,
    gmail_draft_id    text,
    gmail_thread_id   text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    decided_at        timestamptz,
    sent_at           timestamptz
);
CREATE INDEX draft_emails_thread_idx ON draft_emails (gmail_thread_id);

CREATE TABLE hubspot_tasks (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id       uuid REFERENCES workflows(id) ON DELETE CASCADE,
    rep_id            uuid REFERENCES reps(id),
    kind              text NOT NULL CHECK (kind IN ('task', 'note')),
    purpose           text NOT NULL,     -- follow_up, reconnect_google, ...
    idempotency_key   text NOT NULL UNIQUE,
    hubspot_id        text,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE training_samples (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rep_id            uuid NOT NULL REFERENCES reps(id) ON DELETE CASCADE,
    source_type       text NOT NULL,
    source_id         text,
    source_url        text,
    title             text NOT NULL DEFAULT '',
    purpose           text NOT NULL DEFAULT 'voice' CHECK (purpose IN ('voice', 'asset')),
    content           text,
    content_hash      text NOT NULL,
    blob_key          text,
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'extracting', 'embedding', 'ready', 'failed')),
    error             text,
    word_count        integer NOT NULL DEFAULT 0,
    metadata          jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rep_id, content_hash)
);
CREATE INDEX training_samples_rep_idx ON training_samples (rep_id, created_at DESC);

-- `embedding` has no fixed dimension: each model gets its own partial HNSW index over
-- `embedding::vector(<dim>)` WHERE model = '<model>' (created by the migrate command for the
-- configured model), so two models never share an index.
CREATE TABLE sample_chunks (
    id                bigserial PRIMARY KEY,
    sample_id         uuid NOT NULL REFERENCES training_samples(id) ON DELETE CASCADE,
    rep_id            uuid NOT NULL REFERENCES reps(id) ON DELETE CASCADE,
    ordinal           integer NOT NULL,
    content           text NOT NULL,
    model             text NOT NULL,
    embedding         vector NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sample_id, model, ordinal)
);
CREATE INDEX sample_chunks_rep_idx ON sample_chunks (rep_id, model);

CREATE TABLE voice_profiles (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rep_id            uuid NOT NULL REFERENCES reps(id) ON DELETE CASCADE,
    version           integer NOT NULL,
    model             text NOT NULL,
    features          jsonb NOT NULL,
    centroid          vector,
    sample_count      integer NOT NULL,
    word_count        integer NOT NULL,
    sources           jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rep_id, version)
);

-- Step idempotency: a side effect keyed by (workflow or sample id, step) is done once.
CREATE TABLE step_runs (
    key               text PRIMARY KEY,
    result            jsonb NOT NULL DEFAULT '{}',
    at                timestamptz NOT NULL DEFAULT now()
);
