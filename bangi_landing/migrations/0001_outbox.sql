-- The outbox, its delivered eventIds and its journeys (see bangi_landing/outbox.py:
-- the same tables as the SQLite store's, prefixed, since the database is shared).
CREATE TABLE bangi_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination TEXT NOT NULL,         -- Destination.key: its kind and address, no secrets
    event_id TEXT NOT NULL,
    click_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event JSONB NOT NULL,              -- the Event, the same for every attempt
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,  -- the senders' wall clock, as in the SQLite store
    lease TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    last_error TEXT,
    UNIQUE (destination, event_id)
);
CREATE INDEX bangi_outbox_due ON bangi_outbox (destination, state, due_at);
CREATE INDEX bangi_outbox_journey ON bangi_outbox (destination, click_id, id);
CREATE TABLE bangi_delivered (
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (destination, event_id)
);
CREATE TABLE bangi_journeys (
    click_id TEXT PRIMARY KEY,
    params JSONB NOT NULL,             -- the click's URL parameters, Pro's click id
    expires_at DOUBLE PRECISION NOT NULL
);
