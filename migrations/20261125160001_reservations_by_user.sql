-- A user's reservations by id: `GET /reservations` lists them newest first (ids are UUIDv7,
-- ordered by creation time, so the id is both the order and the page cursor), and a hold counts
-- the user's live holds against MAX_HOLDS_PER_USER. The index on user_id alone is a prefix of
-- this one, so it goes.
CREATE INDEX reservations_user_id_id_idx ON reservations (user_id, id);
DROP INDEX reservations_user_id_idx;
