-- +goose Up
-- User ids and codes are identifiers: they compare byte by byte, whatever
-- the locale the database was created with. Under a libc or ICU locale
-- (en_US.UTF-8 is the default of the official image and of most managed
-- servers) every comparison in their indexes would go through the
-- locale's collation, for an order nothing reads. The statements that lock
-- rows in (sale, user) order sort with COLLATE "C" too, so checkouts and
-- purchases lock in one order. Changing a column's collation rebuilds its
-- indexes, not the table.
ALTER TABLE carts
    ALTER COLUMN code TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE purchases
    ALTER COLUMN checkout_code TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE checkout_attempts
    ALTER COLUMN checkout_code TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE user_sale_counts ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE items ALTER COLUMN sold_to_user_id TYPE text COLLATE "C";
ALTER TABLE checkout_refusals ALTER COLUMN user_id TYPE text COLLATE "C";

-- +goose Down
ALTER TABLE checkout_refusals ALTER COLUMN user_id TYPE text COLLATE "default";
ALTER TABLE items ALTER COLUMN sold_to_user_id TYPE text COLLATE "default";
ALTER TABLE user_sale_counts ALTER COLUMN user_id TYPE text COLLATE "default";
ALTER TABLE checkout_attempts
    ALTER COLUMN checkout_code TYPE text COLLATE "default",
    ALTER COLUMN user_id TYPE text COLLATE "default";
ALTER TABLE purchases
    ALTER COLUMN checkout_code TYPE text COLLATE "default",
    ALTER COLUMN user_id TYPE text COLLATE "default";
ALTER TABLE carts
    ALTER COLUMN code TYPE text COLLATE "default",
    ALTER COLUMN user_id TYPE text COLLATE "default";
