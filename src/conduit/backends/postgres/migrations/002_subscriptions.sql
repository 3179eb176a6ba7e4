-- Conduit schema version 2: durable subscriptions (checkpoints, parked events).

CREATE TABLE __SCHEMA__.subscriptions (
    name       text        COLLATE "C" PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE __SCHEMA__.parked_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription    text        COLLATE "C" NOT NULL,
    event_id        uuid        NOT NULL,
    position        bigint      NOT NULL,
    error           text        NOT NULL,
    traceback       text        NOT NULL,
    attempts        integer     NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    retry_requested boolean     NOT NULL DEFAULT false,
    UNIQUE (subscription, event_id)
);
