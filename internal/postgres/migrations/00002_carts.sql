-- +goose Up
-- A cart is a row: its sale, user, code, items and state. The first accepted
-- checkout of a user in a sale creates it; later checkouts add to it while it
-- is open; its purchase closes it. Checkouts and the purchase of one cart are
-- ordered by the lock on this row, so an item acknowledged into a cart is in
-- that cart's purchase result.
CREATE TABLE carts (
    code            text PRIMARY KEY,
    -- No foreign key to sales: its check would lock the sale's row, the row
    -- every purchase of the sale updates, in every checkout batch that opens
    -- a cart. The service opens carts of sales it read; the settlement proof
    -- checks that every cart's items are its sale's.
    sale_id         bigint      NOT NULL,
    user_id         text        NOT NULL,
    -- The cart's items in the order they were checked out.
    item_ids        bigint[]    NOT NULL DEFAULT '{}',
    state           text        NOT NULL DEFAULT 'open',
    created_at      timestamptz NOT NULL DEFAULT now(),
    purchased_at    timestamptz,
    items_purchased integer     NOT NULL DEFAULT 0,
    items_failed    integer     NOT NULL DEFAULT 0,
    CONSTRAINT carts_state CHECK (state IN ('open', 'purchased')),
    CONSTRAINT carts_purchased CHECK ((state = 'purchased') = (purchased_at IS NOT NULL)),
    CONSTRAINT carts_items CHECK (cardinality(item_ids) <= 1000),
    CONSTRAINT carts_result CHECK (
        (state = 'open' AND items_purchased = 0 AND items_failed = 0)
        OR (state = 'purchased' AND items_purchased >= 0 AND items_failed >= 0
            AND items_purchased + items_failed = cardinality(item_ids)))
)
-- Room in each page for the new versions of a cart that checkouts append
-- to: they stay on the page (HOT updates) and its indexes are not touched.
WITH (fillfactor = 50);

-- Carts of the attempt log written before this migration: each code's
-- accepted items, purchased when cart_purchases has the code. A user left
-- with several unpurchased carts in one sale (possible before carts were
-- rows) keeps the latest open; the older ones are closed as purchased with
-- every item failed, which is what their purchase would have answered for
-- items no longer reserved.
INSERT INTO carts (code, sale_id, user_id, item_ids, state, created_at, purchased_at, items_purchased, items_failed)
SELECT a.checkout_code, a.sale_id, min(a.user_id),
       array_agg(a.item_id ORDER BY a.first_id),
       CASE WHEN p.checkout_code IS NULL THEN 'open' ELSE 'purchased' END,
       min(a.created_at), p.purchased_at, coalesce(p.items_purchased, 0),
       CASE WHEN p.checkout_code IS NULL THEN 0 ELSE count(*) - coalesce(p.items_purchased, 0) END
FROM (SELECT checkout_code, sale_id, user_id, item_id, min(id) AS first_id, min(created_at) AS created_at
      FROM checkout_attempts WHERE checkout_code IS NOT NULL
      GROUP BY checkout_code, sale_id, user_id, item_id) a
LEFT JOIN cart_purchases p ON p.checkout_code = a.checkout_code
GROUP BY a.checkout_code, a.sale_id, p.checkout_code, p.purchased_at, p.items_purchased;

UPDATE carts c SET state = 'purchased', purchased_at = now(), items_failed = cardinality(c.item_ids)
WHERE c.state = 'open' AND EXISTS (
    SELECT 1 FROM carts n WHERE n.sale_id = c.sale_id AND n.user_id = c.user_id
      AND n.state = 'open' AND (n.created_at, n.code) > (c.created_at, c.code));

-- One open cart per user and sale.
CREATE UNIQUE INDEX carts_open ON carts (sale_id, user_id) WHERE state = 'open';
CREATE INDEX carts_sale ON carts (sale_id);

ALTER TABLE purchases DROP CONSTRAINT purchases_checkout_code_fkey;
ALTER TABLE purchases ADD CONSTRAINT purchases_cart FOREIGN KEY (checkout_code) REFERENCES carts (code);
CREATE INDEX purchases_code ON purchases (checkout_code);
-- Accepted attempts and their cart's items are written by one statement;
-- the settlement proof checks that every accepted item is in its cart (a
-- foreign key would cost a trigger query per accepted checkout).
DROP INDEX checkout_attempts_sale_accepted;
DROP TABLE cart_purchases;

-- +goose Down
CREATE TABLE cart_purchases (
    checkout_code   text PRIMARY KEY,
    sale_id         bigint      NOT NULL REFERENCES sales (id),
    user_id         text        NOT NULL,
    items_purchased integer     NOT NULL DEFAULT 0,
    items_failed    integer     NOT NULL DEFAULT 0,
    result          jsonb,
    purchased_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO cart_purchases (checkout_code, sale_id, user_id, items_purchased, items_failed, purchased_at)
SELECT code, sale_id, user_id, items_purchased, items_failed, purchased_at FROM carts WHERE state = 'purchased';
CREATE INDEX checkout_attempts_sale_accepted ON checkout_attempts (sale_id) WHERE checkout_code IS NOT NULL;
DROP INDEX purchases_code;
ALTER TABLE purchases DROP CONSTRAINT purchases_cart;
ALTER TABLE purchases ADD CONSTRAINT purchases_checkout_code_fkey FOREIGN KEY (checkout_code) REFERENCES cart_purchases (checkout_code);
DROP TABLE carts;
