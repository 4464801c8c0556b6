-- +goose Up
-- Checkouts refused before the sale's rules looked at them — shed by
-- admission or over an abuse limit — counted per minute and reason, and per
-- user where the refusal is per user (the per-user rate limit; '' otherwise,
-- and for users beyond the instance's bound on users counted apart). Each
-- instance counts in memory and adds its counts here with its next checkout
-- batch, or within a second when none comes: abusive traffic costs one
-- upsert per second and key, never a row per request.
CREATE TABLE checkout_refusals (
    minute  timestamptz NOT NULL,
    reason  text        NOT NULL,
    user_id text        NOT NULL DEFAULT '',
    refused bigint      NOT NULL,
    PRIMARY KEY (minute, reason, user_id),
    CONSTRAINT checkout_refusals_minute CHECK (minute = date_trunc('minute', minute)),
    CONSTRAINT checkout_refusals_refused CHECK (refused > 0)
);

-- +goose Down
DROP TABLE checkout_refusals;
