-- +goose Up
-- Sales are identified by the Unix second of their start; item ids embed the
-- sale id (sale_id * 1,000,000 + sequence number).
CREATE TABLE sales (
    id              bigint PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL,
    total_items     integer     NOT NULL,
    items_sold      integer     NOT NULL DEFAULT 0,
    user_item_limit integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sales_window CHECK (ended_at > started_at),
    CONSTRAINT sales_total_items CHECK (total_items BETWEEN 1 AND 999999),
    CONSTRAINT sales_items_sold CHECK (items_sold BETWEEN 0 AND total_items),
    CONSTRAINT sales_user_item_limit CHECK (user_item_limit >= 1)
);
CREATE INDEX sales_started_at ON sales (started_at DESC);

CREATE TABLE items (
    id              bigint PRIMARY KEY,
    sale_id         bigint  NOT NULL REFERENCES sales (id),
    name            text    NOT NULL,
    image_url       text    NOT NULL,
    sold            boolean NOT NULL DEFAULT false,
    sold_to_user_id text,
    sold_at         timestamptz,
    CONSTRAINT items_in_sale CHECK (id / 1000000 = sale_id),
    CONSTRAINT items_sold_to CHECK (sold = (sold_to_user_id IS NOT NULL) AND sold = (sold_at IS NOT NULL))
);
-- Sold items of a sale, for rebuilding the cache without scanning the sale.
CREATE INDEX items_sold ON items (sale_id) WHERE sold;

-- Every well-formed checkout request, accepted or rejected. Accepted rows
-- carry the code of the cart they added the item to: a cart is the set of
-- accepted attempts with one code.
CREATE TABLE checkout_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sale_id       bigint,
    user_id       text        NOT NULL,
    item_id       bigint      NOT NULL,
    checkout_code text,
    outcome       text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT checkout_attempts_accepted_code CHECK ((outcome = 'accepted') = (checkout_code IS NOT NULL))
);
CREATE INDEX checkout_attempts_code ON checkout_attempts (checkout_code) WHERE checkout_code IS NOT NULL;
CREATE INDEX checkout_attempts_sale_accepted ON checkout_attempts (sale_id) WHERE checkout_code IS NOT NULL;

-- One row per purchased cart: the lock that makes a purchase happen once and
-- the result that a replay returns.
CREATE TABLE cart_purchases (
    checkout_code   text PRIMARY KEY,
    sale_id         bigint      NOT NULL REFERENCES sales (id),
    user_id         text        NOT NULL,
    items_purchased integer     NOT NULL DEFAULT 0,
    items_failed    integer     NOT NULL DEFAULT 0,
    result          jsonb,
    purchased_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE purchases (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sale_id       bigint      NOT NULL REFERENCES sales (id),
    user_id       text        NOT NULL,
    item_id       bigint      NOT NULL REFERENCES items (id),
    checkout_code text        NOT NULL REFERENCES cart_purchases (checkout_code),
    purchased_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT purchases_item_once UNIQUE (item_id)
);
CREATE INDEX purchases_sale_user ON purchases (sale_id, user_id);

-- Items bought per user and sale; the CHECK is the user limit, enforced by
-- the database whatever the caller believes.
CREATE TABLE user_sale_counts (
    sale_id      bigint  NOT NULL REFERENCES sales (id),
    user_id      text    NOT NULL,
    items_bought integer NOT NULL DEFAULT 0,
    item_limit   integer NOT NULL,
    PRIMARY KEY (sale_id, user_id),
    CONSTRAINT user_sale_counts_limit CHECK (items_bought BETWEEN 0 AND item_limit)
);

-- +goose Down
DROP TABLE user_sale_counts;
DROP TABLE purchases;
DROP TABLE cart_purchases;
DROP TABLE checkout_attempts;
DROP TABLE items;
DROP TABLE sales;
