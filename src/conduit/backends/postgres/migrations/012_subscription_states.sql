-- Conduit schema version 12: what each subscription's driver last said it was
-- doing (relays: relaying, idle, retrying with the error, stopped), for
-- conduit projections, conduit stats and the browser. Self-contained.

CREATE TABLE IF NOT EXISTS __SCHEMA__.subscription_states (
    name       text        COLLATE "C" PRIMARY KEY,
    state      text        NOT NULL,
    detail     text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
