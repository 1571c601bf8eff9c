-- What the draft was written from, so the gate can judge it without calling HubSpot again:
-- lead and company facts, the rep, the links and figures its sources support (see shared/drafting).
ALTER TABLE draft_emails ADD COLUMN context jsonb NOT NULL DEFAULT '{}';
-- Whether this workflow holds a quota slot (released again if the send fails for good).
ALTER TABLE draft_emails ADD COLUMN quota_reserved boolean NOT NULL DEFAULT false;
CREATE INDEX draft_emails_decided_idx ON draft_emails (decided_at DESC);
CREATE INDEX workflows_contact_idx ON workflows (contact_id, created_at DESC);
